//! End-to-end tests of `ferry run`: real processes, real QUIC on 127.0.0.1, real LMDB
//! stores, driven through the CLI (`send`, `recv`, `status`, `bundles`).

use std::time::Duration;

use ferry_tests::nodes::{
    free_port, linked_pair, payload, post_chunked, post_sized, realm_of, relay_trio, running_pair,
    TestNode, SETTLE,
};
use ferry_tests::{set_config_line, wait_until};

#[test]
fn direct_delivery_with_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, da, db) = running_pair(dir.path(), "spray-and-wait");

    let data = payload(100_000, 1);
    let id = a.send(&b.node.id, &["--lifetime", "1h"], &data);
    let got = b.recv(20, &dir.path().join("b-in"));
    assert_eq!(got.len(), 1, "{}", db.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data, "payload differs");
    // A learns of the delivery through the receipt, and its copy is released.
    assert!(
        wait_until(SETTLE, || a.delivered().contains(&id)),
        "A never saw the receipt:\n{}",
        da.log_text()
    );
    assert!(wait_until(SETTLE, || !a.stored_ids().contains(&id)));
    // Nothing more arrives.
    assert!(b.recv(1, &dir.path().join("b-in")).is_empty());
    da.stop();
    db.stop();
}

#[test]
fn store_carry_forward_between_nodes_never_up_together() {
    let (dir, a, b, c) = relay_trio();

    let db = b.start();
    let da = a.start();
    assert!(wait_until(SETTLE, || b.links() == 1));
    let data = payload(5_000, 2);
    let id = a.send(&c.node.id, &["--lifetime", "1h"], &data);
    assert!(
        wait_until(SETTLE, || b.stored_ids().contains(&id)),
        "B never took the bundle:\n{}",
        db.log_text()
    );
    da.stop();

    // A is down; only now does C come up and meet B.
    let dc = c.start();
    let got = c.recv(30, &dir.path().join("c-in"));
    assert_eq!(
        got.len(),
        1,
        "C got nothing:\n{}\n{}",
        dc.log_text(),
        db.log_text()
    );
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data);
    dc.stop();
    db.stop();
}

/// B is SIGKILLed right after it acknowledged custody of a bundle of `len` bytes; once
/// restarted it still delivers to C, exactly once.
fn custody_under_sigkill(len: usize, seed: u8) -> (tempfile::TempDir, TestNode, TestNode) {
    let (dir, a, b, c) = relay_trio();

    let db = b.start();
    let da = a.start();
    assert!(wait_until(SETTLE, || b.links() == 1));
    let data = payload(len, seed);
    let id = a.send(&c.node.id, &["--lifetime", "1h"], &data);
    // B lists the bundle only once it is committed, i.e. when it acknowledges custody.
    assert!(wait_until(SETTLE, || b.stored_ids().contains(&id)));
    let b_files = || ferry_tests::nodes::list_dir(&b.node.home.join("store").join("payloads"));
    let in_file = len >= ferry_storage::lmdb::FILE_MIN;
    assert_eq!(b_files().len(), usize::from(in_file), "{:?}", b_files());
    db.kill();
    da.stop();

    let db = b.start();
    assert!(b.stored_ids().contains(&id), "custody lost across SIGKILL");
    assert_eq!(b_files().len(), usize::from(in_file), "{:?}", b_files());
    let dc = c.start();
    let inbox = dir.path().join("c-in");
    let got = c.recv(30, &inbox);
    assert_eq!(got.len(), 1, "{}", dc.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data);
    // B releases its copy once C's receipt reaches it.
    assert!(
        wait_until(SETTLE, || !b.stored_ids().contains(&id)),
        "B kept the bundle after the receipt:\n{}",
        db.log_text()
    );
    // Exactly once: nothing else arrives, even after another contact.
    dc.stop();
    let dc = c.start();
    assert!(c.recv(3, &inbox).is_empty());
    dc.stop();
    db.stop();
    (dir, b, c)
}

#[test]
fn custody_survives_sigkill_and_delivers_exactly_once() {
    custody_under_sigkill(2_000, 3);
}

