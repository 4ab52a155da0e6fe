//! [`SimStore`]: a compact in-memory custody store that holds real (tiny) bundles but
//! accounts for their *modelled* sizes.
//!
//! A simulated message of 1 MB travels as a real bundle with an 8-byte payload, so
//! that a run over thousands of messages and nodes fits in memory; the buffer quota
//! of a node is enforced on the modelled bytes instead. Bundles the simulator did not
//! model (receipts) count their real length.
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
//!
//! Everything else behaves as [`ferry_storage::MemStore`] created with unlimited
//! quotas (the behavioural suite [`ferry_storage::conformance`] runs against it, see
//! `sim/tests/store_conformance.rs`), with one documented difference:
//! [`CustodyStore::ids_after`] returns a `next` only when more ids follow.
//!
//! ## Layout
//!
//! A run has one store per node and every node sees most bundles, so the store is
//! built around a global *interner*: [`Sizes`], shared by every store of a run and
//! the driver, numbers each bundle id it meets (`u32`) and keeps its modelled size
//! and the first encoding of the bundle stored anywhere (shared by every store that
//! stores the same bytes). Per store:
//!
//! - the seen-set is a dense `Vec<u32>` indexed by interned number, holding the seen
//!   time + 1 (`0`: not seen; times past `u32::MAX − 2` spill to a side map): 4 bytes
//!   per interned id (the vector grows on demand, by at least an eighth), whatever
//!   the node saw of it;
//! - records live in a hash map keyed by interned number (about 150 bytes each plus
//!   the holder list; bundle bytes are shared through the interner when identical);
//! - the ordered indexes hold numbers, not ids: ids in byte order (a sorted
//!   `Vec<u32>`, 4 bytes a record), priority order (`BTreeMap<u64, u32>`, key
//!   `255 − priority` over a 56-bit insertion number) and expiry
//!   (`BTreeMap<(u64, u64), u32>`);
//! - [`CustodyStore::purge_seen_before`] keeps a lower bound of the times of the
//!   seen-only entries and scans the seen vector only when `t` passes it;
//! - [`CustodyStore::by_destination`] (which the simulator does not use) scans the
//!   records and sorts the matches.
//!
//! Nothing is ever quarantined. Each call takes the store's lock once, then the
//! interner's (always in that order).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ferry_core::{BundleId, Destination};
use ferry_storage::mem::IdHash;
use ferry_storage::{page_limit, seen_time, validate_routing, validate_routing_state};
use ferry_storage::{
    BundleMeta, CustodyStore, DestinationCursor, IdPage, InsertOutcome, NewRecord, Page,
    PriorityCursor, QuarantineEntry, QuotaKind, Record, RecordInfo, RoutingMeta, StoreError,
    StoreStats, WriteOp, WriteOutcome,
};

use crate::model::BufferPolicy;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Interned numbers and bundle ids hash cheaply (see [`IdHash`]).
type Fast = IdHash;

/// The interner's table.
#[derive(Debug, Default)]
struct Table {
    index: HashMap<BundleId, u32, Fast>,
    ids: Vec<BundleId>,
    /// Modelled size by number (`None`: not modelled).
    sizes: Vec<Option<u64>>,
    /// The first encoding stored by any store, shared with the stores that store
    /// the same bytes.
    bytes: Vec<Option<Arc<[u8]>>>,
}

impl Table {
    fn find(&self, id: &BundleId) -> Option<u32> {
        self.index.get(id).copied()
    }

    fn intern(&mut self, id: &BundleId) -> u32 {
        if let Some(&n) = self.index.get(id) {
            return n;
        }
        let n = u32::try_from(self.ids.len()).expect("fewer than 2^32 bundle ids in a run");
        self.index.insert(*id, n);
        self.ids.push(*id);
        self.sizes.push(None);
        self.bytes.push(None);
        n
    }

    fn id(&self, n: u32) -> BundleId {
        self.ids[n as usize]
    }

