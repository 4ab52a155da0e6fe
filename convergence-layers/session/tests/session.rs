//! The session layer over a virtual-time channel (tests/support): delivery over lossy
//! cables and radios, resume after a break, priority, one transmission for several
//! neighbours, hidden terminals, garbage.

mod support;

use ferry_cl_session::{Class, Config, Event, Kind};
use support::{radio_cfg, sf9, Air, Net};

const SEC: u64 = 1_000_000;

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn cable() -> (Air, Config) {
    (Air::Cable(87), Config::cable(115_200))
}

#[test]
fn cable_delivers_50_bytes_10_kib_and_1_mib_intact_with_10_percent_loss() {
    let (air, cfg) = cable();
    let mut net = Net::new(2, air, cfg, 0.10, 7);
    assert!(net.meet(30 * SEC));
    let b = net.nodes[1].id;
    let msgs = [payload(50, 1), payload(10 * 1024, 2), payload(1 << 20, 3)];
    for (i, m) in msgs.iter().enumerate() {
        net.nodes[0]
            .session
            .send(&b, Kind::Bundle, Class::Normal, i as u64, m.clone())
            .unwrap();
    }
    let mut got = Vec::new();
    net.run_until(600 * SEC, |net| {
        got.extend(net.received(1));
        let acked = net.nodes[0]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Sent { .. }))
            .count();
        got.len() == 3 && acked == 3
    });
    got.sort_by_key(|m| m.len());
    assert_eq!(got, msgs.to_vec());
    let sent: Vec<u64> = net.nodes[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Sent { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 3, "every message acknowledged: {sent:?}");
    let s = net.nodes[0].session.stats();
    assert!(s.segments_resent > 0, "10% loss must cost retransmissions");
    assert_eq!(net.nodes[1].session.stats().messages_received, 3);
}

#[test]
fn a_lossy_radio_delivers_and_the_sender_learns_it() {
    let r = sf9();
    let mut net = Net::new(2, Air::Lora(r), radio_cfg(&r), 0.20, 11);
    assert!(net.meet(120 * SEC));
    let b = net.nodes[1].id;
    let m = payload(10 * 1024, 9);
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 5, m.clone())
        .unwrap();
    let mut got = Vec::new();
    net.run_until(3600 * SEC, |net| {
        got.extend(net.received(1));
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Sent { tag: 5, .. }))
    });
    assert_eq!(got, vec![m]);
}

#[test]
fn after_a_break_segments_already_delivered_are_not_sent_again() {
    let (air, mut cfg) = cable();
    cfg.max_retries = 3;
    let mut net = Net::new(2, air, cfg.clone(), 0.0, 3);
    assert!(net.meet(30 * SEC));
    let b = net.nodes[1].id;
    let m = payload(200 * 1024, 4);
    let nseg = m.len().div_ceil(cfg.seg_size_for(m.len())) as u64;
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, m.clone())
        .unwrap();
    // Let about 40% through, then cut the cable.
    let t0 = net.now;
    net.run_until(t0 + 10 * SEC, |net| {
        net.nodes[0].session.stats().segments_sent >= nseg * 2 / 5
    });
    net.up = false;
    net.run_until(net.now + 120 * SEC, |net| {
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Failed { tag: 1, .. }))
    });
    assert!(net.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::NeighborDown { .. })));
    let before = net.nodes[0].session.stats();
    assert!(net.received(1).is_empty());
    // Restore; once the neighbours meet again the router sends the bundle again.
    net.up = true;
    net.nodes[0].events.clear();
    net.run_until(net.now + 60 * SEC, |net| {
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::NeighborUp { .. }))
    });
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 2, m.clone())
        .unwrap();
    let mut got = Vec::new();
    net.run_until(net.now + 120 * SEC, |net| {
        got.extend(net.received(1));
        !got.is_empty()
    });
    assert_eq!(got, vec![m]);
    let after = net.nodes[0].session.stats();
    let second_attempt = after.segments_sent + after.segments_resent
        - (before.segments_sent + before.segments_resent);
    let acked_before = before.segments_sent - cfg.window as u64; // at most a window in flight at the cut
    assert!(
        second_attempt <= nseg - acked_before + u64::from(cfg.window),
        "resent {second_attempt} segments of {nseg}; {acked_before} were acknowledged before the break"
    );
    assert!(net.nodes[1].session.stats().resumed >= 1);
}