/// The same with a 3 MiB bundle, which the stores keep in a payload file beside LMDB
/// (`store/payloads/`): the file is committed with the record, survives the kill, and
/// goes when the record does.
#[test]
fn a_large_bundle_survives_sigkill_in_its_payload_file() {
    let (_dir, b, c) = custody_under_sigkill(3 << 20, 4);
    for n in [&b, &c] {
        let files = ferry_tests::nodes::list_dir(&n.node.home.join("store").join("payloads"));
        assert!(files.is_empty(), "payload files left: {files:?}");
    }
}

#[test]
fn expired_bundles_are_never_delivered_and_purged_everywhere() {
    let (dir, a, b, c) = relay_trio();
    let db = b.start();
    let da = a.start();
    assert!(wait_until(SETTLE, || b.links() == 1));
    let id = a.send(&c.node.id, &["--lifetime", "3s"], b"short-lived");
    assert!(wait_until(SETTLE, || b.stored_ids().contains(&id)));
    // Its lifetime ends before C ever comes up: both copies are purged.
    assert!(
        wait_until(SETTLE, || !a.stored_ids().contains(&id)
            && !b.stored_ids().contains(&id)),
        "not purged:\n{}",
        db.log_text()
    );
    let dc = c.start();
    assert!(wait_until(SETTLE, || c.links() == 1));
    assert!(c.recv(3, &dir.path().join("c-in")).is_empty());
    dc.stop();
    da.stop();
    db.stop();
}

#[test]
fn impersonation_and_foreign_realms_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, "epidemic");
    let share = realm_of(&a);
    let b = TestNode::init(dir.path(), "b", Some(&share), "epidemic");
    let x = TestNode::init(dir.path(), "x", Some(&share), "epidemic");
    let f = TestNode::init(dir.path(), "f", Some("valley"), "epidemic");
    // B believes A lives at X's address: X cannot prove A's id.
    b.set_peers(&[format!("{}@127.0.0.1:{}", a.node.id, x.quic)]);
    // F (same realm name, another secret) dials B.
    f.set_peers(&[b.addr()]);
    let dx = x.start();
    let db = b.start();
    let df = f.start();
    // Give the dialers several attempts.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        b.links(),
        0,
        "B accepted an impostor or a foreigner:\n{}",
        db.log_text()
    );
    assert_eq!(x.links(), 0);
    assert_eq!(f.links(), 0);
    // A genuine peer is accepted, so the refusals above are not a broken link.
    let a2 = TestNode::init(dir.path(), "a2", Some(&share), "epidemic");
    a2.set_peers(&[b.addr()]);
    let da2 = a2.start();
    assert!(wait_until(SETTLE, || b.links() == 1), "{}", db.log_text());
    da2.stop();
    df.stop();
    db.stop();
    dx.stop();
}

/// A → B → C → D where only neighbours ever connect, and links come and go: the line
/// comes up from D's end one contact at a time (so PRoPHET learns who meets whom),
/// then D leaves, A sends to D, A and B leave, and only then D comes back to meet C.
/// The bundle is created after D left and A is gone before D returns.
fn line_delivery(policy: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, policy);
    let share = realm_of(&a);
    let b = TestNode::init(dir.path(), "b", Some(&share), policy);
    let c = TestNode::init(dir.path(), "c", Some(&share), policy);
    let d = TestNode::init(dir.path(), "d", Some(&share), policy);
    b.set_peers(&[a.addr()]);
    c.set_peers(&[b.addr()]);
    d.set_peers(&[c.addr()]);
    if policy == "static" {
        a.add_route(&d.node.id, &b.node.id);
        b.add_route(&d.node.id, &c.node.id);
        c.add_route(&d.node.id, &d.node.id);
    }
    let dd = d.start();
    let dc = c.start();
    assert!(wait_until(SETTLE, || c.links() == 1));
    let db = b.start();
    assert!(wait_until(SETTLE, || b.links() == 1));
    let da = a.start();
    assert!(wait_until(SETTLE, || b.links() == 2 && c.links() == 2));
    dd.stop();
    assert!(wait_until(SETTLE, || c.links() == 1));

    let data = payload(3_000, 9);
    let id = a.send(&d.node.id, &["--lifetime", "1h"], &data);
    assert!(
        wait_until(SETTLE, || c.stored_ids().contains(&id)),
        "{policy}: C never got it:\n{}\n{}",
        db.log_text(),
        dc.log_text()
    );
    da.stop();
    db.stop();
    let dd = d.start();
    let got = d.recv(30, &dir.path().join("d-in"));
    assert_eq!(got.len(), 1, "{policy}: D got nothing:\n{}", dd.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data);
    dd.stop();
    dc.stop();
}