    fn size_of_id(&self, id: &BundleId, real_len: usize) -> u64 {
        self.find(id)
            .and_then(|n| self.sizes[n as usize])
            .unwrap_or(real_len as u64)
    }

    /// `bytes` as an `Arc`, shared with the interned copy when equal.
    fn share(&mut self, n: u32, bytes: &[u8]) -> Arc<[u8]> {
        let slot = &mut self.bytes[n as usize];
        match slot {
            Some(b) if **b == *bytes => b.clone(),
            Some(_) => Arc::from(bytes),
            None => {
                let b: Arc<[u8]> = Arc::from(bytes);
                *slot = Some(b.clone());
                b
            }
        }
    }
}

/// Modelled sizes of bundles, shared by every node's store and the driver: id →
/// bytes. Bundles not listed (receipts) count their real length.
///
/// Also the run's bundle-id interner (see the module docs): every id a store or
/// [`Sizes::set`] meets gets a number, kept for the whole run.
#[derive(Debug, Default)]
pub struct Sizes {
    table: Mutex<Table>,
}

impl Sizes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the modelled size of a bundle.
    pub fn set(&self, id: BundleId, size: u64) {
        let mut t = lock(&self.table);
        let n = t.intern(&id);
        t.sizes[n as usize] = Some(size);
    }

    /// The modelled size of a bundle, if it is modelled.
    pub fn get(&self, id: &BundleId) -> Option<u64> {
        let t = lock(&self.table);
        t.find(id).and_then(|n| t.sizes[n as usize])
    }

    /// The size a bundle of `real_len` encoded bytes counts for.
    pub fn size_of(&self, id: &BundleId, real_len: usize) -> u64 {
        self.get(id).unwrap_or(real_len as u64)
    }
}

/// One stored record.
#[derive(Debug)]
struct Rec {
    insertion: u64,
    /// Modelled size, fixed when stored.
    modelled: u64,
    meta: BundleMeta,
    bytes: Arc<[u8]>,
}

impl Rec {
    fn info(&self, id: BundleId) -> RecordInfo {
        RecordInfo {
            id,
            insertion: self.insertion,
            size: self.bytes.len() as u64,
            meta: self.meta.clone(),
        }
    }

    fn info_into(&self, id: BundleId, info: &mut RecordInfo) {
        info.id = id;
        info.insertion = self.insertion;
        info.size = self.bytes.len() as u64;
        info.meta.clone_from(&self.meta);
    }
}

/// Seen-vector value spilled to [`State::late`].
const SPILLED: u32 = u32::MAX;
/// Most drops [`SimStore::take_dropped`] reports (older ones are only counted).
pub const MAX_DROP_LOG: usize = 4096;
/// Insertion numbers use 56 bits of the priority key.
const INSERTION_BITS: u32 = 56;
const INSERTION_MASK: u64 = (1 << INSERTION_BITS) - 1;

fn prio_key(inv_priority: u8, insertion: u64) -> u64 {
    (u64::from(inv_priority) << INSERTION_BITS) | insertion.min(INSERTION_MASK)
}

fn inv_priority(meta: &BundleMeta) -> u8 {
    255 - meta.priority as u8
}

/// Interned numbers per block of the seen-set's purge bounds.
const SEEN_BLOCK: usize = 256;

#[derive(Debug)]
struct State {
    records: HashMap<u32, Rec, Fast>,
    /// Seen time + 1 by interned number; `0`: not seen; [`SPILLED`]: in `late`.
    seen: Vec<u32>,
    late: HashMap<u32, u64, Fast>,
    seen_count: u64,
    /// Per block of [`SEEN_BLOCK`] numbers: no seen-only entry of the block has a
    /// time below this (a lower bound; `u64::MAX`: none), so that a purge of the
    /// seen-set scans only the blocks that may hold entries to forget (numbers are
    /// interned in first-seen order and seen times are mostly expiries, so those are
    /// few).
    seen_min: Vec<u64>,
    /// Stored numbers, in byte order of their ids.
    ordered: Vec<u32>,
    /// [`prio_key`] → number.
    prio: BTreeMap<u64, u32>,
    /// (expiry, insertion) → number.
    expiry: BTreeMap<(u64, u64), u32>,
    next_slot: u64,
    next_seq: u64,
    /// The routing policy's saved state.
    routing_state: Option<Vec<u8>>,
    /// Modelled bytes held.
    bytes: u64,
    peak: u64,
    /// The latest drops not yet taken by the driver (at most [`MAX_DROP_LOG`]; the
    /// total is counted apart, so a driver that only counts need not drain it).
    dropped: std::collections::VecDeque<BundleId>,
    dropped_total: u64,
}

