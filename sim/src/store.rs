//! [`SimStore`]: a custody store that holds real (tiny) bundles but accounts for
//! their *modelled* sizes.
//!
//! A simulated message of 1 MB travels as a real bundle with an 8-byte payload, so
//! that a run over thousands of messages and nodes fits in memory; the buffer quota
//! of a node is enforced on the modelled bytes instead. Bundles the simulator did not
//! model (receipts) count their real length. Everything else — the seen-set, indexes,
//! expiry, batches — is [`MemStore`]'s, created with unlimited quotas.
//!
//! When a bundle does not fit:
//!
//! - [`BufferPolicy::Refuse`] fails the insert with [`StoreError::StoreFull`] and
//!   writes nothing (Ferry's behaviour: the engine refuses the bundle, the sender
//!   keeps custody);
//! - [`BufferPolicy::DropOldest`] removes the oldest records (lowest insertion
//!   first) until it fits, and records each drop (The ONE's model). The engine is
//!   not told: it finds them gone the next time it reads them, like a store edited
//!   behind its back. A bundle larger than the whole buffer is refused in both.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

use std::sync::Arc;

use ferry_core::{BundleId, Destination};
use ferry_storage::{
    CustodyStore, DestinationCursor, IdPage, InsertOutcome, MemStore, NewRecord, Page,
    PriorityCursor, QuarantineEntry, QuotaKind, Record, RecordInfo, RoutingMeta, StoreConfig,
    StoreError, StoreStats, WriteOp, WriteOutcome,
};

use crate::model::BufferPolicy;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Modelled sizes of bundles, shared by every node's store and the driver: id →
/// bytes. Bundles not listed (receipts) count their real length.
#[derive(Debug, Default)]
pub struct Sizes {
    map: Mutex<HashMap<BundleId, u64>>,
}

impl Sizes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the modelled size of a bundle.
    pub fn set(&self, id: BundleId, size: u64) {
        lock(&self.map).insert(id, size);
    }

    /// The modelled size of a bundle, if it is modelled.
    pub fn get(&self, id: &BundleId) -> Option<u64> {
        lock(&self.map).get(id).copied()
    }

    /// The size a bundle of `real_len` encoded bytes counts for.
    pub fn size_of(&self, id: &BundleId, real_len: usize) -> u64 {
        self.get(id).unwrap_or(real_len as u64)
    }
}

#[derive(Debug, Default)]
struct Acct {
    /// Stored id → (our insertion number, modelled size).
    held: HashMap<BundleId, (u64, u64)>,
    /// Insertion number → id, oldest first.
    order: BTreeMap<u64, BundleId>,
    /// Stored ids in byte order (for [`CustodyStore::ids_after`], which in a
    /// [`MemStore`] also walks the seen-only ids).
    ids: BTreeSet<BundleId>,
    next: u64,
    bytes: u64,
    peak: u64,
    /// Drops not yet taken by the driver.
    dropped: Vec<BundleId>,
    dropped_total: u64,
}

impl Acct {
    fn add(&mut self, id: BundleId, size: u64) {
        if self.held.contains_key(&id) {
            return;
        }
        self.next += 1;
        self.held.insert(id, (self.next, size));
        self.order.insert(self.next, id);
        self.ids.insert(id);
        self.bytes += size;
        self.peak = self.peak.max(self.bytes);
    }

    fn remove(&mut self, id: &BundleId) {
        if let Some((n, size)) = self.held.remove(id) {
            self.order.remove(&n);
            self.ids.remove(id);
            self.bytes = self.bytes.saturating_sub(size);
        }
    }
}

/// A [`CustodyStore`] over a [`MemStore`] that enforces a byte quota on modelled
/// sizes (see the module docs).
#[derive(Debug)]
pub struct SimStore {
    inner: MemStore,
    sizes: Arc<Sizes>,
    /// Modelled bytes allowed (`0`: unlimited).
    quota: u64,
    policy: BufferPolicy,
    acct: Mutex<Acct>,
}

impl SimStore {
    /// An empty store of `quota` modelled bytes (`0`: unlimited).
    pub fn new(sizes: Arc<Sizes>, quota: u64, policy: BufferPolicy) -> Self {
        Self {
            inner: MemStore::new(StoreConfig {
                max_bytes: u64::MAX,
                max_count: u64::MAX,
                map_size: None,
            }),
            sizes,
            quota,
            policy,
            acct: Mutex::new(Acct::default()),
        }
    }

