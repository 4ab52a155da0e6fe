//! With unlimited buffers and bandwidth, epidemic delivers exactly the messages that
#![allow(clippy::print_stderr)]
//! have a time-respecting path within their lifetime.

mod common;

use common::*;
use ferry_router::engine::PolicyConfig;
use ferry_sim::run::run_detailed;

#[test]
fn epidemic_delivers_exactly_the_reachable_messages() {
    for seed in [42, 1, 2, 3, 4] {
        check(seed);
    }
}

fn check(seed: u64) {
    let nodes = 20;
    let lifetime = 300;
    let (iv, contacts, messages) = random_trace(seed, nodes, 250, 80, 4000);
    let s = scenario(nodes, 4100, lifetime, ideal_link());
    let (report, outcomes) =
        run_detailed(&s, PolicyConfig::Epidemic, &contacts, &messages).unwrap();
    assert_eq!(report.engine_errors, 0, "{:?}", report.notes);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for (m, o) in messages.iter().zip(&outcomes) {
        // Bundles are created with the wall clock's whole second and expire
        // `lifetime` seconds after it.
        let expiry_ms = (m.time / 1000 + u64::from(lifetime)) * 1000;
        if let Some(at) = earliest_arrival(&iv, nodes, m, expiry_ms) {
            expected.push(m.id.clone());
            // Delivered within a few milliseconds of the earliest arrival (commit
            // delays and frames per hop, no transmission time).
            if let Some(d) = o.delivered_ms {
                assert!(
                    d >= at && d < at + 500,
                    "{}: delivered at {d}, earliest {at}",
                    m.id
                );
            }
        }
        if o.delivered_ms.is_some() {
            got.push(m.id.clone());
        }
    }
    assert!(
        expected.len() > 5 && expected.len() < messages.len(),
        "a trace that tests something: {} of {}",
        expected.len(),
        messages.len()
    );
    assert_eq!(got, expected, "seed {seed}");
    eprintln!(
        "seed {seed}: {} of {} reachable and delivered",
        got.len(),
        messages.len()
    );
    assert_eq!(report.delivered as usize, expected.len());
}