impl State {
    fn new() -> Self {
        Self {
            records: HashMap::default(),
            seen: Vec::new(),
            late: HashMap::default(),
            seen_count: 0,
            seen_min: Vec::new(),
            ordered: Vec::new(),
            prio: BTreeMap::new(),
            expiry: BTreeMap::new(),
            next_slot: 1,
            next_seq: 1,
            routing_state: None,
            bytes: 0,
            peak: 0,
            dropped: std::collections::VecDeque::new(),
            dropped_total: 0,
        }
    }

    fn seen_time_of(&self, n: u32) -> Option<u64> {
        match self.seen.get(n as usize).copied() {
            None | Some(0) => None,
            Some(SPILLED) => self.late.get(&n).copied(),
            Some(v) => Some(u64::from(v - 1)),
        }
    }

    fn is_seen(&self, n: Option<u32>) -> bool {
        n.is_some_and(|n| matches!(self.seen.get(n as usize), Some(&v) if v != 0))
    }

    fn stored(&self, n: Option<u32>) -> bool {
        n.is_some_and(|n| self.records.contains_key(&n))
    }

    /// Sets the seen time of `n` (counting it if new).
    fn set_seen(&mut self, n: u32, time: u64) {
        let i = n as usize;
        if i >= self.seen.len() {
            let len = self.seen.len();
            let want = (i + 1).max(len + len / 8).max(64);
            self.seen.reserve_exact(want - len);
            self.seen.resize(want, 0);
        }
        let old = self.seen[i];
        if old == 0 {
            self.seen_count += 1;
        } else if old == SPILLED {
            self.late.remove(&n);
        }
        match u32::try_from(time) {
            Ok(t) if t < SPILLED - 1 => self.seen[i] = t + 1,
            _ => {
                self.seen[i] = SPILLED;
                self.late.insert(n, time);
            }
        }
    }

    fn forget_seen(&mut self, n: u32) {
        let i = n as usize;
        if let Some(&v) = self.seen.get(i) {
            if v != 0 {
                if v == SPILLED {
                    self.late.remove(&n);
                }
                self.seen[i] = 0;
                self.seen_count -= 1;
            }
        }
    }

    fn mark_seen(&mut self, n: u32, time: u64) {
        match self.seen_time_of(n) {
            Some(t) if time > t => self.set_seen(n, time),
            Some(_) => {}
            None => {
                self.set_seen(n, time);
                self.seen_only_at(n, time);
            }
        }
    }

    /// Stores a record the caller checked (not seen, valid).
    fn put(&mut self, n: u32, r: &NewRecord, table: &mut Table) {
        let slot = self.next_slot;
        self.next_slot += 1;
        let modelled = table.size_of_id(&r.id, r.bytes.len());
        let bytes = table.share(n, &r.bytes);
        self.prio.insert(prio_key(inv_priority(&r.meta), slot), n);
        if let Some(e) = r.meta.expires_at {
            self.expiry.insert((e, slot), n);
        }
        self.set_seen(n, seen_time(&r.meta));
        let pos = self
            .ordered
            .partition_point(|&m| table.ids[m as usize] < r.id);
        self.ordered.insert(pos, n);
        self.records.insert(
            n,
            Rec {
                insertion: slot,
                modelled,
                meta: r.meta.clone(),
                bytes,
            },
        );
        self.bytes += modelled;
        self.peak = self.peak.max(self.bytes);
    }