#[test]
fn an_expedited_bundle_overtakes_a_bulk_one() {
    let r = sf9();
    let mut net = Net::new(2, Air::Lora(r), radio_cfg(&r), 0.0, 5);
    assert!(net.meet(120 * SEC));
    let b = net.nodes[1].id;
    let bulk = payload(20 * 1024, 1);
    let urgent = payload(120, 2);
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Bulk, 1, bulk.clone())
        .unwrap();
    // A few seconds into the bulk transfer, a receipt-like expedited bundle arrives.
    let t = net.now + 5 * SEC;
    net.run_until(t, |_| false);
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Expedited, 2, urgent.clone())
        .unwrap();
    let mut order = Vec::new();
    net.run_until(net.now + 3600 * SEC, |net| {
        order.extend(net.received(1));
        order.len() == 2
    });
    assert_eq!(order, vec![urgent, bulk]);
}

#[test]
fn small_bundles_interleave_with_a_large_one_of_the_same_class() {
    let (air, cfg) = cable();
    let mut net = Net::new(2, air, cfg, 0.0, 5);
    assert!(net.meet(30 * SEC));
    let b = net.nodes[1].id;
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, payload(1 << 20, 1))
        .unwrap();
    net.run_until(net.now + SEC / 2, |_| false);
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 2, payload(300, 2))
        .unwrap();
    let mut order = Vec::new();
    net.run_until(net.now + 600 * SEC, |net| {
        order.extend(net.received(1).into_iter().map(|m| m.len()));
        order.len() == 2
    });
    assert_eq!(order, vec![300, 1 << 20]);
}

#[test]
fn a_bundle_two_neighbours_lack_goes_on_air_once() {
    let r = sf9();
    let mut net = Net::new(3, Air::Lora(r), radio_cfg(&r), 0.0, 9);
    assert!(net.meet(300 * SEC));
    let (b, c) = (net.nodes[1].id, net.nodes[2].id);
    let m = payload(4 * 1024, 3);
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, m.clone())
        .unwrap();
    net.nodes[0]
        .session
        .send(&c, Kind::Bundle, Class::Normal, 2, m.clone())
        .unwrap();
    let (mut got_b, mut got_c) = (Vec::new(), Vec::new());
    net.run_until(net.now + 3600 * SEC, |net| {
        got_b.extend(net.received(1));
        got_c.extend(net.received(2));
        !got_b.is_empty() && !got_c.is_empty()
    });
    assert_eq!((got_b, got_c), (vec![m.clone()], vec![m.clone()]));
    let s = net.nodes[0].session.stats();
    let nseg = m.len().div_ceil(radio_cfg(&r).seg_size_for(m.len())) as u64;
    assert_eq!(s.segments_sent, nseg, "each segment went on air once");
    assert_eq!(s.segments_resent, 0);
}

#[test]
fn hidden_terminals_collide_and_still_deliver() {
    let r = sf9();
    let mut net = Net::new(3, Air::Lora(r), radio_cfg(&r), 0.0, 13).line();
    assert!(net.meet(600 * SEC));
    let b = net.nodes[1].id;
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, payload(3000, 1))
        .unwrap();
    net.nodes[2]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, payload(3000, 2))
        .unwrap();
    let mut got = Vec::new();
    net.run_until(net.now + 7200 * SEC, |net| {
        got.extend(net.received(1));
        got.len() == 2
    });
    assert_eq!(got.len(), 2);
    assert!(
        net.collisions > 0,
        "A and C cannot hear each other: their frames collide at B"
    );
}

