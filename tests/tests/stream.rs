//! The app stream (`GET /v1/stream`, a WebSocket) between real nodes: many bundles
//! submitted on one connection, pushed to the receiving app on another, acknowledged
//! there and confirmed at the source by receipts; bad messages answered with errors;
//! deliveries left unacknowledged offered again when the stream closes.
#![allow(clippy::disallowed_methods)] // the tests bound their waits by elapsed time

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry_tests::nodes::{payload, running_pair, TestNode, SETTLE};
use ferry_tests::wait_until;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(n: &TestNode, query: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{}/v1/stream{query}", n.api);
    let (ws, _) = tungstenite::connect(url).expect("websocket");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
    }
    ws
}

/// The next text message as JSON (binary messages are an error here).
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Binary(b) => panic!("unexpected binary message of {} bytes", b.len()),
            _ => continue,
        }
    }
}

fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match ws.read().expect("read") {
            Message::Binary(b) => return b.to_vec(),
            Message::Text(t) => panic!("unexpected text message {t}"),
            _ => continue,
        }
    }
}

fn send_json(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).expect("send");
}

/// Reads one pushed delivery: (id, payload).
fn next_delivery(ws: &mut Ws) -> (String, Vec<u8>) {
    let meta = next_json(ws);
    assert_eq!(meta["type"], "delivery", "{meta}");
    let body = next_binary(ws);
    assert_eq!(meta["size"].as_u64(), Some(body.len() as u64));
    (meta["id"].as_str().expect("id").to_owned(), body)
}

#[test]
fn many_bundles_cross_on_two_streams_and_are_confirmed_by_receipts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, da, db) = running_pair(dir.path(), "epidemic");

    let mut tx = connect(&a, "");
    // A payload before any params, and params that do not make sense, are refused.
    tx.send(Message::Binary(b"too early".to_vec().into()))
        .expect("send");
    let e = next_json(&mut tx);
    assert_eq!(
        (e["type"].as_str(), e["n"].as_u64()),
        (Some("error"), Some(1))
    );
    assert_eq!(e["status"], 400);
    send_json(&mut tx, &json!({ "type": "params", "to": "not-a-node" }));
    let e = next_json(&mut tx);
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["error"].as_str().unwrap_or("").starts_with("to:"), "{e}");
    send_json(&mut tx, &json!({ "type": "hello" }));
    assert_eq!(next_json(&mut tx)["type"], "error");
    tx.send(Message::Text("{not json".into())).expect("send");
    assert_eq!(next_json(&mut tx)["type"], "error");

    send_json(
        &mut tx,
        &json!({ "type": "params", "to": b.node.id, "lifetime": "1h", "endpoint": "inbox" }),
    );
    assert_eq!(next_json(&mut tx)["type"], "params");
    let count: u8 = 200;
    let payloads: Vec<Vec<u8>> = (0..count).map(|i| payload(64, i)).collect();
    // All submitted before any answer is read: the stream pipelines them.
    for p in &payloads {
        tx.send(Message::Binary(p.clone().into())).expect("send");
    }
    let mut ids = Vec::new();
    for i in 0..count {
        let r = next_json(&mut tx);
        assert_eq!(r["type"], "submitted", "{r}");
        // Answers come in order; the failed early payload was number 1.
        assert_eq!(r["n"].as_u64(), Some(u64::from(i) + 2));
        ids.push(r["id"].as_str().expect("id").to_owned());
    }

    let mut rx = connect(&b, "?receive=true&endpoint=inbox");
    let mut got = BTreeSet::new();
    let t = Instant::now();
    while got.len() < payloads.len() {
        assert!(t.elapsed() < Duration::from_secs(120), "only {}", got.len());
        let (id, body) = next_delivery(&mut rx);
        assert!(ids.contains(&id), "unknown id {id}");
        assert!(payloads.contains(&body));
        send_json(&mut rx, &json!({ "type": "ack", "id": id }));
        got.insert(id);
    }
    // Acknowledging something that is not waiting is an error, not a crash.
    send_json(&mut rx, &json!({ "type": "ack", "id": ids[0] }));
    let e = next_json(&mut rx);
    assert_eq!(
        (e["type"].as_str(), e["status"].as_u64()),
        (Some("error"), Some(404))
    );
    // The source learns of every delivery through receipts.
    assert!(
        wait_until(SETTLE, || {
            let d = a.delivered();
            ids.iter().all(|id| d.contains(id))
        }),
        "A did not see every receipt:\n{}",
        da.log_text()
    );
    drop(tx);
    drop(rx);
    da.stop();
    db.stop();
}

#[test]
fn deliveries_left_unacknowledged_come_back_when_the_stream_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, da, db) = running_pair(dir.path(), "epidemic");
    let id = a.send(&b.node.id, &["--lifetime", "1h"], b"not yet");
    let mut rx = connect(&b, "?receive=true");
    let (first, body) = next_delivery(&mut rx);
    assert_eq!(
        (first.as_str(), body.as_slice()),
        (id.as_str(), &b"not yet"[..])
    );
    // Closed without an ack: the lease ends with the stream, so another app gets
    // it now, not after the 60 s lease.
    rx.close(None).expect("close");
    while rx.read().is_ok() {}
    let out = dir.path().join("out");
    let t = Instant::now();
    let got = b.recv(5, &out);
    assert_eq!(got.len(), 1, "after {:?}", t.elapsed());
    assert_eq!(got[0].0, id);
    assert!(t.elapsed() < Duration::from_secs(30));
    da.stop();
    db.stop();
}

/// A payload over `[store] fragment_bytes` submitted on a stream travels in
/// fragments and is pushed to the receiving app whole, as one delivery under the
/// id the submission answered; its ack releases every fragment.
#[test]
fn a_fragmented_payload_crosses_the_stream_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = ferry_tests::nodes::linked_pair(dir.path(), "epidemic");
    ferry_tests::set_config_line(&a.config_path(), "fragment_bytes", "65536");
    let da = a.start();
    let db = b.start();
    assert!(wait_until(SETTLE, || a.links() == 1), "{}", db.log_text());

    let mut tx = connect(&a, "");
    send_json(
        &mut tx,
        &json!({ "type": "params", "to": b.node.id, "lifetime": "1h" }),
    );
    assert_eq!(next_json(&mut tx)["type"], "params");
    let data = payload(500_000, 31);
    tx.send(Message::Binary(data.clone().into())).expect("send");
    let r = next_json(&mut tx);
    assert_eq!(r["type"], "submitted", "{r}");
    let id = r["id"].as_str().expect("id").to_owned();

    let mut rx = connect(&b, "?receive=true");
    let (got, body) = next_delivery(&mut rx);
    assert_eq!(got, id);
    assert!(body == data, "payload differs");
    send_json(&mut rx, &json!({ "type": "ack", "id": id }));
    assert!(
        wait_until(SETTLE, || a.delivered().contains(&id)),
        "A never saw the receipt:\n{}",
        da.log_text()
    );
    assert!(
        wait_until(SETTLE, || b.stored_ids().len() <= 1),
        "B kept fragments: {:?}",
        b.stored_ids()
    );
    drop(tx);
    drop(rx);
    da.stop();
    db.stop();
}
