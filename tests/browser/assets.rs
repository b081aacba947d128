//! The browser endpoints over plain HTTP: content types, ETag and 304, CORS, and
//! the status token (404 when unset, 401 when wrong).

use crate::support::Server;

const STATUS_TOKEN: &str = "status-s3cret";

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn client_module_has_type_etag_cache_and_cors() {
    let server = Server::start(&[]);
    let js = server.get("/client.js");
    assert_eq!(js.status, 200, "{}", js.head);
    assert!(
        header(&js.head, "Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        header(&js.head, "Cache-Control")
            .unwrap()
            .contains("max-age")
    );
    assert_eq!(header(&js.head, "Access-Control-Allow-Origin"), Some("*"));
    assert!(js.body.contains("export class OdinWS"), "{}", js.body);
    let etag = header(&js.head, "ETag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");

    let again = server.http(&format!(
        "GET /client.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(again.status, 304, "{}", again.head);
    assert!(again.body.is_empty());
    assert_eq!(header(&again.head, "ETag"), Some(etag.as_str()));
    let stale = server.http("GET /client.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"0\"\r\n\r\n");
    assert_eq!(stale.status, 200);

    let dts = server.get("/client.d.ts");
    assert_eq!(dts.status, 200);
    assert!(
        header(&dts.head, "Content-Type")
            .unwrap()
            .starts_with("application/typescript")
    );
    assert!(dts.body.contains("export class OdinWS"));
    assert_ne!(header(&dts.head, "ETag"), Some(etag.as_str()));
    let post = server.http("POST /client.js HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
}

#[test]
fn cors_names_only_an_allowed_origin() {
    let server = Server::start(&[("WS_ALLOWED_ORIGINS", "https://app.example")]);
    let get = |origin: &str| {
        server.http(&format!(
            "GET /client.js HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n"
        ))
    };
    let allowed = get("https://app.example");
    assert_eq!(
        header(&allowed.head, "Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(header(&allowed.head, "Vary"), Some("Origin"));
    let other = get("https://evil.example");
    assert_eq!(other.status, 200);
    assert_eq!(header(&other.head, "Access-Control-Allow-Origin"), None);
}

#[test]
fn status_is_off_without_a_token() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/status").status, 404);
    assert_eq!(server.get("/status.json").status, 404);
}

#[test]
fn status_json_needs_the_token() {
    let server = Server::start(&[("WS_STATUS_TOKEN", STATUS_TOKEN)]);
    assert_eq!(server.get("/status.json").status, 401);
    assert_eq!(server.get("/status.json?token=wrong").status, 401);
    let wrong =
        server.http("GET /status.json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n\r\n");
    assert_eq!(wrong.status, 401);
    let by_query = server.get(&format!("/status.json?token={STATUS_TOKEN}"));
    assert_eq!(by_query.status, 200, "{}", by_query.body);
    let reply = server.http(&format!(
        "GET /status.json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {STATUS_TOKEN}\r\n\r\n"
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply.head, "Cache-Control"), Some("no-store"));
    let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    for key in [
        "connections",
        "messages_in",
        "deliveries",
        "nats",
        "cpu_percent",
        "memory_bytes",
        "uptime_s",
        "rates",
        "latency_ms",
        "admission",
        "slow_consumers",
        "workers",
    ] {
        assert!(!status[key].is_null(), "no {key} in {status}");
    }
    assert_eq!(status["nats"], "disabled");
    assert_eq!(status["workers"].as_array().unwrap().len(), 4);
    assert_eq!(status["admission"]["open"], true);
}

#[test]
fn status_page_is_self_contained_and_refuses_a_wrong_token() {
    let server = Server::start(&[("WS_STATUS_TOKEN", STATUS_TOKEN)]);
    let page = server.get("/status");
    assert_eq!(page.status, 200);
    assert!(
        header(&page.head, "Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = header(&page.head, "Content-Security-Policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!page.body.contains(external), "external asset: {external}");
    }
    assert_eq!(server.get("/status?token=wrong").status, 401);
    assert_eq!(
        server.get(&format!("/status?token={STATUS_TOKEN}")).status,
        200
    );
}