#[test]
fn garbage_other_realms_and_truncated_frames_are_counted_and_the_link_keeps_working() {
    let (air, cfg) = cable();
    let mut net = Net::new(2, air, cfg, 0.0, 1);
    assert!(net.meet(30 * SEC));
    let b = net.nodes[1].id;
    // A node of another realm, and raw garbage, talk to B.
    let other = ferry_core::Realm::new("valley", [8; 32]).unwrap();
    let mut stranger = ferry_cl_session::Session::new(
        &ferry_core::Identity::from_seed([9; 32]),
        &other,
        [0; 4],
        Config::cable(115_200),
        Air::Cable(87),
        net.now,
    );
    let hello = stranger.poll_transmit(net.now + SEC).unwrap();
    let taken = net.nodes[1].session.stats().frames_received;
    let now = net.now;
    net.nodes[1].session.handle_frame(now, &hello);
    net.nodes[1].session.handle_frame(now, &[0xff; 40]);
    net.nodes[1].session.handle_frame(now, &hello[..10]);
    net.nodes[1].session.handle_frame(now, &[1, 2]);
    net.nodes[1].session.handle_frame(now, &vec![0; 400]);
    let s = net.nodes[1].session.stats();
    assert_eq!(s.bad_check + s.malformed + s.oversized, 5, "{s:?}");
    assert_eq!(s.frames_received, taken, "nothing of them was taken: {s:?}");
    assert_eq!(net.nodes[1].session.neighbors().len(), 1);
    net.nodes[0]
        .session
        .send(&b, Kind::Frame, Class::Control, 1, vec![1, 2, 3])
        .unwrap();
    let mut got = Vec::new();
    net.run_until(net.now + 10 * SEC, |net| {
        got.extend(net.received(1));
        !got.is_empty()
    });
    assert_eq!(got, vec![vec![1, 2, 3]]);
}

#[test]
fn a_restarted_neighbour_is_a_new_contact() {
    let (air, cfg) = cable();
    let mut net = Net::new(2, air.clone(), cfg.clone(), 0.0, 1);
    assert!(net.meet(30 * SEC));
    net.nodes[0].events.clear();
    // B restarts: a new session (new nonce) with the same identity.
    let ident = ferry_core::Identity::from_seed([2; 32]);
    net.nodes[1].session =
        ferry_cl_session::Session::new(&ident, &support::realm(), [99; 4], cfg, air, net.now);
    net.run_until(net.now + 10 * SEC, |net| {
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::NeighborUp { .. }))
    });
    let kinds: Vec<&str> = net.nodes[0]
        .events
        .iter()
        .map(|e| match e {
            Event::NeighborDown { .. } => "down",
            Event::NeighborUp { .. } => "up",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["down", "up"]);
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let r = sf9();
        let mut net = Net::new(2, Air::Lora(r), radio_cfg(&r), 0.15, 21);
        net.meet(120 * SEC);
        let b = net.nodes[1].id;
        net.nodes[0]
            .session
            .send(&b, Kind::Bundle, Class::Normal, 1, payload(5000, 1))
            .unwrap();
        net.run_until(net.now + 1800 * SEC, |net| !net.received(1).is_empty());
        (
            net.now,
            net.nodes[0].session.stats(),
            net.nodes[1].session.stats(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn a_realm_member_cannot_forge_acknowledgments_in_another_neighbours_name() {
    use ferry_cl_session::frame::{AckEntry, Body, Frame};
    let (air, cfg) = cable();
    let mut net = Net::new(3, air, cfg, 0.0, 1);
    assert!(net.meet(30 * SEC));
    let (a, b, c) = (net.nodes[0].id, net.nodes[1].id, net.nodes[2].id);
    // B goes out of reach; A sends it a message that cannot arrive.
    for i in 0..3 {
        net.hears[1][i] = false;
        net.hears[i][1] = false;
    }
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 7, payload(100, 1))
        .unwrap();
    net.run_until(net.now + SEC / 10, |_| false);
    // C, a member of the same realm, forges B's ACK for it: under the realm key, and
    // under C's own pair key with A.
    let forged = Frame {
        src: ferry_cl_session::short_of(&b),
        body: Body::Ack {
            dst: ferry_cl_session::short_of(&a),
            entries: (0..=255u8)
                .take(31)
                .map(|msg| AckEntry {
                    msg,
                    cum: 1,
                    bitmap: vec![],
                })
                .collect(),
            then: None,
        },
    };
    let realm_key = ferry_cl_session::frame_key(&support::realm());
    let c_key = ferry_cl_session::pair_key(
        &ferry_core::Identity::from_seed([3; 32]),
        &a,
        &support::realm(),
    )
    .unwrap();
    let _ = c;
    let before = net.nodes[0].session.stats().bad_check;
    for key in [realm_key, c_key] {
        let now = net.now;
        net.nodes[0].session.handle_frame(now, &forged.encode(&key));
    }
    assert_eq!(net.nodes[0].session.stats().bad_check, before + 2);
    net.run_until(net.now + SEC, |_| false);
    assert!(
        !net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Sent { tag: 7, .. })),
        "a forged ACK must not count as delivery"
    );
}

