//! Small-MTU links (serial, LoRa): a bundle that fits one frame and hands over no spray
//! copies goes without an offer; everything else is offered as on any link.

mod engine_net;

use engine_net::Net;
use ferry_cl_api::LinkCaps;
use ferry_core::{BundleId, Priority};
use ferry_router::engine::PolicyConfig;

fn small_caps() -> LinkCaps {
    LinkCaps {
        mtu: Some(241),
        reliable: true,
        bitrate_bps: Some(1_757),
        duty_cycle: Some(0.01),
        broadcast: true,
        medium: None,
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

/// Node 0 reaches node 1 on a link of `media.0` and node 2 on one of `media.1` (the
/// same value: one radio), then submits a bundle for both while node 1's answers are
/// late (lost once, or queued behind other traffic).
fn one_radio(media: (Option<u64>, Option<u64>)) -> (Net, BundleId) {
    let mut net = Net::new(3, PolicyConfig::Epidemic);
    for (peer, medium) in [(1, media.0), (2, media.1)] {
        net.caps = LinkCaps {
            medium,
            ..small_caps()
        };
        net.up(0, peer);
    }
    net.run_for(1_000);
    net.nodes[1].stall = true;
    let id = submit_for_all(&mut net, 5);
    (net, id)
}

fn submit_for_all(net: &mut Net, fill: u8) -> BundleId {
    let b = net.seal(0, None, &[fill; 2_000], 3600, Priority::Normal, 8);
    net.submit(0, b)
}

const ONE_RADIO: (Option<u64>, Option<u64>) = (Some(1), Some(1));

#[test]
fn a_bundle_waits_for_a_late_answer_from_another_neighbour_on_the_same_radio() {
    let (mut net, id) = one_radio(ONE_RADIO);
    net.run_for(1_000);
    // Node 2 wants it, node 1 was offered it and has not answered: node 0 holds it.
    assert_eq!(net.crossings(0, 2, &id), 0);
    assert_eq!(net.crossings(0, 1, &id), 0);
    net.release();
    // Node 1's want arrives: both transfers start at once, one after the other in the
    // same instant, so the link layer can put the bundle on air once for both.
    let carried: Vec<usize> = net
        .carried
        .iter()
        .filter(|(from, _, i)| *from == 0 && *i == id)
        .map(|(_, to, _)| *to)
        .collect();
    assert_eq!(carried.len(), 2, "{carried:?}");
    assert_eq!(net.crossings(0, 1, &id), 1);
    assert_eq!(net.crossings(0, 2, &id), 1);
    net.run_for(1_000);
    assert_eq!(net.delivered_count(1, &id), 1);
    assert_eq!(net.delivered_count(2, &id), 1);
}

#[test]
fn the_hold_for_a_silent_neighbour_is_bounded() {
    let (mut net, id) = one_radio(ONE_RADIO);
    // 16 frame airtimes of 241 bytes at 1,757 bit/s: 17.5 s.
    net.run_for(15_000);
    assert_eq!(net.crossings(0, 2, &id), 0);
    net.run_for(5_000);
    assert_eq!(net.crossings(0, 2, &id), 1);
    assert_eq!(net.delivered_count(2, &id), 1);
    assert_eq!(net.crossings(0, 1, &id), 0);
}

#[test]
fn links_of_different_media_do_not_wait_for_each_other() {
    for media in [(Some(1), Some(2)), (None, None)] {
        let (mut net, id) = one_radio(media);
        net.run_for(1_000);
        assert_eq!(net.crossings(0, 2, &id), 1, "{media:?}");
    }
}

#[test]
fn a_neighbour_that_stopped_answering_holds_up_one_bundle_not_every_bundle() {
    let (mut net, first) = one_radio(ONE_RADIO);
    net.run_for(20_000);
    assert_eq!(net.crossings(0, 2, &first), 1);
    // Node 1 left the first offer unanswered past the hold: the next bundle goes at once.
    let second = submit_for_all(&mut net, 6);
    net.run_for(1_000);
    assert_eq!(net.crossings(0, 2, &second), 1);
    assert_eq!(net.crossings(0, 1, &second), 0);
}

// The node with the lower id starts reconciling. On a radio it can miss the answer
// to its hello (two hidden neighbours answering at once collide): it then has no
// link to the other node, which has one to it and waits for it to start.

/// Two nodes on small links, the lower id first, and a bundle from it to the other.
fn lower_to_higher(payload: &[u8]) -> (Net, usize, usize, BundleId) {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    net.caps = small_caps();
    let (lo, hi) = if net.id(0) < net.id(1) {
        (0, 1)
    } else {
        (1, 0)
    };
    let id = net.send(lo, hi, payload);
    (net, lo, hi, id)
}

#[test]
fn the_side_that_waits_speaks_first_when_its_peer_stays_silent() {
    let (mut net, lo, hi, id) = lower_to_higher(b"for the node it has not heard");
    net.half_up(hi, lo);
    // 16 frame airtimes at 1,757 bit/s: about 17.6 s of patience first.
    net.run_for(15_000);
    assert_eq!(
        net.nodes[hi].engine.stats().sessions,
        0,
        "waits for its peer"
    );
    assert_eq!(net.delivered_count(hi, &id), 0);
    // Then it speaks; the peer's link layer learns of it from that frame.
    net.run_for(60_000);
    assert_eq!(net.nodes[hi].engine.stats().sessions, 1);
    assert_eq!(net.delivered_count(hi, &id), 1);
}

#[test]
fn the_side_that_waits_starts_nothing_when_its_peer_speaks() {
    let (mut net, lo, hi, id) = lower_to_higher(b"for a node that heard it");
    net.up(lo, hi);
    net.run_for(120_000);
    assert_eq!(net.delivered_count(hi, &id), 1);
    assert_eq!(net.nodes[lo].engine.stats().sessions, 1);
    assert_eq!(net.nodes[hi].engine.stats().sessions, 0);
}
