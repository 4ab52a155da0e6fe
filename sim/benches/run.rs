//! Wall time and peak memory of whole runs (printed, not asserted).
//!
//! `cargo bench -p ferry-sim --bench run` runs the scenarios of `sim/scenarios/`
//! (default `helsinki-126`; `FERRY_SIM_SCENARIOS=helsinki-126,city-1000` to choose)
//! with every policy (`FERRY_SIM_POLICIES=epidemic,direct` to choose), and, for
//! helsinki-126, with The ONE's drop-oldest buffers and Ferry's refusing ones
//! (`FERRY_SIM_BUFFERS=drop-oldest` or `refuse` to run one of them).
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::path::Path;
use std::time::Instant;

use ferry_sim::model::BufferPolicy;
use ferry_sim::report::{compare_text, Report};
use ferry_sim::scenario::Scenario;

/// Peak resident memory of this process so far (kB), from /proc.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn main() {
    // `cargo test --benches` runs this binary with `--test`: nothing to do then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for name in list("FERRY_SIM_SCENARIOS", "helsinki-126") {
        let path = dir.join(format!("{name}.toml"));
        let (scenario, base) = match Scenario::load(&path) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{}: {e}: skipped", path.display());
                continue;
            }
        };
        let t = Instant::now();
        let contacts = scenario.contacts(&base).expect("contacts");
        let messages = scenario.messages(&base).expect("messages");
        println!(
            "{name}: {} contact events, {} messages, {} nodes; inputs in {:.3} s",
            contacts.len(),
            messages.len(),
            scenario.nodes,
            t.elapsed().as_secs_f64()
        );
        let mut buffers = vec![scenario.buffer.policy];
        if name == "helsinki-126" {
            buffers.push(BufferPolicy::Refuse);
        }
        // FERRY_SIM_BUFFERS=drop-oldest (or refuse) runs only that buffer policy.
        if let Ok(only) = std::env::var("FERRY_SIM_BUFFERS") {
            let only = match only.trim() {
                "drop-oldest" => BufferPolicy::DropOldest,
                "refuse" => BufferPolicy::Refuse,
                other => panic!("FERRY_SIM_BUFFERS={other}: drop-oldest or refuse"),
            };
            buffers.retain(|b| *b == only);
        }
        for buffer in buffers {
            let mut reports: Vec<Report> = Vec::new();
            for policy in list(
                "FERRY_SIM_POLICIES",
                "epidemic,spray-and-wait,prophet,direct",
            ) {
                let mut s = scenario.clone();
                s.buffer.policy = buffer;
                s.routing.policy = policy;
                let config = s.policy_config().expect("policy");
                let t = Instant::now();
                let r = ferry_sim::run::run(&s, config, &contacts, &messages).expect("run");
                println!(
                    "{:<44} {:>8.3} s wall  peak RSS {:>7} kB  ({} events, {} engine errors)",
                    format!("{} / {} / {}", s.name, r.policy, r.buffer_policy),
                    t.elapsed().as_secs_f64(),
                    peak_rss_kb(),
                    r.events,
                    r.engine_errors
                );
                reports.push(r);
            }
            println!("\n{}", compare_text(&reports));
        }
    }
}