    /// Modelled bytes held now.
    pub fn occupancy(&self) -> u64 {
        lock(&self.acct).bytes
    }

    /// The most modelled bytes held at once so far.
    pub fn peak(&self) -> u64 {
        lock(&self.acct).peak
    }

    /// Records held now.
    pub fn count(&self) -> usize {
        lock(&self.acct).held.len()
    }

    /// The byte quota (`0`: unlimited).
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Bundles dropped to make room since the last call, oldest drop first.
    pub fn take_dropped(&self) -> Vec<BundleId> {
        std::mem::take(&mut lock(&self.acct).dropped)
    }

    /// Bundles dropped to make room since the store was created.
    pub fn dropped_total(&self) -> u64 {
        lock(&self.acct).dropped_total
    }

    fn full(&self, used: u64, requested: u64) -> StoreError {
        StoreError::StoreFull {
            kind: QuotaKind::Bytes,
            limit: self.quota,
            used,
            requested,
        }
    }

    /// Makes the quota hold `excess` more bytes less than now, under the buffer
    /// policy: refuses, or drops the oldest records not in `keep`. `excess` is how
    /// far the highest occupancy the write would reach passes the quota.
    fn make_room(
        &self,
        acct: &mut Acct,
        excess: u64,
        requested: u64,
        keep: &HashSet<BundleId>,
    ) -> Result<(), StoreError> {
        if excess == 0 {
            return Ok(());
        }
        if self.policy == BufferPolicy::Refuse || requested > self.quota {
            return Err(self.full(acct.bytes, requested));
        }
        // Choose the victims first, so that a write that cannot fit even after
        // dropping everything droppable changes nothing.
        let mut freed = 0u64;
        let mut victims = Vec::new();
        for id in acct.order.values() {
            if freed >= excess {
                break;
            }
            if keep.contains(id) {
                continue;
            }
            if let Some(&(_, size)) = acct.held.get(id) {
                freed += size;
                victims.push(*id);
            }
        }
        if freed < excess {
            return Err(self.full(acct.bytes, requested));
        }
        for id in victims {
            self.inner.remove(&id)?;
            acct.remove(&id);
            acct.dropped.push(id);
            acct.dropped_total += 1;
        }
        Ok(())
    }
}

