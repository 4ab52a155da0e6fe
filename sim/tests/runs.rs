//! Determinism, policy ordering, cut transfers, buffer policies.
#![allow(clippy::print_stderr)]

mod common;

use common::*;
use ferry_router::engine::PolicyConfig;
use ferry_sim::model::{BufferPolicy, LinkModel};
use ferry_sim::report::compare_text;
use ferry_sim::run::{run, run_detailed};

fn slow_link(bitrate: u64) -> LinkModel {
    LinkModel {
        bitrate_bytes: bitrate,
        latency_ms: 10,
        loss: 0.0,
        mtu: None,
        duty_cycle: None,
        one_transfer_per_node: false,
    }
}

#[test]
fn same_scenario_and_seed_give_identical_reports() {
    let (_, contacts, messages) = random_trace(9, 12, 200, 40, 3000);
    let mut link = slow_link(250_000);
    link.loss = 0.2;
    link.one_transfer_per_node = true;
    link.duty_cycle = Some(0.5);
    let mut s = scenario(12, 3100, 1200, link);
    s.buffer.bytes = 4_000_000;
    s.buffer.policy = BufferPolicy::DropOldest;
    for policy in [
        PolicyConfig::Epidemic,
        PolicyConfig::SprayAndWait { copies: 4 },
        PolicyConfig::Prophet(Default::default()),
    ] {
        let a = run(&s, policy.clone(), &contacts, &messages).unwrap();
        let b = run(&s, policy, &contacts, &messages).unwrap();
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(a.to_csv(), b.to_csv());
        assert_eq!(a.to_text(), b.to_text());
        assert!(a.relayed > 0 && a.delivered > 0, "{}", a.to_text());
        assert_eq!(a.engine_errors, 0, "{:?}", a.notes);
    }
    // A different seed draws different losses.
    let a = run(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    s.seed += 1;
    let b = run(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_ne!(a.to_json(), b.to_json());
}

#[test]
fn direct_then_spray_then_epidemic() {
    let nodes = 20;
    let (_, contacts, messages) = random_trace(5, nodes, 250, 80, 4000);
    let s = scenario(nodes, 4100, 300, ideal_link());
    let mut reports = Vec::new();
    for policy in [
        PolicyConfig::Direct,
        PolicyConfig::SprayAndWait { copies: 4 },
        PolicyConfig::Epidemic,
    ] {
        let r = run(&s, policy, &contacts, &messages).unwrap();
        assert_eq!(r.engine_errors, 0, "{:?}", r.notes);
        reports.push(r);
    }
    let table = compare_text(&reports);
    eprintln!("{table}");
    let ratios: Vec<f64> = reports.iter().map(|r| r.delivery_ratio).collect();
    assert!(ratios[0] <= ratios[1] && ratios[1] <= ratios[2], "{table}");
    assert!(
        ratios[0] < ratios[2],
        "the trace separates the policies: {table}"
    );
    // Epidemic pays for it with more transfers per delivery.
    assert!(
        reports[2].overhead_ratio > reports[0].overhead_ratio,
        "{table}"
    );
    assert!(table.contains("spray-and-wait:4"));
}

#[test]
fn a_transfer_cut_by_down_is_lost_and_sent_again_later() {
    // 10 kB at 1 kB/s: 10 s of airtime. The first contact lasts 4 s.
    let s = scenario(2, 100, 3600, slow_link(1000));
    let contacts = [
        up(1000, 0, 1),
        down(5000, 0, 1),
        up(20_000, 0, 1),
        down(40_000, 0, 1),
    ];
    let messages = [msg(500, 0, 0, 1, 10_000)];
    let (r, out) = run_detailed(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_eq!(r.transfers_cut, 1, "{}", r.to_text());
    assert_eq!(r.delivered, 1);
    assert_eq!(r.relayed, 1, "the cut transfer does not count as relayed");
    let d = out[0].delivered_ms.unwrap();
    // Second contact at 20 s, then a reconciliation round trip and 10 s of airtime.
    assert!((30_000..31_000).contains(&d), "delivered at {d}");
    assert_eq!(out[0].hops, Some(1));

    // Without the second contact nothing arrives.
    let (r, out) = run_detailed(&s, PolicyConfig::Epidemic, &contacts[..2], &messages).unwrap();
    assert_eq!((r.transfers_cut, r.delivered, r.relayed), (1, 0, 0));
    assert_eq!(out[0].delivered_ms, None);
}

#[test]
fn drop_oldest_drops_the_oldest_and_refuse_refuses() {
    // Node 0 holds 2.5 MB; three 1 MB messages are created before any contact.
    let mut s = scenario(2, 200, 3600, slow_link(1_000_000));
    s.buffer.bytes = 2_500_000;
    s.buffer.policy = BufferPolicy::DropOldest;
    let contacts = [up(50_000, 0, 1), down(150_000, 0, 1)];
    let messages = [
        msg(1000, 0, 0, 1, 1_000_000),
        msg(2000, 1, 0, 1, 1_000_000),
        msg(3000, 2, 0, 1, 1_000_000),
    ];
    let (r, out) = run_detailed(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_eq!(r.dropped_buffer, 1, "{}", r.to_text());
    let delivered: Vec<bool> = out.iter().map(|o| o.delivered_ms.is_some()).collect();
    assert_eq!(delivered, [false, true, true]);
    assert!(r.occupancy_peak_bytes <= 2_500_000);
    assert_eq!(r.engine_errors, 0, "{:?}", r.notes);

    // Ferry's own policy refuses the newest instead.
    s.buffer.policy = BufferPolicy::Refuse;
    let (r, out) = run_detailed(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_eq!(r.dropped_buffer, 0);
    assert!(r.refused >= 1, "{}", r.to_text());
    let delivered: Vec<bool> = out.iter().map(|o| o.delivered_ms.is_some()).collect();
    assert_eq!(delivered, [true, true, false]);
}

#[test]
fn one_transfer_per_node_serializes_bundles() {
    // Node 0 meets 1 and 2 at once with one 1 MB bundle for each, at 1 MB/s.
    let mut link = slow_link(1_000_000);
    link.latency_ms = 0;
    let contacts = [up(1000, 0, 1), up(1000, 0, 2)];
    let messages = [msg(500, 0, 0, 1, 1_000_000), msg(500, 1, 0, 2, 1_000_000)];
    let mut s = scenario(3, 60, 3600, link.clone());
    let (_, par) = run_detailed(&s, PolicyConfig::Direct, &contacts, &messages).unwrap();
    s.link.one_transfer_per_node = true;
    let (_, ser) = run_detailed(&s, PolicyConfig::Direct, &contacts, &messages).unwrap();
    let t = |o: &[ferry_sim::run::MessageOutcome]| {
        let mut v: Vec<u64> = o.iter().map(|o| o.delivered_ms.unwrap()).collect();
        v.sort();
        v
    };
    let (p, q) = (t(&par), t(&ser));
    // In parallel both take about 1 s; in series the second takes about 2 s.
    assert!(p[1] < 2500, "{p:?}");
    assert!(q[1] >= 3000 && q[1] < 3500, "{q:?}");
}

#[test]
fn reports_render() {
    let s = scenario(2, 100, 3600, slow_link(1000));
    let contacts = [up(1000, 0, 1), down(50_000, 0, 1)];
    let messages = [msg(500, 0, 0, 1, 2000), msg(600, 1, 1, 0, 2000)];
    let r = run(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_eq!(r.delivered, 2);
    assert_eq!(r.delivery_ratio, 1.0);
    assert!(
        r.bytes.receipts > 0,
        "receipts cost airtime: {}",
        r.to_text()
    );
    assert!(r.bytes.reconciliation > 0 && r.bytes.control_frames > r.bytes.reconciliation);
    let csv = r.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["delivered"], 2);
    assert_eq!(json["occupancy"].as_array().unwrap().len(), 2);
    assert!(r.to_text().contains("delivery ratio"));
    assert!(!r.notes.is_empty());
}
