//! Small-MTU links (serial, LoRa): a bundle that fits one frame and hands over no spray
//! copies goes without an offer; everything else is offered as on any link.

mod engine_net;

use engine_net::Net;
use ferry_cl_api::LinkCaps;
use ferry_core::Priority;
use ferry_router::engine::PolicyConfig;

fn small_caps() -> LinkCaps {
    LinkCaps {
        mtu: Some(241),
        reliable: true,
        bitrate_bps: Some(1_757),
        duty_cycle: Some(0.01),
        broadcast: true,
        max_bundle_bytes: 256 * 1024,
        max_in_flight: 4,
    }
}

#[test]
fn a_one_frame_bundle_is_pushed_and_acknowledged_without_an_offer() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    net.caps = small_caps();
    net.up(0, 1);
    net.run_for(1_000);
    let small = net.seal(0, Some(1), &[7; 50], 3600, Priority::Normal, 8);
    let small = net.submit(0, small);
    let large = net.seal(0, Some(1), &[8; 1000], 3600, Priority::Normal, 8);
    let large = net.submit(0, large);
    net.run_for(2_000);
    assert_eq!(net.delivered_count(1, &small), 1);
    assert_eq!(net.delivered_count(1, &large), 1);
    // The small one went without an offer; the large one (several frames) was offered.
    assert_eq!(net.nodes[0].engine.stats().pushed, 1);
    assert_eq!(net.crossings(0, 1, &small), 1);
    assert_eq!(net.crossings(0, 1, &large), 1);
}

#[test]
fn spray_copies_are_still_offered_on_small_links() {
    let mut net = Net::new(3, PolicyConfig::SprayAndWait { copies: 8 });
    net.caps = small_caps();
    let b = net.seal(0, Some(2), &[1; 40], 3600, Priority::Normal, 8);
    let id = net.submit(0, b);
    net.up(0, 1);
    net.run_for(2_000);
    // Node 1 got half the copies, which only an offer carries.
    assert_eq!(net.copies_left(1, &id), Some(4));
    assert_eq!(net.nodes[0].engine.stats().pushed, 0);
}

#[test]
fn a_pushed_bundle_the_peer_already_has_is_acknowledged_from_its_seen_set() {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    net.caps = small_caps();
    let b = net.seal(0, Some(2), &[3; 60], 3600, Priority::Normal, 8);
    let id = net.submit(0, b);
    // Node 1 gets it from node 0, then node 2 gets it from node 1.
    net.up(0, 1);
    net.run_for(2_000);
    net.down(0, 1);
    net.up(1, 2);
    net.run_for(2_000);
    assert_eq!(net.delivered_count(2, &id), 1);
    // Node 0 meets node 2, which already took it: reconciliation finds nothing to
    // send (or a push is acknowledged from the seen-set); it is never delivered twice.
    net.up(0, 2);
    net.run_for(2_000);
    assert_eq!(net.delivered_count(2, &id), 1);
}