impl CustodyStore for SimStore {
    fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut acct = lock(&self.acct);
        if self.quota > 0 {
            let mut in_batch = HashSet::new();
            let mut requested = 0u64;
            for r in records {
                if !in_batch.contains(&r.id) && !self.inner.is_seen(&r.id)? {
                    in_batch.insert(r.id);
                    requested = requested.saturating_add(self.sizes.size_of(&r.id, r.bytes.len()));
                }
            }
            let excess = acct
                .bytes
                .saturating_add(requested)
                .saturating_sub(self.quota);
            self.make_room(&mut acct, excess, requested, &in_batch)?;
        }
        let out = self.inner.insert_batch(records)?;
        for (r, o) in records.iter().zip(&out) {
            if *o == InsertOutcome::Inserted {
                acct.add(r.id, self.sizes.size_of(&r.id, r.bytes.len()));
            }
        }
        Ok(out)
    }

    fn get(&self, id: &BundleId) -> Result<Option<Record>, StoreError> {
        self.inner.get(id)
    }

    fn get_info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError> {
        self.inner.get_info(id)
    }

    fn contains(&self, id: &BundleId) -> Result<bool, StoreError> {
        self.inner.contains(id)
    }

    fn remove(&self, id: &BundleId) -> Result<bool, StoreError> {
        let mut acct = lock(&self.acct);
        let removed = self.inner.remove(id)?;
        if removed {
            acct.remove(id);
        }
        Ok(removed)
    }

    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<RoutingMeta, StoreError> {
        self.inner.update_routing(id, update)
    }

    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut acct = lock(&self.acct);
        if self.quota > 0 && ops.iter().any(|op| matches!(op, WriteOp::Insert(_))) {
            // Follow the batch op by op (quotas are checked op by op, so a remove
            // earlier in the batch makes room for a later insert) and find the
            // highest occupancy it reaches.
            let mut added: HashMap<BundleId, u64> = HashMap::new();
            let mut touched: HashSet<BundleId> = HashSet::new();
            let mut gone: HashSet<BundleId> = HashSet::new();
            let (mut running, mut high, mut requested) = (acct.bytes, acct.bytes, 0u64);
            for op in ops {
                match op {
                    WriteOp::Insert(r) => {
                        let fresh = !added.contains_key(&r.id)
                            && !gone.contains(&r.id)
                            && !touched.contains(&r.id)
                            && !self.inner.is_seen(&r.id)?;
                        touched.insert(r.id);
                        if fresh {
                            let size = self.sizes.size_of(&r.id, r.bytes.len());
                            added.insert(r.id, size);
                            running = running.saturating_add(size);
                            requested = requested.saturating_add(size);
                            high = high.max(running);
                        }
                    }
                    WriteOp::Remove(id) => {
                        touched.insert(*id);
                        if let Some(size) = added.remove(id) {
                            running = running.saturating_sub(size);
                            gone.insert(*id);
                        } else if !gone.contains(id) {
                            if let Some(&(_, size)) = acct.held.get(id) {
                                running = running.saturating_sub(size);
                                gone.insert(*id);
                            }
                        }
                    }
                    WriteOp::MarkSeen(id, _) => {
                        touched.insert(*id);
                    }
                    WriteOp::Update(..) => {}
                }
            }
            let excess = high.saturating_sub(self.quota);
            self.make_room(&mut acct, excess, requested, &touched)?;
        }
        let out = self.inner.apply_batch(ops)?;
        for (op, o) in ops.iter().zip(&out) {
            match (op, o) {
                (WriteOp::Insert(r), WriteOutcome::Inserted(InsertOutcome::Inserted)) => {
                    acct.add(r.id, self.sizes.size_of(&r.id, r.bytes.len()));
                }
                (WriteOp::Remove(id), WriteOutcome::Removed(true)) => acct.remove(id),
                _ => {}
            }
        }
        Ok(out)
    }

    fn by_priority(
        &self,
        after: Option<PriorityCursor>,
        limit: usize,
    ) -> Result<Page<PriorityCursor>, StoreError> {
        self.inner.by_priority(after, limit)
    }

    fn by_destination(
        &self,
        destination: &Destination,
        after: Option<DestinationCursor>,
        limit: usize,
    ) -> Result<Page<DestinationCursor>, StoreError> {
        self.inner.by_destination(destination, after, limit)
    }

    fn purge_expired(&self, now: u64, limit: usize) -> Result<Vec<BundleId>, StoreError> {
        let mut acct = lock(&self.acct);
        let ids = self.inner.purge_expired(now, limit)?;
        for id in &ids {
            acct.remove(id);
        }
        Ok(ids)
    }

    fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError> {
        self.inner.is_seen(id)
    }

    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), StoreError> {
        self.inner.mark_seen(id, time)
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        self.inner.next_expiry()
    }

    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, StoreError> {
        self.inner.purge_seen_before(t, limit)
    }

    fn reserve_sequence(&self, n: u64) -> Result<Range<u64>, StoreError> {
        self.inner.reserve_sequence(n)
    }

    fn quarantined(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.inner.quarantined(after, limit)
    }

    fn discard_quarantined(&self, insertion: u64) -> Result<bool, StoreError> {
        self.inner.discard_quarantined(insertion)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let acct = lock(&self.acct);
        let mut s = self.inner.stats()?;
        s.bytes = acct.bytes;
        s.max_bytes = if self.quota == 0 {
            u64::MAX
        } else {
            self.quota
        };
        Ok(s)
    }

    /// Walks this store's own index of stored ids, so that the seen-only ids
    /// [`MemStore`] keeps beside them (every bundle a node ever saw, until it
    /// expires) cost nothing; same pages otherwise.
    fn ids_after(&self, after: Option<&BundleId>, limit: usize) -> Result<IdPage, StoreError> {
        if limit == 0 {
            return Err(StoreError::InvalidArgument("page limit must be at least 1"));
        }
        let limit = limit.min(ferry_storage::MAX_PAGE_LIMIT);
        let acct = lock(&self.acct);
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(*a),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = IdPage::default();
        for id in acct.ids.range((start, std::ops::Bound::Unbounded)) {
            if page.ids.len() == limit {
                page.next = page.ids.last().copied();
                break;
            }
            page.ids.push(*id);
        }
        Ok(page)
    }
}