#[test]
fn epidemic_delivers_across_a_line() {
    line_delivery("epidemic");
}

#[test]
fn spray_and_wait_delivers_across_a_line() {
    line_delivery("spray-and-wait");
}

#[test]
fn prophet_delivers_across_a_line() {
    line_delivery("prophet");
}

#[test]
fn static_routes_deliver_across_a_line() {
    line_delivery("static");
}

/// PRoPHET's delivery predictabilities are kept in the store: a node killed with
/// SIGKILL after meeting a peer still knows that peer once restarted alone.
#[test]
fn prophet_table_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = linked_pair(dir.path(), "prophet");
    let table = |n: &TestNode| -> Option<Vec<f64>> {
        let s = n.status()?;
        let t = s["routing"]["predictabilities"].as_array()?;
        Some(t.iter().filter_map(|e| e["p"].as_f64()).collect())
    };
    let da = a.start();
    assert_eq!(table(&a), Some(Vec::new()), "a new node knows no one");
    let db = b.start();
    assert!(wait_until(SETTLE, || table(&a).is_some_and(|t| t.len() == 1)));
    let before = table(&a).expect("table");
    assert!(
        (before[0] - 0.5).abs() < 1e-9,
        "first encounter: {before:?}"
    );
    // The table is committed with the next commit (milliseconds); then a power cut.
    std::thread::sleep(Duration::from_millis(500));
    da.kill();
    db.stop();
    let da = a.start();
    let after = table(&a).expect("status");
    assert_eq!(after.len(), 1, "{}", da.log_text());
    // Aged by at most a few time units (30 s each) meanwhile.
    assert!(after[0] <= before[0] && after[0] > 0.49, "{after:?}");
    da.stop();
}

/// Direct delivery hands a bundle only to its destination: it reaches a neighbour,
/// and across a line it stays with the source until source and destination meet.
#[test]
fn direct_delivery_waits_for_the_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, "direct");
    let share = realm_of(&a);
    let b = TestNode::init(dir.path(), "b", Some(&share), "direct");
    let c = TestNode::init(dir.path(), "c", Some(&share), "direct");
    b.set_peers(&[a.addr()]);
    let da = a.start();
    let db = b.start();
    assert!(wait_until(SETTLE, || a.links() == 1));
    let id = a.send(&c.node.id, &["--lifetime", "1h"], b"for c");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !b.stored_ids().contains(&id),
        "direct delivery handed it to a relay"
    );
    db.stop();
    // C meets A: delivered.
    c.set_peers(&[a.addr()]);
    let dc = c.start();
    let got = c.recv(30, &dir.path().join("c-in"));
    assert_eq!(got.len(), 1, "{}", dc.log_text());
    assert_eq!(got[0].0, id);
    dc.stop();
    da.stop();
}

/// Sets `[discovery]` in ferry.toml: beacons on `listen`, sent to `targets`.
fn set_discovery(n: &TestNode, listen: u16, targets: &[u16]) {
    let path = n.config_path();
    let text = std::fs::read_to_string(&path).expect("read config");
    let targets: Vec<String> = targets
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let mut out = Vec::new();
    let mut in_discovery = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_discovery = line == "[discovery]";
        }
        let line = if in_discovery && line.starts_with("enabled = ") {
            "enabled = true".to_owned()
        } else if in_discovery && line.starts_with("listen = ") {
            format!("listen = \"127.0.0.1:{listen}\"")
        } else if in_discovery && line.starts_with("targets = ") {
            format!("targets = [{}]", targets.join(", "))
        } else if in_discovery && line.starts_with("interval_secs = ") {
            "interval_secs = 1".to_owned()
        } else {
            line.to_owned()
        };
        out.push(line);
    }
    std::fs::write(&path, out.join("\n") + "\n").expect("write config");
}

