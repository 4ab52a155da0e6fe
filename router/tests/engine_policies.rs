//! Policy behaviour seen through the engine: spray-and-wait copy halving, PRoPHET's
//! exchange, and only missing bundles crossing a link.

mod engine_net;

use engine_net::Net;
use ferry_cl_api::LinkCaps;
use ferry_router::engine::{Engine, EngineConfig, PolicyConfig, ProphetParams};
use ferry_storage::StoreConfig;

#[test]
fn spray_and_wait_halves_copies() {
    // 0 is the source (L = 8); 5 is the destination, never met here.
    let mut net = Net::new(6, PolicyConfig::SprayAndWait { copies: 8 });
    let id = net.send(0, 5, b"spray");
    assert_eq!(net.copies_left(0, &id), Some(8));
    let contact = |net: &mut Net, a, b| {
        net.up(a, b);
        net.run_for(100);
        net.down(a, b);
    };
    contact(&mut net, 0, 1);
    assert_eq!(net.copies_left(0, &id), Some(4));
    assert_eq!(net.copies_left(1, &id), Some(4));
    contact(&mut net, 0, 2);
    assert_eq!(net.copies_left(0, &id), Some(2));
    assert_eq!(net.copies_left(2, &id), Some(2));
    contact(&mut net, 1, 3);
    assert_eq!(net.copies_left(1, &id), Some(2));
    assert_eq!(net.copies_left(3, &id), Some(2));
    contact(&mut net, 3, 4);
    assert_eq!(net.copies_left(3, &id), Some(1));
    assert_eq!(net.copies_left(4, &id), Some(1));
    // With one copy left a node only waits for the destination.
    contact(&mut net, 4, 2);
    assert_eq!(net.copies_left(4, &id), Some(1));
    // A node that already has it is not offered another copy.
    contact(&mut net, 2, 1);
    assert_eq!(net.copies_left(1, &id), Some(2));
    assert_eq!(net.copies_left(2, &id), Some(2));
    assert_eq!(net.crossings(2, 1, &id) + net.crossings(1, 2, &id), 0);
    // The destination gets it from a node in the wait phase.
    contact(&mut net, 4, 5);
    assert_eq!(net.delivered_count(5, &id), 1);
}

#[test]
fn spray_copies_are_not_promised_twice_to_simultaneous_peers() {
    let mut net = Net::new(4, PolicyConfig::SprayAndWait { copies: 4 });
    let id = net.send(0, 3, b"split");
    net.up_all(&[(0, 1), (0, 2)]);
    net.run_for(100);
    let total: u32 = (0..3).filter_map(|n| net.copies_left(n, &id)).sum();
    assert_eq!(total, 4, "copies are conserved");
    assert_eq!(net.copies_left(1, &id), Some(2));
    assert_eq!(net.copies_left(2, &id), Some(1));
    assert_eq!(net.copies_left(0, &id), Some(1));
}

#[test]
fn prophet_exchanges_predictabilities_at_contact_start() {
    let mut net = Net::new(3, PolicyConfig::Prophet(ProphetParams::default()));
    let id = net.send(0, 2, b"gradient");
    // 1 meets 2, then 0 meets 1: 1's P(1,2) = 0.5 beats 0's transitive
    // P(0,2) = 0.5 × 0.5 × 0.9, so 0 hands the bundle to 1.
    net.up(1, 2);
    net.run_for(50);
    net.down(1, 2);
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    assert!(net.holds(1, &id));
    // Without the 1 — 2 encounter first, 0 keeps it.
    let mut net = Net::new(3, PolicyConfig::Prophet(ProphetParams::default()));
    let id = net.send(0, 2, b"gradient");
    net.up(0, 1);
    net.run_for(50);
    assert!(!net.holds(1, &id));
}

