//! `SimStore`'s seen-set against a plain model, over thousands of ids: its purge
//! scans only the blocks of interned numbers whose lower bound has passed, so ids
//! must span many blocks, come and go, and be purged in small and large steps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_core::{BundleId, Destination, Priority};
use ferry_sim::model::BufferPolicy;
use ferry_sim::store::{SimStore, Sizes};
use ferry_storage::conformance::{id, rec_with, splitmix};
use ferry_storage::CustodyStore;

/// What the seen-set must be: id number → seen time, and the stored ones.
#[derive(Default)]
struct Model {
    seen: HashMap<u64, u64>,
    stored: HashSet<u64>,
}

impl Model {
    fn mark_seen(&mut self, k: u64, time: u64) {
        let t = self.seen.entry(k).or_insert(time);
        *t = (*t).max(time);
    }

    fn insert(&mut self, k: u64, expires: u64) -> bool {
        if self.seen.contains_key(&k) {
            return false;
        }
        self.seen.insert(k, expires);
        self.stored.insert(k);
        true
    }

    fn remove(&mut self, k: u64) -> bool {
        self.stored.remove(&k)
    }

    /// Forgets up to `limit` seen-only entries older than `t`, the oldest first
    /// (ties by id).
    fn purge(&mut self, t: u64, limit: usize) -> u64 {
        let mut victims: Vec<(u64, BundleId, u64)> = self
            .seen
            .iter()
            .filter(|(k, time)| **time < t && !self.stored.contains(k))
            .map(|(k, time)| (*time, id(*k), *k))
            .collect();
        victims.sort();
        victims.truncate(limit);
        for (_, _, k) in &victims {
            self.seen.remove(k);
        }
        victims.len() as u64
    }
}

#[test]
fn the_seen_set_matches_a_model_across_many_blocks() {
    const IDS: u64 = 3000;
    let store = SimStore::new(Arc::new(Sizes::new()), 0, BufferPolicy::Refuse);
    let mut model = Model::default();
    let mut x = 7u64;
    let mut rand = |n: u64| {
        x = splitmix(x);
        x % n
    };
    // Purge times creep forward, as a node's wall clock does.
    let mut clock = 0u64;
    for step in 0..30_000u32 {
        let k = rand(IDS);
        match rand(10) {
            0..=3 => {
                let time = clock + rand(400);
                store.mark_seen(&id(k), time).unwrap();
                model.mark_seen(k, time);
            }
            4..=6 => {
                let expires = clock + rand(400);
                let r = rec_with(k, 16, Priority::Normal, Destination::Group, Some(expires));
                let stored = store.insert(&r).unwrap() == ferry_storage::InsertOutcome::Inserted;
                assert_eq!(
                    stored,
                    model.insert(k, expires),
                    "insert {k} at step {step}"
                );
            }
            7 | 8 => {
                assert_eq!(
                    store.remove(&id(k)).unwrap(),
                    model.remove(k),
                    "remove {k} at step {step}"
                );
            }
            _ => {
                clock += rand(40);
                let limit = 1 + rand(60) as usize;
                assert_eq!(
                    store.purge_seen_before(clock, limit).unwrap(),
                    model.purge(clock, limit),
                    "purge before {clock} (limit {limit}) at step {step}"
                );
            }
        }
        if step % 1000 == 999 {
            for k in 0..IDS {
                assert_eq!(
                    store.is_seen(&id(k)).unwrap(),
                    model.seen.contains_key(&k),
                    "id {k} after step {step}"
                );
            }
        }
    }
    // Everything left can be purged at once, and only the stored ids stay seen.
    let left = model.purge(u64::MAX, usize::MAX);
    assert_eq!(
        store.purge_seen_before(u64::MAX, 65_536).unwrap(),
        left,
        "final purge"
    );
    for k in 0..IDS {
        assert_eq!(store.is_seen(&id(k)).unwrap(), model.stored.contains(&k));
    }
}