/// Nodes with no configured peers find each other by signed LAN beacons (sent here to
/// each other's 127.0.0.1 beacon port), deliver, and ignore a node of another realm.
#[test]
fn lan_discovery_links_nodes_of_the_realm_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, "epidemic");
    let share = realm_of(&a);
    let b = TestNode::init(dir.path(), "b", Some(&share), "epidemic");
    let f = TestNode::init(dir.path(), "f", Some("valley"), "epidemic");
    let (pa, pb, pf) = (free_port(), free_port(), free_port());
    set_discovery(&a, pa, &[pb, pf]);
    set_discovery(&b, pb, &[pa, pf]);
    set_discovery(&f, pf, &[pa, pb]);
    let da = a.start();
    let db = b.start();
    let df = f.start();
    assert!(
        wait_until(SETTLE, || a.links() == 1 && b.links() == 1),
        "no link by discovery:\n{}\n{}",
        da.log_text(),
        db.log_text()
    );
    let id = a.send(&b.node.id, &["--lifetime", "1h"], b"found you");
    let got = b.recv(20, &dir.path().join("b-in"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id);
    // Several beacon intervals later the foreign node is still alone.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(f.links(), 0, "{}", df.log_text());
    assert_eq!(a.links(), 1);
    df.stop();
    db.stop();
    da.stop();
}

/// The API takes an upload however it is chunked and delivers it byte for byte; an
/// upload over the store's bundle limit is refused with 413, and the node keeps
/// working. An upload with a `Content-Length` (read straight into the bundle's
/// buffer) likewise, and one that ends before its announced length is refused.
#[test]
fn the_api_takes_any_chunking_and_refuses_bodies_over_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = linked_pair(dir.path(), "epidemic");
    set_config_line(&a.config_path(), "max_bundle_bytes", "1000000");
    let da = a.start();
    let db = b.start();
    assert!(wait_until(SETTLE, || a.links() == 1), "{}", db.log_text());
    let query = format!("to={}&lifetime=1h", b.node.id);

    let data = payload(600_000, 7);
    let answer = post_chunked(a.api, &query, &data, &[1, 7, 70_000, 3, 65_536, 200_000]);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        da.log_text()
    );
    let got = b.recv(20, &dir.path().join("b-in"));
    assert_eq!(got.len(), 1, "{}", db.log_text());
    assert!(got[0].1 == data, "payload differs");
    assert!(answer.contains(&got[0].0), "{answer}");

    let answer = post_chunked(a.api, &query, &payload(1_200_000, 8), &[100_000]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("length limit exceeded"), "{answer}");

    // With a Content-Length, written in uneven pieces.
    let data = payload(700_000, 10);
    let answer = post_sized(a.api, &query, &data, data.len(), &[3, 65_536, 1, 99_999]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = b.recv(20, &dir.path().join("b-in3"));
    assert_eq!(got.len(), 1, "{}", db.log_text());
    assert!(got[0].1 == data, "payload differs");
    assert!(answer.contains(&got[0].0), "{answer}");
    let answer = post_sized(a.api, &query, &data[..1000], 1_200_000, &[1000]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("length limit exceeded"), "{answer}");
    let answer = post_sized(a.api, &query, &data[..300_000], data.len(), &[100_000]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // Still up, and nothing of the refused uploads went anywhere.
    let small = payload(1_000, 9);
    let id = a.send(&b.node.id, &["--lifetime", "1h"], &small);
    let got = b.recv(20, &dir.path().join("b-in2"));
    assert_eq!(got.len(), 1, "{}", db.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == small, "payload differs");
    da.stop();
    db.stop();
}
