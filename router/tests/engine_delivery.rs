//! Direct delivery with a receipt back to the source, duplicate suppression, hop
//! limits, priorities and fairness, bad frames.

mod engine_net;

use engine_net::{config, Net};
use ferry_cl_api::LinkCaps;
use ferry_core::Priority;
use ferry_router::engine::{Input, PolicyConfig, RemoveReason};
use ferry_storage::{CustodyState, CustodyStore, StoreConfig};

#[test]
fn a_to_b_direct_delivery_with_receipt_back_to_a() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    let id = net.send(0, 1, b"water level 1.42 m");
    assert!(net.holds(0, &id));
    net.up(0, 1);
    net.run_for(100);

    // B's app got it once, acknowledged it; B released it and keeps it as seen.
    assert_eq!(
        net.nodes[1].delivered,
        vec![(id, b"water level 1.42 m".to_vec())]
    );
    assert!(!net.holds(1, &id));
    assert!(net.nodes[1].store.is_seen(&id).unwrap());
    assert!(net.nodes[1].removed.contains(&(id, RemoveReason::AppAcked)));
    assert_eq!(net.nodes[1].receipts.len(), 1);
    let receipt = net.nodes[1].receipts[0];

    // The receipt reached A in the same contact: A learns of the delivery and purges.
    assert_eq!(net.nodes[0].confirmed, vec![id]);
    assert!(!net.holds(0, &id));
    assert!(net.nodes[0]
        .removed
        .contains(&(id, RemoveReason::Receipt { receipt })));
    assert!(net.holds(0, &receipt), "the receipt is carried on");
    assert_eq!(net.crossings(0, 1, &id), 1);

    // Meeting again sends nothing more.
    net.down(0, 1);
    net.up(0, 1);
    net.run_for(100);
    assert_eq!(net.crossings(0, 1, &id), 1);
    assert_eq!(net.nodes[1].delivered.len(), 1);
    assert_eq!(
        net.carried.len(),
        2,
        "the bundle and the receipt, once each"
    );
}

#[test]
fn duplicates_from_two_peers_are_fetched_and_delivered_once() {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    let id = net.send(0, 2, b"x");
    net.up(0, 1);
    net.run_for(50);
    assert!(net.holds(1, &id));
    net.down(0, 1);
    // Both holders meet C at once: C fetches from one only.
    net.up(0, 2);
    net.up(1, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 1);
    assert_eq!(net.crossings(0, 2, &id) + net.crossings(1, 2, &id), 1);
    // The receipt purges both relays' copies.
    assert!(!net.holds(0, &id) && !net.holds(1, &id));
    assert_eq!(net.nodes[0].confirmed, vec![id]);
    // Later contacts never bring it back.
    net.down(0, 2);
    net.down(1, 2);
    net.up(0, 2);
    net.up(1, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 1);
}

#[test]
fn a_bundle_arriving_twice_is_acknowledged_but_delivered_once() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    net.nodes[1].auto_ack = false;
    let b = net.seal(0, Some(1), b"twice", 3600, Priority::Normal, 8);
    let id = b.id();
    let (_, lb) = net.up(0, 1);
    net.run_for(10);
    // The peer's driver hands the same bundle in twice (e.g. a retransmission).
    let mut fwd = b.clone();
    fwd.add_hop().unwrap();
    for t in 0..2 {
        net.input(
            1,
            Input::Received {
                link: lb,
                transfer: ferry_cl_api::TransferId(t),
                bundle: fwd.clone(),
            },
        );
        net.run_for(10);
    }
    assert_eq!(net.delivered_count(1, &id), 1);
    let info = net.nodes[1].store.get_info(&id).unwrap().unwrap();
    assert_eq!(info.meta.routing.custody, CustodyState::Delivered);
}

#[test]
fn hop_limits_are_respected() {
    // 0 — 1 — 2, and 1 — 3. Bundles from 0 to 2.
    let mut net = Net::new(4, PolicyConfig::Epidemic);
    let one = net.seal(0, Some(2), b"limit 1", 3600, Priority::Normal, 1);
    let one = net.submit(0, one);
    let two = net.seal(0, Some(2), b"limit 2", 3600, Priority::Normal, 2);
    let two = net.submit(0, two);
    net.up(0, 1);
    net.run_for(50);
    // A relay would receive `one` at its limit: it is not sent. `two` goes.
    assert!(!net.holds(1, &one));
    assert_eq!(net.crossings(0, 1, &one), 0);
    assert!(net.holds(1, &two));
    net.down(0, 1);
    // From 1, `two` would reach its limit: only its destination may get it.
    net.up(1, 3);
    net.run_for(50);
    assert!(!net.holds(3, &two));
    net.down(1, 3);
    net.up(1, 2);
    net.run_for(50);
    assert_eq!(net.delivered_count(2, &two), 1);
    // `one` still reaches 2 directly.
    net.up(0, 2);
    net.run_for(50);
    assert_eq!(net.delivered_count(2, &one), 1);
}

