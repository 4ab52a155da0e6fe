//! Lifetime expiry, by the wall clock and, on nodes without one, by age.

mod engine_net;

use engine_net::Net;
use ferry_core::Priority;
use ferry_router::engine::{PolicyConfig, RemoveReason};
use ferry_storage::CustodyStore;

#[test]
fn expired_bundles_are_purged_everywhere() {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    let b = net.seal(0, Some(2), b"short", 10, Priority::Normal, 8);
    let id = net.submit(0, b);
    let long = net.seal(0, Some(2), b"long", 3600, Priority::Normal, 8);
    let long = net.submit(0, long);
    net.up(0, 1);
    net.run_for(100);
    net.down(0, 1);
    assert!(net.holds(1, &id));
    net.run_for(12_000);
    for n in [0, 1] {
        assert!(!net.holds(n, &id), "node {n}");
        assert!(net.nodes[n].removed.contains(&(id, RemoveReason::Expired)));
        assert!(net.holds(n, &long));
        // Still seen until its expiry passes the purge, then forgotten.
    }
    // Never delivered after its lifetime, even when the destination shows up.
    net.up(1, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 0);
    assert_eq!(net.delivered_count(2, &long), 1);
}

#[test]
fn without_a_wall_clock_bundles_expire_by_age_and_carry_their_age() {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    for n in &mut net.nodes {
        n.has_clock = false;
    }
    // Created without a clock: lifetime 20 s counted from its age.
    let b = net.seal(0, Some(2), b"aging", 20, Priority::Normal, 8);
    assert!(b.header().created.is_none());
    let id = net.submit(0, b);
    net.run_for(8_000);
    net.up(0, 1);
    net.run_for(100);
    net.down(0, 1);
    // It reached node 1 aged by the 8 s node 0 held it (rounded up): node 1 gives it
    // 12 s more, not 20.
    assert!(net.holds(1, &id));
    net.run_for(10_000);
    assert!(net.holds(1, &id), "18 s old");
    net.run_for(7_000);
    assert!(!net.holds(0, &id));
    assert!(!net.holds(1, &id));
    assert!(net.nodes[1].removed.contains(&(id, RemoveReason::Expired)));
    assert!(net.nodes[1].store.is_seen(&id).unwrap());
}

#[test]
fn with_a_wall_clock_age_based_bundles_get_an_expiry_time() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    // Node 0 has no clock and creates an age-based bundle; node 1 has one.
    net.nodes[0].has_clock = false;
    let b = net.seal(0, Some(1), b"aging", 30, Priority::Normal, 8);
    let id = b.id();
    net.nodes[1].auto_ack = false;
    net.submit(0, b);
    net.run_for(5_000);
    net.up(0, 1);
    net.run_for(100);
    assert_eq!(net.delivered_count(1, &id), 1);
    let info = net.nodes[1].store.get_info(&id).unwrap().unwrap();
    let arrival = u64::from(engine_net::WALL0) + 5;
    // Node 0 held it a little over 5 s, counted as 6 (rounded up, so a bundle never
    // outlives its lifetime): it arrived aged 6 s with 24 s left.
    assert_eq!(info.meta.expires_at, Some(arrival + 24));
}

#[test]
fn an_idle_node_wakes_for_the_next_expiry_not_every_few_seconds() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    let short = net.seal(0, Some(1), b"short", 30, Priority::Normal, 8);
    let short = net.submit(0, short);
    let long = net.seal(0, Some(1), b"long", 3600, Priority::Normal, 8);
    net.submit(0, long);
    net.run_for(100);
    // No links: the next wake-up is the short bundle's expiry (30 s), not the 5 s
    // purge interval.
    let t = net.nodes[0].engine.poll_timeout().expect("a timer");
    assert!(t.0 >= 29_000 && t.0 <= 31_000, "next wake-up at {t:?}");
    net.run_for(31_000);
    assert!(net.nodes[0]
        .removed
        .contains(&(short, RemoveReason::Expired)));
    // Then at most every purge_max_interval (5 min), well before the long one's hour.
    let t = net.nodes[0].engine.poll_timeout().expect("a timer");
    assert!(
        t.0 > net.now.0 + 60_000 && t.0 <= net.now.0 + 300_000,
        "{t:?} at {:?}",
        net.now
    );
    // With a link up and an answer awaited (node 1 is silent: node 0's
    // reconciliation round goes unanswered), the next wake-up is when that answer
    // times out (60 s), not every 5 s either.
    net.nodes[1].mute = true;
    let asked = net.now.0;
    net.up(0, 1);
    net.run_for(100);
    assert_eq!(net.nodes[0].engine.stats().sessions, 1);
    let t = net.nodes[0].engine.poll_timeout().expect("a timer");
    assert_eq!(t.0, asked + 60_001, "{t:?}");
    // Then the round is given up and a new one starts.
    net.run_for(60_001);
    assert_eq!(net.nodes[0].engine.stats().sessions, 2);
}
