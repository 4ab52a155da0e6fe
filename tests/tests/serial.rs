//! Serial cables and LoRa radios between real `ferry run` processes, through
//! `ferry radio-emulator` (pseudo-terminals with a paced cable, or a shared radio
//! channel with real airtime, loss, reach and collisions).

use std::time::Duration;

use ferry_tests::nodes::{payload, realm_of, Daemon, TestNode, SETTLE};
use ferry_tests::radio::{add_serial, port_status, radio_nodes, Emulator};
use ferry_tests::wait_until;

fn two_nodes(dir: &std::path::Path) -> (TestNode, TestNode) {
    let a = TestNode::init(dir, "a", None, "epidemic");
    let b = TestNode::init(dir, "b", Some(&realm_of(&a)), "epidemic");
    (a, b)
}

/// Two nodes on an emulated cable at `baud`, started and in contact.
fn cable_pair(
    dir: &std::path::Path,
    baud: &str,
    extra: &str,
) -> (Emulator, TestNode, TestNode, Daemon, Daemon) {
    let emu = Emulator::start(
        &dir.join("pty"),
        &["--nodes", "a,b", "--mode", "wire", "--baud", baud],
    );
    let (a, b) = two_nodes(dir);
    let extra = format!("baud = {baud}\n{extra}");
    add_serial(&a, &emu.path("a"), "cable", &extra);
    add_serial(&b, &emu.path("b"), "cable", &extra);
    let (da, db) = (a.start(), b.start());
    assert!(
        wait_until(SETTLE, || a.links() == 1 && b.links() == 1),
        "no contact over the cable:\n{}",
        da.log_text()
    );
    (emu, a, b, da, db)
}

/// Every node's port status and log, then the channel's statistics: what a failing
/// radio test prints.
fn radio_report(nodes: &[(&str, &TestNode, &Daemon)], emu: &mut Emulator) -> String {
    let mut out = String::new();
    for (name, n, d) in nodes {
        out.push_str(&format!("{name} {}\n{}\n", port_status(n), d.log_text()));
    }
    out + &serde_json::to_string(&emu.stats()).unwrap_or_default()
}

fn num(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

#[test]
fn a_serial_cable_carries_50_bytes_10_kib_and_1_mib_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, a, b, da, db) = cable_pair(dir.path(), "921600", "");
    let msgs = [payload(50, 1), payload(10 * 1024, 2), payload(1 << 20, 3)];
    let ids: Vec<String> = msgs.iter().map(|m| a.send(&b.node.id, &[], m)).collect();
    let out = dir.path().join("out");
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            got.extend(b.recv(1, &out));
            got.len() >= 3
        }),
        "received {} of 3:\n{}",
        got.len(),
        db.log_text()
    );
    for (id, m) in ids.iter().zip(&msgs) {
        let (_, p) = got
            .iter()
            .find(|(g, _)| g == id)
            .expect("each bundle delivered");
        assert!(p == m, "payload of {id} differs");
    }
    assert_eq!(got.len(), 3, "each exactly once");
    // A learns of the deliveries through B's receipts, over the same cable.
    assert!(wait_until(SETTLE, || ids
        .iter()
        .all(|i| a.delivered().contains(i))));
    da.stop();
    db.stop();
}

#[test]
fn a_cable_broken_mid_transfer_resumes_without_resending_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (mut emu, a, b, da, db) = cable_pair(dir.path(), "115200", "hello_secs = 1");
    let size = 120 * 1024;
    let id = a.send(&b.node.id, &[], &payload(size, 7));
    // Segments of 243 bytes (a 255-byte frame, two-byte segment numbers).
    let nseg = (size as u64 + 400).div_ceil(243);
    assert!(wait_until(SETTLE, || num(
        &port_status(&a),
        &["session", "segments_sent"]
    ) >= nseg * 2 / 5));
    emu.command("cut a b");
    // The contact ends on both sides (unanswered polls, silence).
    assert!(
        wait_until(SETTLE, || a.links() == 0),
        "A still sees B:\n{}",
        da.log_text()
    );
    let before = port_status(&a);
    let sent_before =
        num(&before, &["session", "segments_sent"]) + num(&before, &["session", "segments_resent"]);
    emu.command("restore a b");
    let out = dir.path().join("out");
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(90), || {
            got.extend(b.recv(1, &out));
            !got.is_empty()
        }),
        "not delivered after the cable came back:\n{}",
        db.log_text()
    );
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == payload(size, 7));
    let after = port_status(&a);
    let sent_after =
        num(&after, &["session", "segments_sent"]) + num(&after, &["session", "segments_resent"]);
    let acked_before = sent_before.saturating_sub(32); // at most a window in flight at the cut
    let second = sent_after - sent_before;
    assert!(
        second <= nseg - acked_before.min(nseg) + 32,
        "after the break {second} segments went again; {sent_before} had been sent of {nseg}"
    );
    assert!(
        num(&port_status(&b), &["session", "resumed"]) >= 1,
        "B resumed its partial bundle"
    );
    da.stop();
    db.stop();
}

