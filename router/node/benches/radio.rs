//! Serial/LoRa figures with real `ferry run` processes over `ferry radio-emulator`
//! (real airtime in real time, so this takes a few minutes):
//!
//! 1. bytes on air for a 50-byte message to a neighbour (SF9/125 kHz, KISS): what each
//!    side transmitted from the submit until the bundle waits for B's app, every
//!    frame of the exchange included (the bundle, the custody ack, link ACKs);
//! 2. a 10 KiB bundle across three LoRa hops (a line A-B-C-D, EU868 868.1 MHz, 1% duty
//!    cycle, SF7/125 kHz) from the submit to its arrival at D, next to the minimum
//!    that airtime and duty cycle allow (the bundle's bytes in full 255-byte packets
//!    with no header at all, each hop after the other, from full budgets).
//!
//! `cargo bench -p ferry-node --bench radio`
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::time::{Duration, Instant};

use ferry_cl_lora::{DutyBudget, RadioSettings};
use ferry_tests::nodes::{payload, TestNode};
use ferry_tests::radio::{radio_nodes, Emulator};
use ferry_tests::wait_until;

fn waiting(n: &TestNode) -> u64 {
    n.status()
        .map(|s| {
            s["deliveries_waiting"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
        })
        .unwrap_or(0)
}

fn tx(stats: &serde_json::Value, node: &str) -> (u64, u64, f64) {
    let s = &stats["nodes"][node];
    (
        s["tx_bytes"].as_u64().unwrap_or(0),
        s["tx_frames"].as_u64().unwrap_or(0),
        s["airtime_ms"].as_f64().unwrap_or(0.0),
    )
}

fn main() {
    std::env::set_var("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"));
    bytes_on_air();
    three_hops();
}

fn bytes_on_air() {
    let dir = tempfile::tempdir().unwrap();
    let mut emu = Emulator::start(
        &dir.path().join("pty"),
        &[
            "--nodes",
            "a,b",
            "--mode",
            "kiss",
            "--sf",
            "9",
            "--frequency",
            "869525000",
        ],
    );
    let radio = "hello_secs = 3600\n[serial.radio]\nfrequency = 869525000\nspreading_factor = 9\nregion = \"eu868\"\n";
    let (nodes, daemons) = radio_nodes(dir.path(), &emu, &["a", "b"], "kiss", radio);
    let (a, b) = (&nodes[0], &nodes[1]);
    assert!(
        wait_until(Duration::from_secs(120), || a.links() == 1
            && b.links() == 1),
        "no contact"
    );
    // Let the contact's first reconciliation finish.
    let mut last = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(120), || {
        std::thread::sleep(Duration::from_secs(4));
        let s = emu.stats();
        let same = tx(&s, "a") == tx(&last, "a") && tx(&s, "b") == tx(&last, "b");
        last = s;
        same
    }));
    let before = emu.stats();
    a.send(&b.node.id, &[], &payload(50, 1));
    assert!(
        wait_until(Duration::from_secs(120), || waiting(b) == 1),
        "not delivered"
    );
    std::thread::sleep(Duration::from_secs(3)); // the last link ACK
    let after = emu.stats();
    let (ab, af, aa) = tx(&after, "a");
    let (ab0, af0, aa0) = tx(&before, "a");
    let (bb, bf, ba) = tx(&after, "b");
    let (bb0, bf0, ba0) = tx(&before, "b");
    println!("== a 50-byte message to a neighbour, SF9/125 kHz (KISS), real nodes ==");
    println!(
        "A sent {} B in {} packets ({:.0} ms on air); B sent {} B in {} packets ({:.0} ms)",
        ab - ab0,
        af - af0,
        aa - aa0,
        bb - bb0,
        bf - bf0,
        ba - ba0
    );
    println!("(the bundle itself: one 198-byte packet, sent without an offer; the rest is the custody acknowledgment and link ACKs)");
    drop(daemons);
}

fn three_hops() {
    let dir = tempfile::tempdir().unwrap();
    let sf = 7u8;
    let mut emu = Emulator::start(
        &dir.path().join("pty"),
        &[
            "--nodes",
            "a,b,c,d",
            "--mode",
            "kiss",
            "--reach",
            "a-b,b-c,c-d",
            "--sf",
            "7",
            "--frequency",
            "868100000",
        ],
    );
    let radio = "hello_secs = 3600\n[serial.radio]\nfrequency = 868100000\nspreading_factor = 7\nregion = \"eu868\"\n";
    let (nodes, daemons) = radio_nodes(dir.path(), &emu, &["a", "b", "c", "d"], "kiss", radio);
    assert!(
        wait_until(Duration::from_secs(180), || nodes[0].links() == 1
            && nodes[1].links() == 2
            && nodes[2].links() == 2
            && nodes[3].links() == 1),
        "the line did not come up"
    );
    std::thread::sleep(Duration::from_secs(10));
    let size = 10 * 1024;
    let t0 = Instant::now();
    let id = nodes[0].send(&nodes[3].node.id, &[], &payload(size, 2));
    assert!(
        wait_until(Duration::from_secs(1200), || waiting(&nodes[3]) == 1),
        "not delivered"
    );
    let took = t0.elapsed().as_secs_f64();
    let r = RadioSettings {
        frequency_hz: 868_100_000,
        spreading_factor: sf,
        ..RadioSettings::default()
    };
    // The bundle on the wire: payload + header; count what `ferry bundles` says.
    let bundle_len = nodes[3].node.cmd(&["bundles", "--json"]).run().json()["bundles"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|b| b["id"] == id.as_str())
                .and_then(|b| b["size"].as_u64())
        })
        .unwrap_or(size as u64) as usize;
    let airtime = ((bundle_len / 255) as u64 * r.airtime_us(255)
        + if !bundle_len.is_multiple_of(255) {
            r.airtime_us(bundle_len % 255)
        } else {
            0
        }) as f64
        / 1e6;
    let cap = DutyBudget::with_default_window(0.01).unwrap().capacity_us() as f64 / 1e6;
    let min = 3.0 * airtime.max((airtime - cap) / 0.01);
    let stats = emu.stats();
    println!("\n== 10 KiB over three LoRa hops, EU868 868.1 MHz 1%, SF{sf}/125 kHz, real nodes ==");
    println!(
        "bundle {bundle_len} B: delivered at D after {took:.1} s; minimum {min:.1} s ({airtime:.2} s of airtime per hop) -> {:.2}x",
        took / min
    );
    for n in ["a", "b", "c", "d"] {
        let (b, f, ms) = tx(&stats, n);
        let hour = stats["nodes"][n]["max_airtime_in_any_hour_ms"]
            .as_f64()
            .unwrap_or(0.0);
        println!("  {n}: sent {b} B in {f} packets, {ms:.0} ms on air (busiest hour {hour:.0} ms of 36000)");
    }
    drop(daemons);
}