    /// Removes a stored record, keeping its number seen with its time.
    fn remove(&mut self, n: u32, table: &Table) -> bool {
        let Some(rec) = self.records.remove(&n) else {
            return false;
        };
        self.prio
            .remove(&prio_key(inv_priority(&rec.meta), rec.insertion));
        if let Some(e) = rec.meta.expires_at {
            self.expiry.remove(&(e, rec.insertion));
        }
        let id = table.id(n);
        let pos = self
            .ordered
            .partition_point(|&m| table.ids[m as usize] < id);
        if self.ordered.get(pos) == Some(&n) {
            self.ordered.remove(pos);
        }
        self.bytes = self.bytes.saturating_sub(rec.modelled);
        let t = match self.seen_time_of(n) {
            Some(t) => t,
            None => {
                let t = seen_time(&rec.meta);
                self.set_seen(n, t);
                t
            }
        };
        self.seen_only_at(n, t);
        true
    }

    /// Notes that `n` is seen-only with time `t` (lowers its block's bound).
    fn seen_only_at(&mut self, n: u32, t: u64) {
        let b = n as usize / SEEN_BLOCK;
        if b >= self.seen_min.len() {
            self.seen_min.resize(b + 1, u64::MAX);
        }
        self.seen_min[b] = self.seen_min[b].min(t);
    }

    /// Stored records, oldest insertion first (a merge of the priority classes).
    fn oldest_first(&self) -> impl Iterator<Item = (&Rec, u32)> + '_ {
        let mut classes = Vec::new();
        let mut from = 0u64;
        while let Some((&k, _)) = self.prio.range(from..).next() {
            let class = k >> INSERTION_BITS;
            classes.push(
                self.prio
                    .range(k..=(class << INSERTION_BITS | INSERTION_MASK))
                    .peekable(),
            );
            if class == 255 {
                break;
            }
            from = (class + 1) << INSERTION_BITS;
        }
        std::iter::from_fn(move || {
            let best = classes
                .iter_mut()
                .enumerate()
                .filter_map(|(i, c)| c.peek().map(|(&k, _)| (k & INSERTION_MASK, i)))
                .min()?;
            let (_, &n) = classes[best.1].next()?;
            self.records.get(&n).map(|r| (r, n))
        })
    }
}

/// A [`CustodyStore`] that enforces a byte quota on modelled sizes (see the module
/// docs).
#[derive(Debug)]
pub struct SimStore {
    sizes: Arc<Sizes>,
    /// Modelled bytes allowed (`0`: unlimited).
    quota: u64,
    policy: BufferPolicy,
    /// Whether drops are logged for [`SimStore::take_dropped`].
    log_drops: bool,
    state: Mutex<State>,
}

impl SimStore {
    /// An empty store of `quota` modelled bytes (`0`: unlimited).
    pub fn new(sizes: Arc<Sizes>, quota: u64, policy: BufferPolicy) -> Self {
        Self {
            sizes,
            quota,
            policy,
            log_drops: true,
            state: Mutex::new(State::new()),
        }
    }

    /// The same store without the drop log (a driver that only counts drops,
    /// through [`SimStore::dropped_total`]).
    pub fn without_drop_log(mut self) -> Self {
        self.log_drops = false;
        self
    }