#[test]
fn garbage_truncated_and_oversized_frames_on_the_line_are_counted_and_the_link_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let (mut emu, a, b, da, db) = cable_pair(dir.path(), "921600", "");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    // Line noise.
    emu.command(&format!("inject b {}", hex(&[0x55; 40])));
    // A frame of random bytes (fails the frame check), a truncated one, a tiny one.
    emu.command(&format!(
        "inject b c000{}c0",
        hex(&payload(120, 9).iter().map(|x| x & 0x7f).collect::<Vec<_>>())
    ));
    emu.command("inject b c0004001c0");
    emu.command("inject b c00002c0");
    // An oversized frame (longer than any the decoder keeps).
    emu.command(&format!("inject b c000{}c0", hex(&vec![0x11; 2000])));
    // A bad escape.
    emu.command("inject b c000dbffc0");
    assert!(
        wait_until(SETTLE, || {
            let s = port_status(&b);
            // The noise between two frames reads as a frame with an odd command byte.
            num(&s, &["kiss_errors"]) >= 2
                && num(&s, &["unexpected_commands"]) >= 1
                && num(&s, &["session", "bad_check"]) + num(&s, &["session", "malformed"]) >= 3
        }),
        "counters: {}",
        port_status(&b)
    );
    // The contact survived and still carries bundles.
    assert_eq!(b.links(), 1);
    let id = a.send(&b.node.id, &[], &payload(3000, 4));
    let out = dir.path().join("out");
    let mut got = Vec::new();
    assert!(wait_until(SETTLE, || {
        got.extend(b.recv(1, &out));
        !got.is_empty()
    }));
    assert_eq!(got[0].0, id);
    da.stop();
    db.stop();
}

#[test]
fn three_rnodes_in_a_line_with_20_percent_loss_deliver_within_the_duty_cycle() {
    let dir = tempfile::tempdir().unwrap();
    // A fast LoRa setting keeps the test short; the session and budget work the same.
    let radio = "[serial.radio]\nfrequency = 868100000\nbandwidth = 500000\nspreading_factor = 7\ncoding_rate = 5\ntx_power = 14\nregion = \"eu868\"\n";
    let mut emu = Emulator::start(
        &dir.path().join("pty"),
        &[
            "--nodes",
            "a,b,c",
            "--mode",
            "rnode",
            "--reach",
            "a-b,b-c",
            "--loss",
            "0.2",
            "--frequency",
            "868100000",
            "--bandwidth",
            "500000",
            "--sf",
            "7",
            "--seed",
            "5",
        ],
    );
    let (nodes, daemons) = radio_nodes(
        dir.path(),
        &emu,
        &["a", "b", "c"],
        "rnode",
        &format!("hello_secs = 5\n{radio}"),
    );
    let ([a, b, c], [da, db, dc]) = (
        <[TestNode; 3]>::try_from(nodes).unwrap(),
        <[Daemon; 3]>::try_from(daemons).unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(120), || a.links() == 1
            && b.links() == 2
            && c.links() == 1),
        "links a={} b={} c={}\n{}",
        a.links(),
        b.links(),
        c.links(),
        db.log_text()
    );
    assert!(
        port_status(&a)["firmware"].is_string(),
        "RNode detected: {}",
        port_status(&a)
    );
    let id = a.send(&c.node.id, &[], &payload(2000, 3));
    let out = dir.path().join("out");
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(180), || {
            got.extend(c.recv(1, &out));
            !got.is_empty()
        }),
        "A -> C not delivered:
{}",
        radio_report(&[("A", &a, &da), ("B", &b, &db), ("C", &c, &dc)], &mut emu)
    );
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == payload(2000, 3));
    let stats = emu.stop();
    // EU868 868.1 MHz: 1%, 36 s of airtime in any hour.
    for (name, s) in stats["nodes"].as_object().unwrap() {
        let hour = s["max_airtime_in_any_hour_ms"].as_f64().unwrap_or(f64::MAX);
        assert!(
            hour <= 36_000.0,
            "{name} used {hour} ms of airtime in an hour"
        );
        assert!(
            s["tx_frames"].as_u64().unwrap_or(0) > 0,
            "{name} transmitted"
        );
    }
    assert!(
        stats["nodes"]["b"]["lost"].as_u64().unwrap_or(0) > 0,
        "the channel lost frames: {stats}"
    );
    da.stop();
    db.stop();
    dc.stop();
}

