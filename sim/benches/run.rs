//! Wall time of whole runs (printed, not asserted).
//!
//! `cargo bench -p ferry-sim --bench run` runs helsinki-126 (from
//! `../shared/traces/helsinki-126`, or `FERRY_SIM_TRACE_DIR`) with every policy, The
//! ONE's model (5 MB buffers, 50 MB for the trams, drop-oldest, one transfer per
//! node, 250 kB/s, TTL 300 min), then a synthetic large run when `FERRY_SIM_BIG=1`
//! (`FERRY_SIM_BIG_NODES`, `_CONTACTS`, `_MESSAGES` scale it).
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_router::engine::PolicyConfig;
use ferry_sim::model::{BufferPolicy, ContactEvent, LinkModel, MessageEvent};
use ferry_sim::report::{compare_text, Report};
use ferry_sim::run::run;
use ferry_sim::scenario::{
    BufferSpec, ContactSource, MessageSource, ReportSpec, RoutingSpec, Scenario,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Seconds with up to 3 decimals → ms.
fn ms(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut f = frac.chars().take(3).collect::<String>();
    while f.len() < 3 {
        f.push('0');
    }
    Some(int.parse::<u64>().ok()? * 1000 + f.parse::<u64>().ok()?)
}

/// A minimal reader of The ONE's external events (the real one is `trace.rs`).
fn read_one(dir: &Path) -> Option<(Vec<ContactEvent>, Vec<MessageEvent>)> {
    let contacts = std::fs::read_to_string(dir.join("contacts.txt")).ok()?;
    let messages = std::fs::read_to_string(dir.join("messages.txt")).ok()?;
    let mut c = Vec::new();
    for line in contacts.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [t, "CONN", a, b, ud] = f[..] {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            c.push(ContactEvent {
                time: ms(t)?,
                a: a.min(b),
                b: a.max(b),
                up: ud == "up",
            });
        }
    }
    let mut m = Vec::new();
    for line in messages.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [t, "C", id, from, to, size] = f[..] {
            m.push(MessageEvent {
                time: ms(t)?,
                id: id.to_string(),
                from: from.parse().ok()?,
                to: to.parse().ok()?,
                size: size.parse().ok()?,
            });
        }
    }
    Some((c, m))
}

fn scenario(name: &str, nodes: u32, duration_s: u64, buffer: BufferSpec) -> Scenario {
    Scenario {
        name: name.into(),
        seed: 1,
        nodes,
        duration_s,
        link: LinkModel {
            bitrate_bytes: 250_000,
            latency_ms: 0,
            loss: 0.0,
            mtu: None,
            duty_cycle: None,
            one_transfer_per_node: true,
        },
        buffer,
        lifetime_s: 300 * 60,
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
            occupancy_interval_s: 600,
        },
    }
}

fn policies() -> Vec<PolicyConfig> {
    vec![
        PolicyConfig::Epidemic,
        PolicyConfig::SprayAndWait { copies: 8 },
        PolicyConfig::Prophet(Default::default()),
        PolicyConfig::Direct,
    ]
}

fn timed(s: &Scenario, p: PolicyConfig, c: &[ContactEvent], m: &[MessageEvent]) -> Report {
    let t = Instant::now();
    let r = run(s, p, c, m).expect("run");
    println!(
        "{:<40} {:>8.3} s wall  ({} events, {} engine errors)",
        format!("{} / {} / {}", s.name, r.policy, r.buffer_policy),
        t.elapsed().as_secs_f64(),
        r.events,
        r.engine_errors
    );
    r
}

fn helsinki() {
    let dir = std::env::var_os("FERRY_SIM_TRACE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/helsinki-126")
        });
    let Some((contacts, messages)) = read_one(&dir) else {
        eprintln!("no trace at {}: skipping helsinki-126", dir.display());
        return;
    };
    let only = std::env::var("FERRY_SIM_ONLY").ok();
    for policy in [BufferPolicy::DropOldest, BufferPolicy::Refuse] {
        if only.is_some() && policy == BufferPolicy::Refuse {
            continue;
        }
        let buffer = BufferSpec {
            bytes: 5_000_000,
            nodes: BTreeMap::from([("120-125".to_string(), 50_000_000)]),
            policy,
        };
        let s = scenario("helsinki-126", 126, 43_200, buffer);
        let reports: Vec<Report> = policies()
            .into_iter()
            .filter(|p| {
                only.as_deref()
                    .is_none_or(|o| ferry_sim::run::policy_label(p).starts_with(o))
            })
            .map(|p| timed(&s, p, &contacts, &messages))
            .collect();
        println!("\n{}", compare_text(&reports));
    }
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Random contacts between `nodes` nodes (each `up` followed by its `down` 10–120 s
/// later) and messages of 0.5–1 MB, over 12 h.
fn big() {
    let nodes = env_u64("FERRY_SIM_BIG_NODES", 1000) as u32;
    let events = env_u64("FERRY_SIM_BIG_CONTACTS", 1_000_000);
    let msgs = env_u64("FERRY_SIM_BIG_MESSAGES", 100_000);
    let duration = 43_200u64;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut c = Vec::new();
    let mut busy: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    while (c.len() as u64) < events {
        let a = (rng.next_u64() % u64::from(nodes)) as u32;
        let b = (rng.next_u64() % u64::from(nodes)) as u32;
        if a == b {
            continue;
        }
        let (a, b) = (a.min(b), a.max(b));
        let s = rng.next_u64() % ((duration - 200) * 1000);
        let e = s + 10_000 + rng.next_u64() % 110_000;
        if busy.get(&(a, b)).is_some_and(|&until| until + 1000 > s) {
            continue;
        }
        busy.insert((a, b), e);
        c.push(ContactEvent {
            time: s,
            a,
            b,
            up: true,
        });
        c.push(ContactEvent {
            time: e,
            a,
            b,
            up: false,
        });
    }
    c.sort_by_key(|e| e.time);
    let mut m = Vec::new();
    for i in 0..msgs {
        let from = (rng.next_u64() % u64::from(nodes)) as u32;
        let to = (from + 1 + (rng.next_u64() % u64::from(nodes - 1)) as u32) % nodes;
        m.push(MessageEvent {
            time: i * (duration * 1000 / 2) / msgs,
            id: format!("M{i}"),
            from,
            to,
            size: 500_000 + rng.next_u64() % 500_000,
        });
    }
    let buffer = BufferSpec {
        bytes: 5_000_000,
        nodes: BTreeMap::new(),
        policy: BufferPolicy::DropOldest,
    };
    let s = scenario("big", nodes, duration, buffer);
    let policy = match std::env::var("FERRY_SIM_BIG_POLICY").as_deref() {
        Ok("spray") => PolicyConfig::SprayAndWait { copies: 8 },
        Ok("direct") => PolicyConfig::Direct,
        Ok("prophet") => PolicyConfig::Prophet(Default::default()),
        _ => PolicyConfig::Epidemic,
    };
    let r = timed(&s, policy, &c, &m);
    println!("\n{}", r.to_text());
}

fn main() {
    // `cargo test --benches` passes `--bench`-less args; only run when benchmarking.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    if std::env::var("FERRY_SIM_SKIP_HELSINKI").is_err() {
        helsinki();
    }
    if std::env::var("FERRY_SIM_BIG").is_ok() {
        big();
    }
}