#[test]
fn a_node_that_missed_the_hellos_finds_its_neighbours_from_their_traffic() {
    let (air, mut cfg) = cable();
    cfg.hello_interval_us = 600 * SEC;
    let mut net = Net::new(3, air, cfg, 0.0, 1);
    // C is deaf at first: A and B learn of C, C learns of no one.
    net.hears[0][2] = false;
    net.hears[1][2] = false;
    net.run_until(10 * SEC, |net| {
        net.nodes[0].session.neighbors().len() == 2 && net.nodes[1].session.neighbors().len() == 2
    });
    assert!(net.nodes[2].session.neighbors().is_empty());
    // C hears again while A and B are busy with each other; their periodic hellos are
    // ten minutes away, but C overhears their frames and asks who they are.
    net.hears[0][2] = true;
    net.hears[1][2] = true;
    let b = net.nodes[1].id;
    net.nodes[0]
        .session
        .send(&b, Kind::Bundle, Class::Normal, 1, payload(200_000, 3))
        .unwrap();
    let t0 = net.now;
    net.run_until(t0 + 30 * SEC, |net| {
        net.nodes[2].session.neighbors().len() == 2
    });
    assert_eq!(net.nodes[2].session.neighbors().len(), 2);
    assert!(net.now - t0 < 10 * SEC, "took {} µs", net.now - t0);
}

#[test]
fn a_node_whose_first_hellos_went_unheard_keeps_looking_for_its_neighbours() {
    let (air, mut cfg) = cable();
    cfg.hello_interval_us = 600 * SEC;
    cfg.idle_timeout_us = 1900 * SEC;
    let mut net = Net::new(3, air, cfg, 0.0, 5);
    // A is deaf at first (as when the answers of two hidden neighbours collide at
    // it): B and C hear A's hello and bring A up, A hears nobody.
    net.hears[1][0] = false;
    net.hears[2][0] = false;
    net.run_until(10 * SEC, |_| false);
    assert_eq!(net.nodes[1].session.neighbors().len(), 2);
    assert_eq!(net.nodes[2].session.neighbors().len(), 2);
    assert!(net.nodes[0].session.neighbors().is_empty());
    // A hears again. B and C know A and have nothing to send: their next hellos are
    // ten minutes away. A, alone, hellos again soon and asks for answers.
    net.hears[1][0] = true;
    net.hears[2][0] = true;
    let t0 = net.now;
    net.run_until(t0 + 120 * SEC, |net| {
        net.nodes[0].session.neighbors().len() == 2
    });
    assert_eq!(net.nodes[0].session.neighbors().len(), 2);
    assert!(net.now - t0 < 30 * SEC, "took {} µs", net.now - t0);
    // Once it knows them, it hellos at the configured interval again.
    let sent = net.nodes[0].session.stats().hellos_sent;
    let t1 = net.now;
    net.run_until(t1 + 300 * SEC, |_| false);
    assert!(
        net.nodes[0].session.stats().hellos_sent <= sent + 1,
        "{} hellos after it found its neighbours",
        net.nodes[0].session.stats().hellos_sent - sent
    );
}

/// SF9 with the daemon's `hello_secs = 5` (hello every 5 s, idle after 16 s).
fn sf9_hello_5s() -> (ferry_cl_lora::RadioSettings, Config) {
    let r = sf9();
    let mut cfg = radio_cfg(&r);
    cfg.hello_interval_us = 5 * SEC;
    cfg.idle_timeout_us = 16 * SEC;
    (r, cfg)
}

