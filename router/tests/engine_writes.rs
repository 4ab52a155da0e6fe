//! Queued store writes: custody acknowledgments, app acknowledgments and hand-overs
//! are written in batches (one commit), and a crash before such a batch is
//! committed causes a re-offer or a redelivery, never a loss of custody.

mod engine_net;

use engine_net::Net;
use ferry_core::NodeHash;
use ferry_router::engine::{Engine, Input, PolicyConfig};
use ferry_storage::{CustodyState, CustodyStore};

fn holders(net: &Net, n: usize, id: &ferry_core::BundleId) -> Vec<NodeHash> {
    net.nodes[n]
        .store
        .get_info(id)
        .unwrap()
        .unwrap()
        .meta
        .routing
        .holders
}

/// Replaces node `n`'s engine by a new one over the same store, as a restart after
/// `SIGKILL` would: everything in RAM, queued writes included, is lost.
fn crash(net: &mut Net, n: usize) {
    let store = net.nodes[n].store.clone();
    let k = net.nodes[n].keyring.clone();
    let cfg = net.nodes[n].config.clone();
    net.nodes[n].engine = Engine::new(store, k, cfg, net.now);
}

#[test]
fn many_custody_acks_are_recorded_with_one_commit() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    net.nodes[1].auto_ack = false;
    let ids: Vec<_> = (0..40u8).map(|i| net.send(0, 1, &[i; 16])).collect();
    let before = net.nodes[0].engine.stats();
    net.up(0, 1);
    net.run_for(100);
    let after = net.nodes[0].engine.stats();
    let peer = net.id(1).hash();
    for id in &ids {
        assert!(net.holds(1, id));
        assert_eq!(holders(&net, 0, id), vec![peer]);
    }
    // Forty acknowledgments, one transaction.
    assert_eq!(after.commits - before.commits, 1);
    assert_eq!(after.write_batches - before.write_batches, 1);
    // The receiver stored them already delivered (custody and the insert share a
    // commit) and wrote nothing else.
    for id in &ids {
        let info = net.nodes[1].store.get_info(id).unwrap().unwrap();
        assert_eq!(info.meta.routing.custody, CustodyState::Delivered);
    }
    assert_eq!(net.nodes[1].engine.stats().write_batches, 0);
}

#[test]
fn app_acks_within_a_commit_delay_share_one_commit_with_their_receipt() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    net.nodes[1].auto_ack = false;
    let ids: Vec<_> = (0..10u8).map(|i| net.send(0, 1, &[i; 16])).collect();
    net.up(0, 1);
    net.run_for(50);
    assert_eq!(net.nodes[1].delivered.len(), 10);
    net.down(0, 1);
    let before = net.nodes[1].engine.stats().commits;
    for id in &ids {
        net.input(1, Input::AppAck { id: *id });
    }
    // Removed for the engine at once, for the store at the next commit.
    assert!(net.holds(1, &ids[0]));
    net.run_for(50);
    for id in &ids {
        assert!(!net.holds(1, id));
        assert!(net.nodes[1].store.is_seen(id).unwrap());
    }
    // One commit: the ten removals and the receipt listing them.
    assert_eq!(net.nodes[1].engine.stats().commits - before, 1);
    assert_eq!(net.nodes[1].receipts.len(), 1);
    // The source learns of the delivery at the next contact.
    net.up(0, 1);
    net.run_for(50);
    assert_eq!(net.nodes[0].confirmed.len(), 10);
    for id in &ids {
        assert!(!net.holds(0, id));
    }
}

#[test]
fn a_crash_before_queued_app_acks_commit_redelivers() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    net.nodes[1].auto_ack = false;
    let id = net.send(0, 1, b"at least once");
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    assert_eq!(net.delivered_count(1, &id), 1);
    // The app acknowledges; the node dies before the removal is committed.
    net.input(1, Input::AppAck { id });
    crash(&mut net, 1);
    assert!(net.holds(1, &id), "the removal was only queued");
    net.run_for(10);
    assert_eq!(net.delivered_count(1, &id), 2, "delivered again, not lost");
    net.input(1, Input::AppAck { id });
    net.run_for(10);
    assert!(!net.holds(1, &id));
    net.up(0, 1);
    net.run_for(50);
    assert_eq!(net.nodes[0].confirmed, vec![id]);
}

#[test]
fn a_relay_that_crashes_before_its_hand_over_commits_offers_again_harmlessly() {
    let mut net = Net::new(3, PolicyConfig::SprayAndWait { copies: 2 });
    let id = net.send(0, 2, b"handed over");
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    assert!(net.holds(1, &id));
    // The relay hands the bundle to its destination; the destination commits and
    // acknowledges after one commit delay, and the relay dies before its removal
    // is committed.
    let commit = net.nodes[2].config.commit_delay.0;
    net.up(1, 2);
    net.run_for(commit);
    assert!(net.holds(2, &id));
    assert_eq!(net.delivered_count(2, &id), 1);
    assert!(net.holds(1, &id), "the relay's removal is still queued");
    crash(&mut net, 1);
    net.down(1, 2);
    // Restarted, the relay still holds a copy (custody was never dropped) and
    // offers it again; the destination declines it from its seen-set.
    net.up(1, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 1);
    assert_eq!(net.crossings(1, 2, &id), 1);
    // The receipt releases it.
    assert!(!net.holds(1, &id));
}