#[test]
fn a_bundle_two_radio_neighbours_lack_goes_on_air_once() {
    let dir = tempfile::tempdir().unwrap();
    let radio = "[serial.radio]\nfrequency = 869525000\nbandwidth = 500000\nspreading_factor = 7\nregion = \"eu868\"\n";
    let mut emu = Emulator::start(
        &dir.path().join("pty"),
        &[
            "--nodes",
            "a,b,c",
            "--mode",
            "kiss",
            "--reach",
            "a-b,a-c",
            "--frequency",
            "869525000",
            "--bandwidth",
            "500000",
            "--sf",
            "7",
        ],
    );
    let (nodes, daemons) = radio_nodes(dir.path(), &emu, &["a", "b", "c"], "kiss", radio);
    let ([a, b, c], [da, db, dc]) = (
        <[TestNode; 3]>::try_from(nodes).unwrap(),
        <[Daemon; 3]>::try_from(daemons).unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(60), || a.links() == 2
            && b.links() == 1
            && c.links() == 1),
        "links a={} b={} c={}\n{}",
        a.links(),
        b.links(),
        c.links(),
        radio_report(&[("A", &a, &da), ("B", &b, &db), ("C", &c, &dc)], &mut emu)
    );
    // Let the contacts' first exchanges finish.
    std::thread::sleep(Duration::from_secs(3));
    let before = emu.stats()["nodes"]["a"]["tx_bytes"].as_u64().unwrap();
    let size = 20_000;
    a.node
        .cmd(&["send", "--group"])
        .stdin(payload(size, 5))
        .run()
        .success();
    let waiting = |n: &TestNode| {
        n.status()
            .and_then(|s| {
                s["deliveries_waiting"]
                    .as_object()
                    .map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || waiting(&b) == 1
            && waiting(&c) == 1),
        "the group bundle reached b and c:\n{}",
        da.log_text()
    );
    let sent = emu.stats()["nodes"]["a"]["tx_bytes"].as_u64().unwrap() - before;
    assert!(
        (sent as f64) < 1.5 * size as f64,
        "A put {sent} bytes on air for one {size}-byte bundle to two neighbours
{}",
        radio_report(&[("A", &a, &da), ("B", &b, &db), ("C", &c, &dc)], &mut emu)
    );
    let shared = num(&port_status(&a), &["session", "segments_sent"]);
    assert!(shared > 0);
    da.stop();
    db.stop();
    dc.stop();
}

#[test]
fn a_radio_unplugged_and_plugged_back_is_reopened_and_the_contact_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, a, b, da, db) = cable_pair(dir.path(), "921600", "hello_secs = 1");
    // Unplug: the pseudo-terminals vanish (as /dev/ttyUSB0 does).
    emu.stop();
    assert!(
        wait_until(SETTLE, || a.links() == 0 && b.links() == 0),
        "the contact did not end:\n{}",
        da.log_text()
    );
    assert!(wait_until(SETTLE, || !port_status(&a)["open"]
        .as_bool()
        .unwrap_or(true)));
    // Plug back in at the same paths: the nodes reopen their ports and meet again.
    let _emu = Emulator::start(
        &dir.path().join("pty"),
        &["--nodes", "a,b", "--mode", "wire", "--baud", "921600"],
    );
    assert!(
        wait_until(SETTLE, || a.links() == 1 && b.links() == 1),
        "no contact after replugging:\n{}",
        da.log_text()
    );
    let id = a.send(&b.node.id, &[], &payload(5000, 8));
    let out = dir.path().join("out");
    let mut got = Vec::new();
    assert!(wait_until(SETTLE, || {
        got.extend(b.recv(1, &out));
        !got.is_empty()
    }));
    assert_eq!(got[0].0, id);
    da.stop();
    db.stop();
}
