//! The LoRa figures of docs/performance.md, in virtual time over the session layer
//! and the channel model of `tests/support` (airtime per Semtech, half-duplex radios,
//! seeded loss):
//!
//! 1. bytes on air for a 50-byte signed, encrypted message to a neighbour;
//! 2. goodput on SF9 / 125 kHz with 10% frame loss, as a fraction of the raw bitrate;
//! 3. time to carry a 10 KiB bundle over 3 hops under the EU868 1% duty cycle, next
//!    to the minimum that airtime and duty cycle allow.
//!
//! `cargo bench -p ferry-cl-session --bench lora`

#[path = "../tests/support/mod.rs"]
mod support;

use ferry_cl_lora::{rnode, DutyBudget, RadioSettings};
use ferry_cl_session::{Class, Event, Kind};
use ferry_core::{DtnTime, Identity, Keyring, PayloadKind, Priority, Realm, Recipient, SealParams};
use support::{radio_cfg, sf9, Air, Net};

const SEC: u64 = 1_000_000;

#[allow(clippy::print_stdout)]
fn main() {
    bytes_on_air();
    goodput();
    three_hops();
}

#[allow(clippy::print_stdout)]
fn bytes_on_air() {
    let realm = Realm::new("valley", [7; 32]).unwrap();
    let a = Keyring::new(Identity::from_seed([1; 32]), vec![realm.clone()]);
    let b = Keyring::new(Identity::from_seed([2; 32]), vec![realm]);
    let params = SealParams {
        recipient: Recipient::Node {
            id: b.node_id(),
            endpoint: None,
        },
        realm: "valley".into(),
        created: Some(DtnTime(800_000_000)),
        sequence: 1,
        lifetime: 3600,
        priority: Priority::Normal,
        hop_limit: 8,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    };
    let bundle = a
        .seal(&params, &[0x42; 50], &mut ferry_core::rand_core::OsRng)
        .unwrap()
        .encode();
    let r = sf9();
    let mut net = Net::new(2, Air::Lora(r), radio_cfg(&r), 0.0, 1);
    assert!(net.meet(600 * SEC));
    let before: Vec<u64> = net
        .nodes
        .iter()
        .map(|n| n.session.stats().bytes_sent)
        .collect();
    let frames_before: Vec<u64> = net
        .nodes
        .iter()
        .map(|n| n.session.stats().frames_sent)
        .collect();
    let peer = net.nodes[1].id;
    net.nodes[0]
        .session
        .send(&peer, Kind::Bundle, Class::Normal, 1, bundle.clone())
        .unwrap();
    net.run_until(net.now + 60 * SEC, |net| {
        net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Sent { .. }))
    });
    let data = net.nodes[0].session.stats().bytes_sent - before[0];
    let data_frames = net.nodes[0].session.stats().frames_sent - frames_before[0];
    let ack = net.nodes[1].session.stats().bytes_sent - before[1];
    let air = rnode::AIR_HEADER_BYTES as u64;
    println!("== bytes on air: 50-byte payload, signed and encrypted to one node ==");
    println!("bundle                         {} B", bundle.len());
    println!(
        "data frame(s)                  {data} B in {data_frames} frame(s) (+{air} RNode header = {} B on air)",
        data + air * data_frames
    );
    println!("link ACK from the neighbour    {ack} B (+{air} RNode header)");
    println!(
        "airtime at SF9/125k            {:.1} ms",
        r.airtime_us(data as usize + 1) as f64 / 1000.0
    );
}

#[allow(clippy::print_stdout)]
fn goodput() {
    let r = sf9();
    let raw = r.raw_bitrate_bps();
    let size = 64 * 1024;
    println!(
        "\n== goodput: SF9/125 kHz/CR4/5, 10% frame loss, {} KiB messages ==",
        size / 1024
    );
    println!("raw bitrate {raw:.1} bit/s");
    let mut fractions = Vec::new();
    for seed in 1..=5u64 {
        let mut net = Net::new(2, Air::Lora(r), radio_cfg(&r), 0.10, seed);
        assert!(net.meet(600 * SEC));
        let peer = net.nodes[1].id;
        let msg: Vec<u8> = (0..size).map(|i| (i * 7 + seed as usize) as u8).collect();
        let t0 = net.now;
        net.nodes[0]
            .session
            .send(&peer, Kind::Bundle, Class::Normal, 1, msg.clone())
            .unwrap();
        let mut got = None;
        let mut done_at = 0;
        net.run_until(t0 + 36_000 * SEC, |net| {
            if let Some(m) = net.received(1).pop() {
                got = Some(m);
            }
            let sent = net.nodes[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::Sent { .. }));
            if sent {
                done_at = net.now;
            }
            got.is_some() && sent
        });
        assert_eq!(got.as_deref(), Some(&msg[..]));
        let secs = (done_at - t0) as f64 / SEC as f64;
        let goodput = size as f64 * 8.0 / secs;
        let s = net.nodes[0].session.stats();
        println!(
            "seed {seed}: {secs:.1} s, {goodput:.1} bit/s = {:.1}% of raw; frames lost {}, segments resent {}, polls timed out {}",
            100.0 * goodput / raw,
            net.lost,
            s.segments_resent,
            s.timeouts
        );
        fractions.push(goodput / raw);
    }
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    println!(
        "mean goodput {:.1}% of the raw bitrate (target >= 70%)",
        100.0 * mean
    );
}

