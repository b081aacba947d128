//! /status in Chromium: the token taken from the address and hidden, numbers that
//! match /health, live charts; the screenshot is written under target/ (and to
//! docs/status.png with ODIN_WS_UPDATE_SCREENSHOT=1).

use serde_json::Value;

use crate::chromium::Chromium;
use crate::support::{Server, wait_for};

const STATUS_TOKEN: &str = "status-s3cret";

/// The number a page element shows ("1,234.5" → 1234.5).
fn shown(chromium: &mut Chromium, id: &str) -> f64 {
    let text = chromium.eval(&format!("document.getElementById('{id}').textContent"));
    let text = text.as_str().unwrap().replace(',', "");
    text.parse()
        .unwrap_or_else(|_| panic!("#{id} shows {text:?}"))
}

#[test]
fn status_page_shows_the_servers_numbers() {
    let Some(mut chromium) = Chromium::start("status") else {
        return;
    };
    let server = Server::start(&[("WS_STATUS_TOKEN", STATUS_TOKEN)]);
    let mut clients: Vec<_> = (0..3).map(|_| server.client()).collect();
    for c in &mut clients {
        crate::common::subscribe(c, &["token.>"]);
    }
    chromium.open(&format!(
        "http://127.0.0.1:{}/status?token={STATUS_TOKEN}",
        server.port
    ));
    chromium.wait_until(
        "the first numbers",
        "document.getElementById('poll-state').textContent === 'live'",
    );
    assert_eq!(
        chromium.eval("location.search"),
        "",
        "the token left the address bar"
    );
    assert_eq!(
        chromium.eval("sessionStorage.getItem('odin-ws-status-token')"),
        STATUS_TOKEN
    );
    // A few seconds of traffic, so the charts have lines.
    let mut sent = 0;
    wait_for("ten points on the charts", || {
        sent += 1;
        assert_eq!(
            server.publish("token.BTC.price", &format!("{sent}")).status,
            202
        );
        chromium.eval("series.in.length >= 10 && series.in.some((v) => v > 0)") == Value::Bool(true)
    });
    let health = server.health();
    assert_eq!(shown(&mut chromium, "connections"), 3.0);
    assert_eq!(health["connections"], 3);
    let cpu = shown(&mut chromium, "cpu");
    let health_cpu = health["cpu_percent"].as_f64().unwrap();
    assert!(
        (cpu - health_cpu).abs() <= 25.0,
        "page {cpu}%, /health {health_cpu}%"
    );
    let nats = chromium.eval("document.getElementById('nats').textContent");
    assert_eq!(nats, health["nats"]);
    let admission = chromium.eval("document.getElementById('admission').textContent");
    assert_eq!(admission, "open");
    let workers = chromium.eval("document.querySelectorAll('#workers tbody tr').length");
    assert_eq!(workers, health["workers"]);
    let deliveries = shown(&mut chromium, "deliveries");
    assert!(deliveries >= 3.0, "deliveries {deliveries}");

    // The charts drew something: more than a few colours on their canvases.
    let colours = chromium.eval(
        "[...document.querySelectorAll('canvas')].reduce((set, c) => {
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 0; i < px.length; i += 4) set.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
            return set; }, new Set()).size",
    );
    assert!(
        colours.as_u64().unwrap() > 8,
        "{colours} colours on the charts"
    );

    let png = chromium.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 1280x460 page compresses to a few KiB; text and charts do not.
    assert!(png.len() > 30_000, "screenshot of {} bytes", png.len());
    // Kept under target/ on every run; copied over the README's picture only when
    // asked (ODIN_WS_UPDATE_SCREENSHOT=1), so a test run leaves the tree as it was.
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status.png");
    std::fs::write(&kept, &png).unwrap();
    if std::env::var_os("ODIN_WS_UPDATE_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.png");
        std::fs::write(&docs, &png).unwrap();
    }
}

#[test]
fn status_page_asks_for_the_token() {
    let Some(mut chromium) = Chromium::start("status-login") else {
        return;
    };
    let server = Server::start(&[("WS_STATUS_TOKEN", STATUS_TOKEN)]);
    chromium.open(&format!("http://127.0.0.1:{}/status", server.port));
    chromium.wait_until("the login form", "!document.getElementById('login').hidden");
    chromium.eval(
        "document.getElementById('token').value = 'wrong';
         document.getElementById('login').requestSubmit(); true",
    );
    chromium.wait_until(
        "the wrong token refused",
        "document.getElementById('login-error').textContent === 'Wrong token.'",
    );
    chromium.eval(&format!(
        "document.getElementById('token').value = '{STATUS_TOKEN}';
         document.getElementById('login').requestSubmit(); true"
    ));
    chromium.wait_until(
        "the dashboard",
        "document.getElementById('poll-state').textContent === 'live'",
    );
    assert_eq!(shown(&mut chromium, "connections"), 0.0);
}
