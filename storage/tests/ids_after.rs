//! `CustodyStore::ids_after`: stored ids in ascending order, paginated, seen-only ids
//! skipped; the same answers from `MemStore`, `LmdbStore` and the trait's default
//! implementation.

mod common;

use common::rec;
use ferry_core::BundleId;
use ferry_storage::{
    CustodyStore, IdPage, InsertOutcome, LmdbStore, MemStore, NewRecord, StoreConfig,
};

fn cfg() -> StoreConfig {
    StoreConfig {
        max_bytes: 1 << 22,
        max_count: 10_000,
        map_size: None,
    }
}

/// Every id, following `next` with pages of `limit`.
fn walk(s: &dyn CustodyStore, after: Option<BundleId>, limit: usize) -> Vec<BundleId> {
    let mut out = Vec::new();
    let mut cursor = after;
    let mut calls = 0;
    loop {
        let IdPage { ids, next } = s.ids_after(cursor.as_ref(), limit).unwrap();
        assert!(ids.len() <= limit);
        out.extend(ids);
        calls += 1;
        assert!(calls < 100_000, "ids_after does not terminate");
        match next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

/// A store that uses the trait's default `ids_after`.
#[derive(Debug)]
struct DefaultImpl(MemStore);

impl CustodyStore for DefaultImpl {
    fn insert_batch(
        &self,
        records: &[NewRecord],
    ) -> Result<Vec<InsertOutcome>, ferry_storage::StoreError> {
        self.0.insert_batch(records)
    }
    fn get(
        &self,
        id: &BundleId,
    ) -> Result<Option<ferry_storage::Record>, ferry_storage::StoreError> {
        self.0.get(id)
    }
    fn get_info(
        &self,
        id: &BundleId,
    ) -> Result<Option<ferry_storage::RecordInfo>, ferry_storage::StoreError> {
        self.0.get_info(id)
    }
    fn contains(&self, id: &BundleId) -> Result<bool, ferry_storage::StoreError> {
        self.0.contains(id)
    }
    fn remove(&self, id: &BundleId) -> Result<bool, ferry_storage::StoreError> {
        self.0.remove(id)
    }
    fn apply_batch(
        &self,
        ops: &[ferry_storage::WriteOp],
    ) -> Result<Vec<ferry_storage::WriteOutcome>, ferry_storage::StoreError> {
        self.0.apply_batch(ops)
    }
    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut ferry_storage::RoutingMeta),
    ) -> Result<ferry_storage::RoutingMeta, ferry_storage::StoreError> {
        self.0.update_routing(id, update)
    }
    fn by_priority(
        &self,
        after: Option<ferry_storage::PriorityCursor>,
        limit: usize,
    ) -> Result<ferry_storage::Page<ferry_storage::PriorityCursor>, ferry_storage::StoreError> {
        self.0.by_priority(after, limit)
    }
    fn by_destination(
        &self,
        destination: &ferry_core::Destination,
        after: Option<ferry_storage::DestinationCursor>,
        limit: usize,
    ) -> Result<ferry_storage::Page<ferry_storage::DestinationCursor>, ferry_storage::StoreError>
    {
        self.0.by_destination(destination, after, limit)
    }
    fn purge_expired(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<BundleId>, ferry_storage::StoreError> {
        self.0.purge_expired(now, limit)
    }
    fn is_seen(&self, id: &BundleId) -> Result<bool, ferry_storage::StoreError> {
        self.0.is_seen(id)
    }
    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), ferry_storage::StoreError> {
        self.0.mark_seen(id, time)
    }
    fn next_expiry(&self) -> Result<Option<u64>, ferry_storage::StoreError> {
        self.0.next_expiry()
    }
    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, ferry_storage::StoreError> {
        self.0.purge_seen_before(t, limit)
    }
    fn reserve_sequence(&self, n: u64) -> Result<std::ops::Range<u64>, ferry_storage::StoreError> {
        self.0.reserve_sequence(n)
    }
    fn routing_state(&self) -> Result<Option<Vec<u8>>, ferry_storage::StoreError> {
        self.0.routing_state()
    }
    fn quarantined(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ferry_storage::QuarantineEntry>, ferry_storage::StoreError> {
        self.0.quarantined(after, limit)
    }
    fn discard_quarantined(&self, insertion: u64) -> Result<bool, ferry_storage::StoreError> {
        self.0.discard_quarantined(insertion)
    }
    fn stats(&self) -> Result<ferry_storage::StoreStats, ferry_storage::StoreError> {
        self.0.stats()
    }
}

fn check(s: &dyn CustodyStore) {
    assert_eq!(walk(s, None, 10), Vec::<BundleId>::new());
    let records: Vec<NewRecord> = (0..300).map(|n| rec(n, 10)).collect();
    s.insert_batch(&records).unwrap();
    // Remove every third one: they stay seen but are no longer listed.
    for r in records.iter().step_by(3) {
        assert!(s.remove(&r.id).unwrap());
    }
    // A seen-only id that was never stored.
    s.mark_seen(&BundleId([0x80; 32]), 5).unwrap();
    let mut expected: Vec<BundleId> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, r)| r.id)
        .collect();
    expected.sort();
    for limit in [1, 7, 64, 1000] {
        assert_eq!(walk(s, None, limit), expected, "limit {limit}");
    }
    // Starting after an id (stored, removed, or absent) continues strictly after it.
    let mid = expected[expected.len() / 2];
    assert_eq!(walk(s, Some(mid), 13), expected[expected.len() / 2 + 1..]);
    let removed = records[3].id;
    let after_removed: Vec<BundleId> = expected.iter().copied().filter(|i| *i > removed).collect();
    assert_eq!(walk(s, Some(removed), 5), after_removed);
    assert!(walk(s, Some(BundleId([0xff; 32])), 5).is_empty());
    assert!(s.ids_after(None, 0).is_err());
}

#[test]
fn mem() {
    check(&MemStore::new(cfg()));
}

#[test]
fn lmdb() {
    let dir = common::tmp();
    check(&LmdbStore::open(dir.path().join("s"), cfg()).unwrap());
}

#[test]
fn default_implementation() {
    check(&DefaultImpl(MemStore::new(cfg())));
}