#[test]
fn expedited_goes_before_normal_before_bulk() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    net.caps = LinkCaps {
        max_in_flight: 1,
        ..LinkCaps::ip_stream()
    };
    let mut ids = Vec::new();
    for p in [
        Priority::Bulk,
        Priority::Normal,
        Priority::Expedited,
        Priority::Bulk,
    ] {
        let b = net.seal(0, Some(1), b"p", 3600, p, 8);
        ids.push(net.submit(0, b));
    }
    net.up(0, 1);
    net.run_for(100);
    let order: Vec<_> = net
        .carried
        .iter()
        .filter(|(a, _, _)| *a == 0)
        .map(|(_, _, id)| *id)
        .collect();
    // Expedited, normal, then the two bulk bundles oldest first.
    assert_eq!(order, vec![ids[2], ids[1], ids[0], ids[3]]);
}

#[test]
fn links_share_transmissions_round_robin() {
    // Node 0 may have one bundle in flight in all: every time it completes, the
    // next link in turn gets the slot.
    let mut cfgs: Vec<_> = (0..3).map(|_| config(PolicyConfig::Direct)).collect();
    cfgs[0].max_in_flight_bytes = 1;
    let mut net = Net::with(cfgs, StoreConfig::default());
    let mut sent = Vec::new();
    for i in 0..8u8 {
        sent.push(net.send(0, 1, &[i]));
        sent.push(net.send(0, 2, &[i]));
    }
    net.up_all(&[(0, 1), (0, 2)]);
    net.run_for(200);
    // (Receipts travelling on between 1 and 2 through 0 are left out.)
    let peers: Vec<usize> = net
        .carried
        .iter()
        .filter(|(a, _, id)| *a == 0 && sent.contains(id))
        .map(|(_, b, _)| *b)
        .collect();
    assert_eq!(peers.len(), 16);
    // Neither link gets two turns in a row while the other has work.
    for w in peers.windows(2) {
        assert_ne!(w[0], w[1], "{peers:?}");
    }
}

#[test]
fn a_bad_frame_closes_the_link_and_nothing_is_lost() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    let id = net.send(0, 1, b"keep me");
    let (_, lb) = net.up(0, 1);
    net.input(
        1,
        Input::Frame {
            link: lb,
            bytes: vec![1, 200, 0],
        },
    );
    net.run_for(10);
    assert_eq!(net.nodes[1].closed, vec![lb]);
    assert_eq!(net.nodes[1].engine.stats().bad_frames, 1);
    // A new contact delivers as usual.
    net.up(0, 1);
    net.run_for(100);
    assert_eq!(net.delivered_count(1, &id), 1);
    assert!(!net.holds(0, &id));
}

#[test]
fn group_bundles_reach_every_member_without_receipts() {
    let mut net = Net::new(3, PolicyConfig::Direct);
    let b = net.seal(0, None, b"to all", 3600, Priority::Normal, 8);
    let id = net.submit(0, b);
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    net.up(1, 2);
    net.run_for(50);
    assert_eq!(net.delivered_count(1, &id), 1);
    assert_eq!(net.delivered_count(2, &id), 1);
    assert!(
        net.nodes[0].delivered.is_empty(),
        "not delivered to its source"
    );
    // Acknowledged group bundles stay to be carried on; no receipts.
    assert!(net.holds(1, &id) && net.holds(2, &id));
    assert!(net.nodes[1].receipts.is_empty() && net.nodes[2].receipts.is_empty());
    let info = net.nodes[2].store.get_info(&id).unwrap().unwrap();
    assert_eq!(info.meta.routing.custody, CustodyState::Held);
}

#[test]
fn config_maps_to_engine_settings() {
    let cfg = ferry_router::config::Config::parse(
        "[routing]\npolicy = \"spray-and-wait\"\nspray_copies = 6\nhop_limit = 9\n",
    )
    .unwrap();
    let e = ferry_router::engine::EngineConfig::from_config(&cfg, Default::default());
    assert_eq!(e.policy, PolicyConfig::SprayAndWait { copies: 6 });
    assert_eq!(e.hop_limit, 9);
    let _ = config(PolicyConfig::Direct);
    let _ = StoreConfig::default();
}

#[test]
fn a_peer_that_stops_answering_does_not_pin_the_link() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    let id = net.send(0, 1, b"are you there");
    // Node 1's frames are lost: node 0's reconciliation round goes unanswered.
    net.nodes[1].mute = true;
    net.up(0, 1);
    net.run_for(1_000);
    assert_eq!(net.delivered_count(1, &id), 0);
    assert_eq!(net.nodes[0].engine.stats().sessions, 1);
    net.nodes[1].mute = false;
    // After the answer timeout (60 s, checked at a purge) node 0 starts over.
    net.run_for(50_000);
    assert_eq!(net.nodes[0].engine.stats().sessions, 1);
    net.run_for(20_000);
    assert_eq!(net.nodes[0].engine.stats().sessions, 2);
    assert_eq!(net.delivered_count(1, &id), 1);
    assert!(!net.holds(0, &id));
}
