//! `ferry_sim::trace::parse_contacts` and `parse_messages` on arbitrary UTF-8 (with a
//! small node limit too). What parses must be well formed (sorted, `a < b`, each
//! pair alternating up/down starting with up; messages from != to, size > 0, unique
//! ids) and survive the round trip through `write_contacts` / `write_messages`.
#![no_main]

use std::collections::{HashMap, HashSet};

use ferry_sim::trace::{self, TraceLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for limits in [TraceLimits::default(), TraceLimits::with_nodes(16)] {
        if let Ok((events, stats)) = trace::parse_contacts_with(text, &limits) {
            assert_eq!(events.len(), stats.ups + stats.downs);
            let mut up: HashMap<(u32, u32), bool> = HashMap::new();
            for w in events.windows(2) {
                assert!(w[0].time <= w[1].time, "not sorted: {w:?}");
            }
            for e in &events {
                assert!(e.a < e.b, "not normalised: {e:?}");
                if let Some(max) = limits.max_nodes {
                    assert!(e.b < max);
                }
                let was = up.insert((e.a, e.b), e.up).unwrap_or(false);
                assert_ne!(was, e.up, "does not alternate: {e:?}");
            }
            assert_eq!(up.values().filter(|u| **u).count(), stats.open_at_end);
            let mut written = String::new();
            trace::write_contacts(&events, &mut written);
            match trace::parse_contacts(&written) {
                Ok(again) => assert!(again == events, "round trip changed the contacts"),
                Err(e) => panic!("written contacts do not parse: {e}\n{written}"),
            }
        }
        if let Ok(messages) = trace::parse_messages_with(text, &limits) {
            let mut ids = HashSet::new();
            for w in messages.windows(2) {
                assert!(w[0].time <= w[1].time, "not sorted: {w:?}");
            }
            for m in &messages {
                assert!(m.from != m.to && m.size > 0, "{m:?}");
                assert!(ids.insert(m.id.as_str()), "repeated id: {m:?}");
            }
            let mut written = String::new();
            trace::write_messages(&messages, &mut written);
            match trace::parse_messages(&written) {
                Ok(again) => assert!(again == messages, "round trip changed the messages"),
                Err(e) => panic!("written messages do not parse: {e}\n{written}"),
            }
        }
    }
});