    /// Modelled bytes held now.
    pub fn occupancy(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// The most modelled bytes held at once so far.
    pub fn peak(&self) -> u64 {
        lock(&self.state).peak
    }

    /// Records held now.
    pub fn count(&self) -> usize {
        lock(&self.state).records.len()
    }

    /// The byte quota (`0`: unlimited).
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Bundles dropped to make room since the last call (the latest [`MAX_DROP_LOG`]),
    /// oldest drop first.
    pub fn take_dropped(&self) -> Vec<BundleId> {
        lock(&self.state).dropped.drain(..).collect()
    }

    /// Bundles dropped to make room since the store was created.
    pub fn dropped_total(&self) -> u64 {
        lock(&self.state).dropped_total
    }

    fn locks(&self) -> (MutexGuard<'_, State>, MutexGuard<'_, Table>) {
        let st = lock(&self.state);
        (st, lock(&self.sizes.table))
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
        st: &mut State,
        table: &Table,
        excess: u64,
        requested: u64,
        keep: &[BundleId],
    ) -> Result<(), StoreError> {
        if excess == 0 {
            return Ok(());
        }
        if self.policy == BufferPolicy::Refuse || requested > self.quota {
            return Err(self.full(st.bytes, requested));
        }
        // Choose the victims first, so that a write that cannot fit even after
        // dropping everything droppable changes nothing.
        let mut freed = 0u64;
        let mut victims = Vec::new();
        for (rec, n) in st.oldest_first() {
            if freed >= excess {
                break;
            }
            if !keep.is_empty() && keep.contains(&table.id(n)) {
                continue;
            }
            freed += rec.modelled;
            victims.push(n);
        }
        if freed < excess {
            return Err(self.full(st.bytes, requested));
        }
        for n in victims {
            st.remove(n, table);
            if self.log_drops {
                if st.dropped.len() >= MAX_DROP_LOG {
                    st.dropped.pop_front();
                }
                st.dropped.push_back(table.id(n));
            }
            st.dropped_total += 1;
        }
        Ok(())
    }

    /// The quota pass of [`CustodyStore::apply_batch`]: follows the batch op by op
    /// (quotas are checked op by op, so a remove earlier in the batch makes room for
    /// a later insert), finds the highest occupancy it reaches and makes room for it.
    fn batch_room(&self, st: &mut State, table: &Table, ops: &[WriteOp]) -> Result<(), StoreError> {
        // Batches are small here (the simulator's engines commit after every
        // input): vectors searched in line beat hash sets built for each batch.
        let mut added: Vec<(BundleId, u64)> = Vec::new();
        let mut touched: Vec<BundleId> = Vec::new();
        let mut gone: Vec<BundleId> = Vec::new();
        let (mut running, mut high, mut requested) = (st.bytes, st.bytes, 0u64);
        for op in ops {
            match op {
                WriteOp::Insert(r) => {
                    let fresh = !touched.contains(&r.id) && !st.is_seen(table.find(&r.id));
                    if !touched.contains(&r.id) {
                        touched.push(r.id);
                    }
                    if fresh {
                        let size = table.size_of_id(&r.id, r.bytes.len());
                        added.push((r.id, size));
                        running = running.saturating_add(size);
                        requested = requested.saturating_add(size);
                        high = high.max(running);
                    }
                }
                WriteOp::Remove(id) => {
                    if !touched.contains(id) {
                        touched.push(*id);
                    }
                    if let Some(i) = added.iter().position(|(a, _)| a == id) {
                        running = running.saturating_sub(added.swap_remove(i).1);
                        gone.push(*id);
                    } else if !gone.contains(id) {
                        if let Some(rec) = table.find(id).and_then(|n| st.records.get(&n)) {
                            running = running.saturating_sub(rec.modelled);
                            gone.push(*id);
                        }
                    }
                }
                WriteOp::MarkSeen(id, _) => {
                    if !touched.contains(id) {
                        touched.push(*id);
                    }
                }
                WriteOp::Update(..) | WriteOp::SetRoutingState(_) => {}
            }
        }
        let excess = high.saturating_sub(self.quota);
        self.make_room(st, table, excess, requested, &touched)
    }
}

impl CustodyStore for SimStore {
    fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<InsertOutcome>, StoreError> {
        let (mut st, mut table) = self.locks();
        if self.quota > 0 {
            let mut in_batch: HashSet<BundleId, Fast> = HashSet::default();
            let mut requested = 0u64;
            for r in records {
                if !in_batch.contains(&r.id) && !st.is_seen(table.find(&r.id)) {
                    in_batch.insert(r.id);
                    requested = requested.saturating_add(table.size_of_id(&r.id, r.bytes.len()));
                }
            }
            let excess = st
                .bytes
                .saturating_add(requested)
                .saturating_sub(self.quota);
            // Only unseen ids are in `in_batch`, and no stored record is unseen, so
            // nothing needs sparing.
            self.make_room(&mut st, &table, excess, requested, &[])?;
        }
        let mut outcomes = Vec::with_capacity(records.len());
        let mut in_batch: HashSet<BundleId, Fast> = HashSet::default();
        for r in records {
            validate_routing(&r.id, &r.meta.routing)?;
            let n = table.find(&r.id);
            let outcome = if in_batch.contains(&r.id) || st.stored(n) {
                InsertOutcome::Duplicate { still_stored: true }
            } else if st.is_seen(n) {
                InsertOutcome::Duplicate {
                    still_stored: false,
                }
            } else {
                in_batch.insert(r.id);
                InsertOutcome::Inserted
            };
            outcomes.push(outcome);
        }
        for (r, o) in records.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                let n = table.intern(&r.id);
                st.put(n, r, &mut table);
            }
        }
        Ok(outcomes)
    }

    fn get(&self, id: &BundleId) -> Result<Option<Record>, StoreError> {
        let (st, table) = self.locks();
        Ok(table
            .find(id)
            .and_then(|n| st.records.get(&n))
            .map(|rec| Record {
                info: rec.info(*id),
                bytes: rec.bytes.to_vec(),
            }))
    }

    fn get_info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError> {
        let (st, table) = self.locks();
        Ok(table
            .find(id)
            .and_then(|n| st.records.get(&n))
            .map(|rec| rec.info(*id)))
    }

    fn get_info_into(&self, id: &BundleId, info: &mut RecordInfo) -> Result<bool, StoreError> {
        let (st, table) = self.locks();
        let Some(rec) = table.find(id).and_then(|n| st.records.get(&n)) else {
            return Ok(false);
        };
        rec.info_into(*id, info);
        Ok(true)
    }

    fn contains(&self, id: &BundleId) -> Result<bool, StoreError> {
        let (st, table) = self.locks();
        Ok(st.stored(table.find(id)))
    }

    fn remove(&self, id: &BundleId) -> Result<bool, StoreError> {
        let (mut st, table) = self.locks();
        Ok(match table.find(id) {
            Some(n) => st.remove(n, &table),
            None => false,
        })
    }

    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<RoutingMeta, StoreError> {
        let mut st = lock(&self.state);
        // The interner's lock is not held while `update` runs.
        let n = lock(&self.sizes.table).find(id);
        let rec = n
            .and_then(|n| st.records.get_mut(&n))
            .ok_or(StoreError::NotFound { id: *id })?;
        let mut routing = rec.meta.routing.clone();
        update(&mut routing);
        validate_routing(id, &routing)?;
        rec.meta.routing = routing.clone();
        Ok(routing)
    }

    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let (mut st, mut table) = self.locks();
        if self.quota > 0 && ops.iter().any(|op| matches!(op, WriteOp::Insert(_))) {
            self.batch_room(&mut st, &table, ops)?;
        }
        // Check first, then apply: nothing below can fail once every record is valid
        // (there is no other quota).
        for op in ops {
            match op {
                WriteOp::Insert(r) => validate_routing(&r.id, &r.meta.routing)?,
                WriteOp::SetRoutingState(b) => validate_routing_state(b)?,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                WriteOp::Insert(r) => {
                    let n = table.find(&r.id);
                    WriteOutcome::Inserted(if st.stored(n) {
                        InsertOutcome::Duplicate { still_stored: true }
                    } else if st.is_seen(n) {
                        InsertOutcome::Duplicate {
                            still_stored: false,
                        }
                    } else {
                        let n = table.intern(&r.id);
                        st.put(n, r, &mut table);
                        InsertOutcome::Inserted
                    })
                }
                WriteOp::Remove(id) => WriteOutcome::Removed(match table.find(id) {
                    Some(n) => st.remove(n, &table),
                    None => false,
                }),
                WriteOp::Update(id, edit) => {
                    WriteOutcome::Updated(table.find(id).and_then(|n| st.records.get_mut(&n)).map(
                        |rec| {
                            edit.apply(&mut rec.meta.routing);
                            rec.meta.routing.clone()
                        },
                    ))
                }
                WriteOp::MarkSeen(id, t) => {
                    let n = table.intern(id);
                    st.mark_seen(n, *t);
                    WriteOutcome::MarkedSeen
                }
                WriteOp::SetRoutingState(b) => {
                    st.routing_state = Some(b.clone());
                    WriteOutcome::RoutingStateSet
                }
            });
        }
        Ok(out)
    }

    fn by_priority(
        &self,
        after: Option<PriorityCursor>,
        limit: usize,
    ) -> Result<Page<PriorityCursor>, StoreError> {
        let limit = page_limit(limit)?;
        let (st, table) = self.locks();
        let start = match after {
            Some(c) => Bound::Excluded(prio_key(c.inv_priority(), c.insertion())),
            None => Bound::Unbounded,
        };
        let mut items = Vec::with_capacity(limit.min(st.records.len()));
        let mut taken = 0;
        let mut last = None;
        for (&k, &n) in st.prio.range((start, Bound::Unbounded)).take(limit) {
            taken += 1;
            last = Some(k);
            if let Some(rec) = st.records.get(&n) {
                items.push(rec.info(table.id(n)));
            }
        }
        let next = match last {
            Some(k) if taken == limit => Some(priority_cursor(k)),
            _ => None,
        };
        Ok(Page {
            items,
            next,
            quarantined: Vec::new(),
        })
    }

    /// A scan of every record (the simulator does not list by destination).
    fn by_destination(
        &self,
        destination: &Destination,
        after: Option<DestinationCursor>,
        limit: usize,
    ) -> Result<Page<DestinationCursor>, StoreError> {
        let limit = page_limit(limit)?;
        let from = match after {
            Some(c) if c.destination() != destination => {
                return Err(StoreError::InvalidArgument(
                    "cursor belongs to another destination",
                ))
            }
            Some(c) => c.insertion().checked_add(1),
            None => Some(0),
        };
        let (st, table) = self.locks();
        let mut found: Vec<(u64, u32)> = match from {
            Some(from) => st
                .records
                .iter()
                .filter(|(_, r)| r.insertion >= from && r.meta.destination == *destination)
                .map(|(&n, r)| (r.insertion, n))
                .collect(),
            None => Vec::new(),
        };
        found.sort_unstable();
        found.truncate(limit);
        let next = if found.len() == limit {
            found
                .last()
                .map(|&(insertion, _)| DestinationCursor::new(*destination, insertion))
        } else {
            None
        };
        let items = found
            .iter()
            .filter_map(|&(_, n)| st.records.get(&n).map(|r| r.info(table.id(n))))
            .collect();
        Ok(Page {
            items,
            next,
            quarantined: Vec::new(),
        })
    }

    fn purge_expired(&self, now: u64, limit: usize) -> Result<Vec<BundleId>, StoreError> {
        let limit = page_limit(limit)?;
        let (mut st, table) = self.locks();
        let victims: Vec<u32> = st
            .expiry
            .range(..=(now, u64::MAX))
            .take(limit)
            .map(|(_, &n)| n)
            .collect();
        let mut ids = Vec::with_capacity(victims.len());
        for n in victims {
            if st.remove(n, &table) {
                ids.push(table.id(n));
            }
        }
        Ok(ids)
    }

    fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError> {
        let (st, table) = self.locks();
        Ok(st.is_seen(table.find(id)))
    }

    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), StoreError> {
        let (mut st, mut table) = self.locks();
        let n = table.intern(id);
        st.mark_seen(n, time);
        Ok(())
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.state).expiry.keys().next().map(|&(e, _)| e))
    }

    /// Forgets seen-only entries with a time before `t`, earliest time first (then
    /// id order), as [`ferry_storage::MemStore`] does. Scans the seen vector, but
    /// only when `t` passes the lower bound the store keeps of those times.
    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, StoreError> {
        let limit = page_limit(limit)?;
        let (mut st, table) = self.locks();
        let mut victims: Vec<(u64, u32)> = Vec::new();
        for b in 0..st.seen_min.len() {
            if st.seen_min[b] >= t {
                continue;
            }
            let start = b * SEEN_BLOCK;
            let end = (start + SEEN_BLOCK).min(st.seen.len());
            let mut min = u64::MAX;
            for i in start..end {
                let v = st.seen[i];
                if v == 0 {
                    continue;
                }
                let n = i as u32;
                if st.records.contains_key(&n) {
                    continue;
                }
                let time = if v == SPILLED {
                    st.late.get(&n).copied().unwrap_or(u64::MAX)
                } else {
                    u64::from(v - 1)
                };
                if time >= t {
                    min = min.min(time);
                } else {
                    victims.push((time, n));
                }
            }
            st.seen_min[b] = min;
        }
        if victims.len() > limit {
            victims.select_nth_unstable_by(limit, |a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| table.id(a.1).cmp(&table.id(b.1)))
            });
            // Those not forgotten now stay seen-only: their blocks keep them.
            for &(time, n) in &victims[limit..] {
                let b = n as usize / SEEN_BLOCK;
                st.seen_min[b] = st.seen_min[b].min(time);
            }
            victims.truncate(limit);
        }
        for &(_, n) in &victims {
            st.forget_seen(n);
        }
        Ok(victims.len() as u64)
    }

    fn routing_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.state).routing_state.clone())
    }

    fn reserve_sequence(&self, n: u64) -> Result<Range<u64>, StoreError> {
        if n == 0 {
            return Err(StoreError::InvalidArgument(
                "reserve at least one sequence number",
            ));
        }
        let mut st = lock(&self.state);
        let start = st.next_seq;
        let end = start.checked_add(n).ok_or(StoreError::SequenceExhausted)?;
        st.next_seq = end;
        Ok(start..end)
    }

    fn quarantined(
        &self,
        _after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        page_limit(limit)?;
        Ok(Vec::new())
    }

    fn discard_quarantined(&self, _insertion: u64) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let st = lock(&self.state);
        Ok(StoreStats {
            count: st.records.len() as u64,
            bytes: st.bytes,
            max_count: u64::MAX,
            max_bytes: if self.quota == 0 {
                u64::MAX
            } else {
                self.quota
            },
            quarantined: 0,
            quarantined_bytes: 0,
            seen: st.seen_count,
        })
    }

    /// Walks the sorted index of stored ids; `next` is set only when more ids
    /// follow (a full last page has none, unlike [`ferry_storage::MemStore`]).
    fn ids_after(&self, after: Option<&BundleId>, limit: usize) -> Result<IdPage, StoreError> {
        let limit = page_limit(limit)?;
        let (st, table) = self.locks();
        let start = match after {
            Some(a) => st.ordered.partition_point(|&m| table.ids[m as usize] <= *a),
            None => 0,
        };
        let end = start.saturating_add(limit).min(st.ordered.len());
        let ids: Vec<BundleId> = st.ordered[start..end]
            .iter()
            .map(|&n| table.id(n))
            .collect();
        let next = if end < st.ordered.len() {
            ids.last().copied()
        } else {
            None
        };
        Ok(IdPage { ids, next })
    }
}

/// The cursor of a priority-index key.
fn priority_cursor(key: u64) -> PriorityCursor {
    let priority = match 255 - (key >> INSERTION_BITS) as u8 {
        0 => ferry_core::Priority::Bulk,
        1 => ferry_core::Priority::Normal,
        _ => ferry_core::Priority::Expedited,
    };
    PriorityCursor::new(priority, key & INSERTION_MASK)
}