#[test]
fn a_neighbour_that_ended_the_contact_alone_makes_the_other_end_it_too() {
    // B stops hearing A for a while (A still hears B): B ends the contact, A does
    // not notice. When B hears A again, its next hello (sent at once, before B's
    // router learns of the new contact) tells A to end the old contact, so both
    // routers begin the same new one (a router that kept the old contact would
    // wait for answers the other side's router has forgotten).
    let (r, cfg) = sf9_hello_5s();
    // The radio's usual 10 s between hellos: the announcement must not wait for it.
    assert_eq!(cfg.hello_min_gap_us, 10 * SEC);
    let mut net = Net::new(2, Air::Lora(r), cfg, 0.0, 7);
    assert!(net.meet(600 * SEC));
    let (a, b) = (net.nodes[0].id, net.nodes[1].id);
    net.hears[0][1] = false;
    assert!(net.run_until(net.now + 120 * SEC, |net| net.nodes[1]
        .session
        .neighbors()
        .is_empty()));
    assert_eq!(net.nodes[0].session.neighbors(), vec![b], "A kept B up");
    net.nodes[0].events.clear();
    net.nodes[1].events.clear();
    net.hears[0][1] = true;
    // When A ends its side, and when B's router hears of the new contact.
    let (mut a_ended, mut b_up) = (None, None);
    let ended_and_begun = |events: &[Event], peer| {
        let down = events
            .iter()
            .position(|e| *e == Event::NeighborDown { peer });
        let up = events
            .iter()
            .rposition(|e| *e == Event::NeighborUp { peer });
        matches!((down, up), (Some(d), Some(u)) if d < u)
    };
    assert!(
        net.run_until(net.now + 120 * SEC, |net| {
            if a_ended.is_none() && ended_and_begun(&net.nodes[0].events, b) {
                a_ended = Some(net.now);
            }
            if b_up.is_none() && net.nodes[1].events.contains(&Event::NeighborUp { peer: a }) {
                b_up = Some(net.now);
            }
            a_ended.is_some() && b_up.is_some()
        }),
        "A: {:?}",
        net.nodes[0].events
    );
    let (a_ended, b_up) = (a_ended.unwrap(), b_up.unwrap());
    // B's router could send on the new contact only from `b_up`, and its frames go
    // on air after the hello: A ended the old contact within about one frame's time
    // of that (the hello's airtime and the radios' turnaround), not a hello gap later.
    assert!(
        a_ended <= b_up + 2 * r.airtime_us(140),
        "A ended its side {} ms after B's router began",
        (a_ended - b_up) / 1000
    );
    assert_eq!(net.nodes[0].session.stats().contacts_reset, 1);
    // Announced once per reset: the repeated hellos do not end the new contact.
    let downs = |net: &Net, i: usize| {
        net.nodes[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::NeighborDown { .. }))
            .count()
    };
    let before = (downs(&net, 0), downs(&net, 1));
    net.run_until(net.now + 120 * SEC, |_| false);
    assert_eq!((downs(&net, 0), downs(&net, 1)), before);
    assert_eq!(net.nodes[0].session.neighbors(), vec![b]);
    assert_eq!(net.nodes[1].session.neighbors(), vec![a]);
    assert_eq!(net.nodes[0].session.stats().contacts_reset, 1);
}

#[test]
fn two_neighbours_that_both_ended_the_contact_begin_one_new_contact_each() {
    // Neither hears the other for a while: both end the contact, both announce a
    // reset when they meet again; each sees the other's announcement while its own
    // is pending, so neither ends the new contact a second time.
    let (r, cfg) = sf9_hello_5s();
    let mut net = Net::new(2, Air::Lora(r), cfg, 0.0, 11);
    assert!(net.meet(600 * SEC));
    let (a, b) = (net.nodes[0].id, net.nodes[1].id);
    net.up = false;
    assert!(net.run_until(net.now + 120 * SEC, |net| net
        .nodes
        .iter()
        .all(|n| n.session.neighbors().is_empty())));
    for n in &mut net.nodes {
        n.events.clear();
    }
    net.up = true;
    assert!(
        net.run_until(net.now + 300 * SEC, |net| net.nodes[0].session.neighbors()
            == vec![b]
            && net.nodes[1].session.neighbors() == vec![a])
    );
    net.run_until(net.now + 120 * SEC, |_| false);
    for (i, peer) in [(0, b), (1, a)] {
        let ev = &net.nodes[i].events;
        assert_eq!(
            ev.iter()
                .filter(|e| **e == Event::NeighborUp { peer })
                .count(),
            1,
            "node {i}: {ev:?}"
        );
        assert!(
            !ev.contains(&Event::NeighborDown { peer }),
            "node {i}: {ev:?}"
        );
        assert_eq!(net.nodes[i].session.stats().contacts_reset, 0);
    }
}