/// PRoPHET's table survives a restart of the engine over the same store: after
/// 1 met 2 and restarted, 0 still hands 1 a bundle for 2. With persistence off the
/// restarted 1 knows nothing and 0 keeps the bundle.
#[test]
fn prophet_table_survives_a_restart() {
    for persist in [true, false] {
        let cfg = EngineConfig {
            persist_routing: persist,
            ..engine_net::config(PolicyConfig::Prophet(ProphetParams::default()))
        };
        let mut net = engine_net::Net::with(vec![cfg.clone(); 3], StoreConfig::default());
        net.up(1, 2);
        net.run_for(50);
        net.down(1, 2);
        net.run_for(50);
        let before = net.nodes[1].engine.policy().predictabilities().unwrap();
        assert_eq!(before.len(), 1);
        let store = net.nodes[1].store.clone();
        let k = net.nodes[1].keyring.clone();
        net.nodes[1].engine = Engine::new(store, k, cfg.clone(), net.now);
        net.run_for(10);
        let after = net.nodes[1].engine.policy().predictabilities().unwrap();
        if persist {
            assert_eq!(after, before);
        } else {
            assert!(after.is_empty());
        }
        let id = net.send(0, 2, b"gradient");
        net.up(0, 1);
        net.run_for(50);
        assert_eq!(net.holds(1, &id), persist);
    }
}

#[test]
fn only_missing_bundles_cross_a_link() {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    let shared: Vec<_> = (0..60u8).map(|i| net.send(0, 2, &[i])).collect();
    net.up(0, 1);
    net.run_for(500);
    net.down(0, 1);
    let before = net.carried.len();
    assert_eq!(before, 60);
    let only_a: Vec<_> = (0..5u8).map(|i| net.send(0, 2, &[100, i])).collect();
    let only_b: Vec<_> = (0..3u8).map(|i| net.send(1, 2, &[200, i])).collect();
    net.up(0, 1);
    net.run_for(500);
    let crossed: Vec<_> = net.carried[before..].to_vec();
    assert_eq!(crossed.len(), 8, "{crossed:?}");
    for id in &only_a {
        assert_eq!(net.crossings(0, 1, id), 1);
    }
    for id in &only_b {
        assert_eq!(net.crossings(1, 0, id), 1);
    }
    for id in &shared {
        assert_eq!(net.crossings(0, 1, id), 1);
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn reconciliation_bytes_at_contact_start() {
    // Two nodes that already share 1,000 bundles meet again: the reconciliation
    // costs one fingerprint each way.
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    for i in 0..1000u16 {
        net.send(0, 2, &i.to_le_bytes());
    }
    net.up(0, 1);
    net.run_for(5_000);
    net.down(0, 1);
    let sent = |net: &Net| {
        net.nodes[0].engine.stats().recon_bytes_sent + net.nodes[1].engine.stats().recon_bytes_sent
    };
    let before = sent(&net);
    net.up(0, 1);
    net.run_for(100);
    let identical = sent(&net) - before;
    net.down(0, 1);
    net.send(0, 2, b"one more");
    let before = sent(&net);
    net.up(0, 1);
    net.run_for(100);
    let one_more = sent(&net) - before;
    eprintln!("engine: 1,000 identical ids reconcile in {identical} bytes; one difference costs {one_more} bytes");
    assert_eq!(identical, 26);
    assert!(one_more < 800, "{one_more}");
}

#[test]
fn small_mtu_links_keep_frames_within_the_mtu() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    net.caps = LinkCaps {
        mtu: Some(200),
        max_in_flight: 2,
        ..LinkCaps::ip_stream()
    };
    let ids: Vec<_> = (0..40u8).map(|i| net.send(0, 1, &[i])).collect();
    let more: Vec<_> = (0..7u8).map(|i| net.send(1, 0, &[i])).collect();
    net.up(0, 1);
    net.run_for(2_000);
    assert!(net.max_frame <= 200, "{}", net.max_frame);
    for id in &ids {
        assert_eq!(net.delivered_count(1, id), 1);
    }
    for id in &more {
        assert_eq!(net.delivered_count(0, id), 1);
    }
}

/// The simulator replays runs: the same inputs give the same outputs, byte for byte.
#[test]
fn runs_are_deterministic() {
    fn run() -> (Vec<(usize, usize, ferry_core::BundleId)>, Vec<String>) {
        let mut net = Net::new(4, PolicyConfig::Prophet(ProphetParams::default()));
        for i in 0..6u8 {
            net.send(0, 3, &[i]);
            net.send(3, 0, &[i]);
        }
        for _ in 0..4 {
            for (a, b) in [(0, 1), (1, 2), (2, 3)] {
                net.up(a, b);
                net.run_for(300);
                net.down(a, b);
                net.run_for(700);
            }
        }
        let stats = net
            .nodes
            .iter()
            .map(|n| format!("{:?} {:?}", n.engine.stats(), n.delivered))
            .collect();
        (net.carried.clone(), stats)
    }
    let first = run();
    assert!(!first.0.is_empty());
    assert_eq!(first, run());
}
