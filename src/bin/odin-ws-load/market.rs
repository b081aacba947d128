//! PAYLOAD=market: payloads shaped like an exchange's order-book update, so that
//! compression is measured on what market data really is (keys repeated in every
//! message, prices sharing their leading digits, sizes that do not) rather than on
//! `x` padding, which any compressor shrinks to nothing.
//!
//! `{"ts_us":..,"n":..,"type":"book","symbol":"BTC-USD","venue":"odin","time_ms":..,
//!   "bid":"97012.50","ask":"97013.00","last":"97012.75","bid_size":"1.2540",
//!   "ask_size":"0.8700","volume_24h":"18234.55","bids":[["97012.50","1.2540"],..],
//!   "asks":[..]}`: as many book levels as bring it to about SIZE bytes.
//! Prices and sizes are decimal strings, as most exchanges send them.

const SYMBOLS: [(&str, f64); 10] = [
    ("BTC-USD", 97_012.5),
    ("ETH-USD", 3_412.25),
    ("SOL-USD", 187.42),
    ("XRP-USD", 2.3114),
    ("ADA-USD", 0.9812),
    ("DOGE-USD", 0.41023),
    ("AVAX-USD", 38.215),
    ("DOT-USD", 7.4521),
    ("LINK-USD", 22.913),
    ("LTC-USD", 104.37),
];

/// xorshift64*: the same message for the same channel and `n`, run after run.
struct Rng(u64);

impl Rng {
    fn new(channel: usize, n: u64) -> Rng {
        Rng((channel as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93)
            | 1)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The payload of message `n` on the publisher's channel number `channel`.
pub fn payload(ts_us: u64, n: u64, channel: usize, size: usize) -> String {
    let (symbol, base) = SYMBOLS[channel % SYMBOLS.len()];
    let mut rng = Rng::new(channel, n);
    // Decimals as the instrument's price calls for; one tick is the last digit.
    let decimals = if base >= 100.0 {
        2
    } else if base >= 1.0 {
        4
    } else {
        5
    };
    let tick = 10f64.powi(-decimals);
    let mid = base * (1.0 + (rng.unit() - 0.5) * 0.002);
    let spread = tick * (1.0 + (rng.unit() * 4.0).floor());
    let (bid, ask) = (mid - spread / 2.0, mid + spread / 2.0);
    let d = decimals as usize;
    let size_of = |rng: &mut Rng| format!("{:.4}", 0.001 + rng.unit() * rng.unit() * 25.0);
    let (bid_size, ask_size) = (size_of(&mut rng), size_of(&mut rng));
    let volume = base * 1e3 * (0.5 + rng.unit());
    let mut p = format!(
        "{{\"ts_us\":{ts_us},\"n\":{n},\"type\":\"book\",\"symbol\":\"{symbol}\",\"venue\":\"odin\",\
         \"time_ms\":{},\"bid\":\"{bid:.d$}\",\"ask\":\"{ask:.d$}\",\"last\":\"{:.d$}\",\
         \"bid_size\":\"{bid_size}\",\"ask_size\":\"{ask_size}\",\"volume_24h\":\"{volume:.2}\"",
        ts_us / 1000,
        if rng.unit() < 0.5 { bid } else { ask },
    );
    // Levels one to a few ticks apart, bids and asks in turn, until about `size`.
    let level = |price: f64, qty: &str| format!("[\"{price:.d$}\",\"{qty}\"]");
    let mut bids = level(bid, &bid_size);
    let mut asks = level(ask, &ask_size);
    let (mut next_bid, mut next_ask) = (bid, ask);
    // `,"bids":[`, `],"asks":[`, `]}`.
    let frame = 22;
    loop {
        let to_bids = bids.len() <= asks.len();
        let price = if to_bids {
            next_bid - tick * (1.0 + (rng.unit() * 3.0).floor())
        } else {
            next_ask + tick * (1.0 + (rng.unit() * 3.0).floor())
        };
        let next = level(price, &size_of(&mut rng));
        if p.len() + frame + bids.len() + asks.len() + 1 + next.len() > size {
            break;
        }
        let side = if to_bids {
            next_bid = price;
            &mut bids
        } else {
            next_ask = price;
            &mut asks
        };
        side.push(',');
        side.push_str(&next);
    }
    p.push_str(&format!(",\"bids\":[{bids}],\"asks\":[{asks}]"));
    p.push('}');
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan;

    #[test]
    fn a_market_payload_is_json_with_the_tool_fields_at_about_its_size() {
        for size in [200, 1000, 4000] {
            let p = payload(1_700_000_000_000_000, 9, 3, size);
            let v: serde_json::Value = serde_json::from_str(&p).unwrap();
            assert_eq!(v["symbol"], "XRP-USD");
            assert!(!v["asks"].as_array().unwrap().is_empty());
            let f = scan::payload_fields(p.as_bytes());
            assert_eq!((f.ts_us, f.n), (Some(1_700_000_000_000_000), Some(9)));
            assert!(
                p.len() <= size.max(400) && p.len() + 80 >= size,
                "{size}: {}",
                p.len()
            );
        }
        assert_eq!(
            payload(1, 2, 0, 1000),
            payload(1, 2, 0, 1000),
            "deterministic"
        );
        assert_ne!(payload(1, 2, 0, 1000), payload(1, 3, 0, 1000));
    }

    #[test]
    fn it_compresses_like_market_data_not_like_padding() {
        let p = payload(1_700_000_000_000_000, 1, 0, 1000);
        let deflated =
            odin_ws::deflate::codec::deflate(p.as_bytes(), odin_ws::deflate::Window::Full);
        let ratio = p.len() as f64 / deflated.len() as f64;
        assert!((1.5..6.0).contains(&ratio), "ratio {ratio:.2}");
        let pad = crate::publish::payload(1_700_000_000_000_000, 1, 1000);
        let padded =
            odin_ws::deflate::codec::deflate(pad.as_bytes(), odin_ws::deflate::Window::Full);
        assert!(
            pad.len() as f64 / padded.len() as f64 > 10.0,
            "padding is nothing to compress"
        );
    }
}