/// Minimum time for one hop to move `airtime` of transmission from a full bucket of
/// `capacity` at duty `d`: at least the airtime itself, and (airtime − capacity)/d.
fn hop_min(airtime: f64, capacity: f64, d: f64) -> f64 {
    airtime.max((airtime - capacity) / d)
}

#[allow(clippy::print_stdout)]
fn three_hops() {
    let size = 10 * 1024;
    println!("\n== 10 KiB over 3 LoRa hops (A-B-C-D, a line), EU868 868.1 MHz 1% duty cycle ==");
    for sf in [7u8, 9] {
        let r = RadioSettings {
            frequency_hz: 868_100_000,
            spreading_factor: sf,
            ..RadioSettings::default()
        };
        let budget = DutyBudget::with_default_window(0.01).unwrap();
        let mut net = Net::new(4, Air::LoraBudget(r, budget.clone()), radio_cfg(&r), 0.0, 3).line();
        assert!(net.meet(3600 * SEC));
        // Start each hop's budget full, as for nodes that were idle: meet() spent a
        // little on hellos; wait until they refilled.
        net.run_until(net.now + 100 * SEC, |_| false);
        let ids: Vec<_> = net.nodes.iter().map(|n| n.id).collect();
        let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let t0 = net.now;
        // Each hop runs the router's exchange with its real frame sizes: Offer (37 B:
        // the full 32-byte id), Want (20 B), the bundle, and the custody Ack (19 B)
        // once the receiver has committed it; the receiver then offers it onward.
        let offer = |tag: u8| {
            let mut f = vec![tag; 37];
            f[0] = b'O';
            f
        };
        net.nodes[0]
            .session
            .send(&ids[1], Kind::Frame, Class::Control, 0, offer(0))
            .unwrap();
        let mut arrived = 0;
        net.run_until(t0 + 100_000 * SEC, |net| {
            for hop in 0..4 {
                let events: Vec<Event> = std::mem::take(&mut net.nodes[hop].events);
                for e in events {
                    let Event::Received { kind, bytes, peer } = e else {
                        continue;
                    };
                    match (kind, bytes[0]) {
                        (Kind::Frame, b'O') => {
                            let mut want = vec![0u8; 20];
                            want[0] = b'W';
                            net.nodes[hop]
                                .session
                                .send(&peer, Kind::Frame, Class::Control, 0, want)
                                .unwrap();
                        }
                        (Kind::Frame, b'W') => {
                            net.nodes[hop]
                                .session
                                .send(&peer, Kind::Bundle, Class::Normal, 1, msg.clone())
                                .unwrap();
                        }
                        (Kind::Bundle, _) => {
                            let mut ack = vec![0u8; 19];
                            ack[0] = b'A';
                            net.nodes[hop]
                                .session
                                .send(&peer, Kind::Frame, Class::Control, 0, ack)
                                .unwrap();
                            if hop == 3 {
                                arrived = net.now;
                            } else {
                                net.nodes[hop]
                                    .session
                                    .send(
                                        &ids[hop + 1],
                                        Kind::Frame,
                                        Class::Control,
                                        0,
                                        offer(hop as u8),
                                    )
                                    .unwrap();
                            }
                        }
                        _ => {}
                    }
                }
            }
            arrived > 0
        });
        assert!(arrived > 0, "not delivered");
        let took = (arrived - t0) as f64 / SEC as f64;
        let frames: u64 = net
            .nodes
            .iter()
            .map(|n| n.session.stats().frames_sent)
            .sum();
        let piggy: u64 = net
            .nodes
            .iter()
            .map(|n| n.session.stats().piggybacked)
            .sum();
        let air: f64 = net
            .nodes
            .iter()
            .map(|n| n.session.stats().airtime_us as f64 / SEC as f64)
            .sum();
        println!(
            "  frames sent {frames} ({piggy} answers rode in ACKs), airtime {air:.1} s in all"
        );
        for n in &net.nodes {
            let s = n.session.stats();
            println!(
                "  node: hellos {} acks {} polls {} timeouts {} segs {} resent {} airtime {:.1}s",
                s.hellos_sent,
                s.acks_sent,
                s.polls_sent,
                s.timeouts,
                s.segments_sent,
                s.segments_resent,
                s.airtime_us as f64 / 1e6
            );
        }
        // The minimum: the bundle's bytes in full 255-byte packets, no headers at all.
        let full = size / 255;
        let rest = size % 255;
        let airtime = (full as u64 * r.airtime_us(255)
            + if rest > 0 { r.airtime_us(rest) } else { 0 }) as f64
            / SEC as f64;
        let cap = budget.capacity_us() as f64 / SEC as f64;
        let min = 3.0 * hop_min(airtime, cap, 0.01);
        println!(
            "SF{sf}: delivered after {took:.1} s; minimum {min:.1} s (airtime {airtime:.1} s per hop, budget {cap:.0} s per hour) -> {:.2}x",
            took / min
        );
    }
}
