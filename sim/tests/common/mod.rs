//! Shared helpers: scenarios built in code, random traces, a reference
//! earliest-arrival computation.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_sim::model::{BufferPolicy, ContactEvent, LinkModel, MessageEvent};
use ferry_sim::scenario::{
    BufferSpec, ContactSource, MessageSource, ReportSpec, RoutingSpec, Scenario,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A link with no limits: a huge bitrate, no latency, no loss.
pub fn ideal_link() -> LinkModel {
    LinkModel {
        bitrate_bytes: 1_000_000_000_000_000,
        latency_ms: 0,
        loss: 0.0,
        mtu: None,
        duty_cycle: None,
        one_transfer_per_node: false,
    }
}

pub fn scenario(nodes: u32, duration_s: u64, lifetime_s: u32, link: LinkModel) -> Scenario {
    Scenario {
        name: "test".into(),
        seed: 7,
        nodes,
        duration_s,
        link,
        buffer: BufferSpec {
            bytes: 0,
            nodes: BTreeMap::new(),
            policy: BufferPolicy::Refuse,
        },
        lifetime_s,
        routing: RoutingSpec {
            policy: "epidemic".into(),
            spray_copies: 8,
            hop_limit: 32,
        },
        contacts: ContactSource::Trace {
            path: PathBuf::from("contacts.txt"),
        },
        messages: MessageSource::Trace {
            path: PathBuf::from("messages.txt"),
        },
        report: ReportSpec {
            occupancy_interval_s: 100,
        },
    }
}

pub fn up(t_ms: u64, a: u32, b: u32) -> ContactEvent {
    ContactEvent {
        time: t_ms,
        a: a.min(b),
        b: a.max(b),
        up: true,
    }
}

pub fn down(t_ms: u64, a: u32, b: u32) -> ContactEvent {
    ContactEvent {
        time: t_ms,
        a: a.min(b),
        b: a.max(b),
        up: false,
    }
}

pub fn msg(t_ms: u64, i: usize, from: u32, to: u32, size: u64) -> MessageEvent {
    MessageEvent {
        time: t_ms,
        id: format!("M{i}"),
        from,
        to,
        size,
    }
}

/// A contact interval `[s, e)` in ms.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub a: u32,
    pub b: u32,
    pub s: u64,
    pub e: u64,
}

fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// Random contacts on whole seconds (at least 1 s long, non-overlapping per pair)
/// and messages created on half seconds, so that no message event ties with a
/// contact event or an expiry.
pub fn random_trace(
    seed: u64,
    nodes: u32,
    contacts: usize,
    messages: usize,
    horizon_s: u64,
) -> (Vec<Interval>, Vec<ContactEvent>, Vec<MessageEvent>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut iv: Vec<Interval> = Vec::new();
    let mut tries = 0;
    while iv.len() < contacts && tries < contacts * 20 {
        tries += 1;
        let a = below(&mut rng, u64::from(nodes)) as u32;
        let b = below(&mut rng, u64::from(nodes)) as u32;
        if a == b {
            continue;
        }
        let (a, b) = (a.min(b), a.max(b));
        let s = below(&mut rng, horizon_s - 60) * 1000;
        let e = s + (1 + below(&mut rng, 60)) * 1000;
        let clash = iv
            .iter()
            .any(|x| x.a == a && x.b == b && s <= x.e + 1000 && x.s <= e + 1000);
        if !clash {
            iv.push(Interval { a, b, s, e });
        }
    }
    let mut events = Vec::new();
    for x in &iv {
        events.push(up(x.s, x.a, x.b));
        events.push(down(x.e, x.a, x.b));
    }
    events.sort_by_key(|c| (c.time, c.up, c.a, c.b));
    let mut msgs = Vec::new();
    for i in 0..messages {
        let from = below(&mut rng, u64::from(nodes)) as u32;
        let mut to = below(&mut rng, u64::from(nodes)) as u32;
        if to == from {
            to = (to + 1) % nodes;
        }
        let t = below(&mut rng, horizon_s / 2) * 1000 + 500;
        msgs.push(msg(t, i, from, to, 1000 + below(&mut rng, 1_000_000)));
    }
    msgs.sort_by_key(|m| m.time);
    (iv, events, msgs)
}

/// Earliest arrival of a message at every node over contact intervals: a copy at
/// `u` at time `t` crosses a contact `[s, e)` of `u` when `t < e`, reaching the
/// peer at `max(t, s)`. Returns when it reaches `to`, if before `expiry_ms`.
pub fn earliest_arrival(
    iv: &[Interval],
    nodes: u32,
    m: &MessageEvent,
    expiry_ms: u64,
) -> Option<u64> {
    let mut arr = vec![u64::MAX; nodes as usize];
    arr[m.from as usize] = m.time;
    loop {
        let mut changed = false;
        for x in iv {
            for (u, v) in [(x.a, x.b), (x.b, x.a)] {
                let t = arr[u as usize];
                if t < x.e {
                    let at = t.max(x.s);
                    if at < expiry_ms && at < arr[v as usize] {
                        arr[v as usize] = at;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let t = arr[m.to as usize];
    (t < expiry_ms).then_some(t)
}
