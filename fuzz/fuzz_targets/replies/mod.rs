//! Shared by the fuzz targets that build replies: parses one as a client would.

use odin_ws::protocol;
use serde_json::Value;
use serde_json::value::RawValue;

/// Parses a reply as a client would and checks its `type` and `id` rule.
pub fn reply(json: &str, kind: &str, id: Option<&RawValue>) -> Value {
    let v: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("reply is not valid JSON ({e}): {json:?}"));
    assert_eq!(v["type"], kind, "{json:?}");
    match id {
        Some(id) if id.get().len() <= protocol::MAX_ECHOED_ID => {
            let want: Value = serde_json::from_str(id.get()).expect("a parsed id is JSON");
            assert_eq!(v["id"], want, "id not echoed: {json:?}");
            assert!(v.get("id_omitted").is_none(), "{json:?}");
        }
        Some(_) => {
            assert!(v.get("id").is_none(), "a long id echoed: {json:?}");
            assert_eq!(v["id_omitted"], true, "{json:?}");
        }
        None => assert!(v.get("id").is_none() && v.get("id_omitted").is_none()),
    }
    v
}
