//! [`MemStore`]: the in-memory store for the simulator and tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ferry_core::{BundleId, Destination};

use crate::error::{QuotaKind, StoreError};
use crate::record::{dest_prefix, inv_priority};
use crate::store::{CustodyStore, IdPage};
use crate::types::{
    page_limit, seen_time, validate_routing, validate_routing_state, DestinationCursor,
    InsertOutcome, NewRecord, Page, PriorityCursor, QuarantineEntry, Record, RecordInfo,
    RoutingMeta, StoreConfig, StoreStats, WriteOp, WriteOutcome,
};

/// A hasher for bundle ids (BLAKE3 outputs, already uniform, so hashing them again
/// with SipHash is wasted work on the simulator's hot path) and small numbers: an id
/// hashes as its first eight bytes, a `u32`/`u64` as itself, both mixed by one
/// multiply. Only for maps whose keys nobody chooses against them: the in-memory
/// stores of the simulator and the tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

/// [`IdHasher`] as a `BuildHasher` for `HashMap`/`HashSet`.
pub type IdHash = std::hash::BuildHasherDefault<IdHasher>;

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A BundleId hashes as its 32 bytes (after a length prefix, written through
        // `write_usize`): its first eight are enough; anything else gets every byte.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(MIX);
            if bytes.len() >= 32 {
                break;
            }
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(MIX);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(MIX);
    }
    fn write_usize(&mut self, _: usize) {}
}

#[derive(Debug)]
struct Inner {
    /// id → (seen time, insertion number or 0 when not stored): the seen-set and the
    /// point lookups (hashed: the simulator does millions of them).
    ids: HashMap<BundleId, (u64, u64), IdHash>,
    /// Ids of stored records, ordered for [`CustodyStore::ids_after`].
    stored: BTreeSet<BundleId>,
    records: BTreeMap<u64, (RecordInfo, Vec<u8>)>,
    prio: BTreeSet<(u8, u64)>,
    dest: BTreeSet<([u8; 9], u64)>,
    expiry: BTreeSet<(u64, u64)>,
    /// Seen-set entries of records no longer stored, by time.
    seen_exp: BTreeSet<(u64, BundleId)>,
    next_slot: u64,
    next_seq: u64,
    bytes: u64,
    routing_state: Option<Vec<u8>>,
}

/// An in-memory [`CustodyStore`] with the same behaviour as [`LmdbStore`], minus
/// durability: everything, the seen-set and the sequence counter included, is lost
/// when it is dropped. Records are held decoded, so nothing is ever quarantined.
///
/// Meant for the simulator and tests; it holds everything in RAM.
///
/// [`LmdbStore`]: crate::LmdbStore
#[derive(Debug)]
pub struct MemStore {
    config: StoreConfig,
    inner: Mutex<Inner>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

impl MemStore {
    /// An empty store with these quotas (`map_size` is ignored).
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                ids: HashMap::default(),
                stored: BTreeSet::new(),
                records: BTreeMap::new(),
                prio: BTreeSet::new(),
                dest: BTreeSet::new(),
                expiry: BTreeSet::new(),
                seen_exp: BTreeSet::new(),
                next_slot: 1,
                next_seq: 1,
                bytes: 0,
                routing_state: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below checks before it changes anything, so a panic in a
        // caller's `update_routing` closure cannot leave the maps half-updated.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn stored_slot(&self, id: &BundleId) -> Option<u64> {
        match self.ids.get(id) {
            Some(&(_, slot)) if slot != 0 && self.records.contains_key(&slot) => Some(slot),
            _ => None,
        }
    }

    fn remove_slot(&mut self, slot: u64) -> Option<RecordInfo> {
        let (info, _) = self.records.remove(&slot)?;
        let m = &info.meta;
        self.prio.remove(&(inv_priority(m.priority), slot));
        self.dest.remove(&(dest_prefix(&m.destination), slot));
        if let Some(e) = m.expires_at {
            self.expiry.remove(&(e, slot));
        }
        self.bytes = self.bytes.saturating_sub(info.size);
        let t = match self.ids.get(&info.id) {
            Some(&(t, _)) => t,
            None => seen_time(m),
        };
        self.ids.insert(info.id, (t, 0));
        self.stored.remove(&info.id);
        self.seen_exp.insert((t, info.id));
        Some(info)
    }
}

impl Inner {
    /// Stores a record the caller checked (not a duplicate, within quotas, valid).
    fn put(&mut self, r: &NewRecord) {
        let slot = self.next_slot;
        self.next_slot += 1;
        let info = RecordInfo {
            id: r.id,
            insertion: slot,
            size: r.bytes.len() as u64,
            meta: r.meta.clone(),
        };
        self.prio.insert((inv_priority(info.meta.priority), slot));
        self.dest
            .insert((dest_prefix(&info.meta.destination), slot));
        if let Some(e) = info.meta.expires_at {
            self.expiry.insert((e, slot));
        }
        self.ids.insert(r.id, (seen_time(&info.meta), slot));
        self.stored.insert(r.id);
        self.bytes += info.size;
        self.records.insert(slot, (info, r.bytes.clone()));
    }

    fn remove_id(&mut self, id: &BundleId) -> bool {
        match self.stored_slot(id) {
            Some(slot) => self.remove_slot(slot).is_some(),
            None => false,
        }
    }

    fn mark_seen(&mut self, id: &BundleId, time: u64) {
        match self.ids.get(id).copied() {
            Some((t, slot)) if time > t => {
                self.ids.insert(*id, (time, slot));
                if slot == 0 {
                    self.seen_exp.remove(&(t, *id));
                    self.seen_exp.insert((time, *id));
                }
            }
            Some(_) => {}
            None => {
                self.ids.insert(*id, (time, 0));
                self.seen_exp.insert((time, *id));
            }
        }
    }

    /// Checks that `ops` would succeed (only inserts can fail: an invalid record, a
    /// quota), following what the earlier ops of the batch do, without changing
    /// anything.
    fn dry_run(&self, config: &StoreConfig, ops: &[WriteOp]) -> Result<(), StoreError> {
        let (mut count, mut bytes) = (self.records.len() as u64, self.bytes);
        // Stored by this batch (and still stored), with their sizes; removed by it;
        // newly marked seen by it.
        let mut added: HashMap<BundleId, u64> = HashMap::new();
        let mut gone: HashSet<BundleId> = HashSet::new();
        let mut marked: HashSet<BundleId> = HashSet::new();
        for op in ops {
            match op {
                WriteOp::Insert(r) => {
                    validate_routing(&r.id, &r.meta.routing)?;
                    let seen = added.contains_key(&r.id)
                        || gone.contains(&r.id)
                        || marked.contains(&r.id)
                        || self.ids.contains_key(&r.id);
                    if !seen {
                        let size = r.bytes.len() as u64;
                        check_quota(QuotaKind::Count, config.max_count, count, 1)?;
                        check_quota(QuotaKind::Bytes, config.max_bytes, bytes, size)?;
                        count += 1;
                        bytes += size;
                        added.insert(r.id, size);
                    }
                }
                WriteOp::Remove(id) => {
                    if let Some(size) = added.remove(id) {
                        count -= 1;
                        bytes -= size;
                        gone.insert(*id);
                    } else if !gone.contains(id) {
                        if let Some((info, _)) =
                            self.stored_slot(id).and_then(|s| self.records.get(&s))
                        {
                            count -= 1;
                            bytes = bytes.saturating_sub(info.size);
                            gone.insert(*id);
                        }
                    }
                }
                WriteOp::MarkSeen(id, _) => {
                    marked.insert(*id);
                }
                WriteOp::SetRoutingState(b) => validate_routing_state(b)?,
                WriteOp::Update(..) => {}
            }
        }
        Ok(())
    }
}

impl CustodyStore for MemStore {
    fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut g = self.lock();
        let mut outcomes = Vec::with_capacity(records.len());
        let mut in_batch = HashSet::new();
        let (mut new_count, mut new_bytes) = (0u64, 0u64);
        for r in records {
            validate_routing(&r.id, &r.meta.routing)?;
            let outcome = if in_batch.contains(&r.id) || g.stored_slot(&r.id).is_some() {
                InsertOutcome::Duplicate { still_stored: true }
            } else if g.ids.contains_key(&r.id) {
                InsertOutcome::Duplicate {
                    still_stored: false,
                }
            } else {
                in_batch.insert(r.id);
                new_count += 1;
                new_bytes = new_bytes.saturating_add(r.bytes.len() as u64);
                InsertOutcome::Inserted
            };
            outcomes.push(outcome);
        }
        let count = g.records.len() as u64;
        check_quota(QuotaKind::Count, self.config.max_count, count, new_count)?;
        check_quota(QuotaKind::Bytes, self.config.max_bytes, g.bytes, new_bytes)?;
        for (r, o) in records.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                g.put(r);
            }
        }
        Ok(outcomes)
    }

    fn get(&self, id: &BundleId) -> Result<Option<Record>, StoreError> {
        let g = self.lock();
        Ok(g.stored_slot(id).and_then(|s| {
            g.records.get(&s).map(|(info, bytes)| Record {
                info: info.clone(),
                bytes: bytes.clone(),
            })
        }))
    }

    fn get_info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError> {
        let g = self.lock();
        Ok(g.stored_slot(id)
            .and_then(|s| g.records.get(&s).map(|(info, _)| info.clone())))
    }

    fn contains(&self, id: &BundleId) -> Result<bool, StoreError> {
        Ok(self.lock().stored_slot(id).is_some())
    }

    fn remove(&self, id: &BundleId) -> Result<bool, StoreError> {
        Ok(self.lock().remove_id(id))
    }

    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<RoutingMeta, StoreError> {
        let mut g = self.lock();
        let slot = g.stored_slot(id).ok_or(StoreError::NotFound { id: *id })?;
        let mut routing = match g.records.get(&slot) {
            Some((info, _)) => info.meta.routing.clone(),
            None => return Err(StoreError::NotFound { id: *id }),
        };
        update(&mut routing);
        validate_routing(id, &routing)?;
        if let Some((info, _)) = g.records.get_mut(&slot) {
            info.meta.routing = routing.clone();
        }
        Ok(routing)
    }

    fn by_priority(
        &self,
        after: Option<PriorityCursor>,
        limit: usize,
    ) -> Result<Page<PriorityCursor>, StoreError> {
        let limit = page_limit(limit)?;
        let g = self.lock();
        let start = match after {
            Some(c) => std::ops::Bound::Excluded((c.inv_priority, c.insertion)),
            None => std::ops::Bound::Unbounded,
        };
        let keys: Vec<(u8, u64)> = g
            .prio
            .range((start, std::ops::Bound::Unbounded))
            .take(limit)
            .copied()
            .collect();
        let next = if keys.len() == limit {
            keys.last()
                .map(|&(inv_priority, insertion)| PriorityCursor {
                    inv_priority,
                    insertion,
                })
        } else {
            None
        };
        let items = keys
            .iter()
            .filter_map(|(_, s)| g.records.get(s).map(|(i, _)| i.clone()))
            .collect();
        Ok(Page {
            items,
            next,
            quarantined: Vec::new(),
        })
    }

    fn by_destination(
        &self,
        destination: &Destination,
        after: Option<DestinationCursor>,
        limit: usize,
    ) -> Result<Page<DestinationCursor>, StoreError> {
        let limit = page_limit(limit)?;
        let prefix = dest_prefix(destination);
        let from = match after {
            Some(c) if c.destination != *destination => {
                return Err(StoreError::InvalidArgument(
                    "cursor belongs to another destination",
                ))
            }
            Some(c) => c.insertion.checked_add(1),
            None => Some(0),
        };
        let g = self.lock();
        let slots: Vec<u64> = match from {
            Some(from) => g
                .dest
                .range((prefix, from)..=(prefix, u64::MAX))
                .take(limit)
                .map(|&(_, s)| s)
                .collect(),
            None => Vec::new(),
        };
        let next = if slots.len() == limit {
            slots.last().map(|&insertion| DestinationCursor {
                destination: *destination,
                insertion,
            })
        } else {
            None
        };
        let items = slots
            .iter()
            .filter_map(|s| g.records.get(s).map(|(i, _)| i.clone()))
            .collect();
        Ok(Page {
            items,
            next,
            quarantined: Vec::new(),
        })
    }

    fn purge_expired(&self, now: u64, limit: usize) -> Result<Vec<BundleId>, StoreError> {
        let limit = page_limit(limit)?;
        let mut g = self.lock();
        let slots: Vec<u64> = g
            .expiry
            .range(..=(now, u64::MAX))
            .take(limit)
            .map(|&(_, s)| s)
            .collect();
        Ok(slots
            .into_iter()
            .filter_map(|s| g.remove_slot(s).map(|i| i.id))
            .collect())
    }

    fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError> {
        Ok(self.lock().ids.contains_key(id))
    }

    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), StoreError> {
        self.lock().mark_seen(id, time);
        Ok(())
    }

    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut g = self.lock();
        // Check first, then apply: nothing below can fail once the dry run passed.
        g.dry_run(&self.config, ops)?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                WriteOp::Insert(r) => WriteOutcome::Inserted(if g.stored_slot(&r.id).is_some() {
                    InsertOutcome::Duplicate { still_stored: true }
                } else if g.ids.contains_key(&r.id) {
                    InsertOutcome::Duplicate {
                        still_stored: false,
                    }
                } else {
                    g.put(r);
                    InsertOutcome::Inserted
                }),
                WriteOp::Remove(id) => WriteOutcome::Removed(g.remove_id(id)),
                WriteOp::Update(id, edit) => WriteOutcome::Updated(
                    g.stored_slot(id)
                        .and_then(|slot| g.records.get_mut(&slot))
                        .map(|(info, _)| {
                            edit.apply(&mut info.meta.routing);
                            info.meta.routing.clone()
                        }),
                ),
                WriteOp::MarkSeen(id, t) => {
                    g.mark_seen(id, *t);
                    WriteOutcome::MarkedSeen
                }
                WriteOp::SetRoutingState(b) => {
                    g.routing_state = Some(b.clone());
                    WriteOutcome::RoutingStateSet
                }
            });
        }
        Ok(out)
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().expiry.iter().next().map(|(e, _)| *e))
    }

    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, StoreError> {
        let limit = page_limit(limit)?;
        let mut g = self.lock();
        let victims: Vec<(u64, BundleId)> = g
            .seen_exp
            .range(..(t, BundleId([0; 32])))
            .take(limit)
            .copied()
            .collect();
        for v in &victims {
            g.seen_exp.remove(v);
            g.ids.remove(&v.1);
        }
        Ok(victims.len() as u64)
    }

    fn routing_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().routing_state.clone())
    }

    fn reserve_sequence(&self, n: u64) -> Result<Range<u64>, StoreError> {
        if n == 0 {
            return Err(StoreError::InvalidArgument(
                "reserve at least one sequence number",
            ));
        }
        let mut g = self.lock();
        let start = g.next_seq;
        let end = start.checked_add(n).ok_or(StoreError::SequenceExhausted)?;
        g.next_seq = end;
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

    fn ids_after(&self, after: Option<&BundleId>, limit: usize) -> Result<IdPage, StoreError> {
        let limit = page_limit(limit)?;
        let g = self.lock();
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(*a),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = IdPage::default();
        for id in g.stored.range((start, std::ops::Bound::Unbounded)) {
            page.ids.push(*id);
            if page.ids.len() == limit {
                page.next = Some(*id);
                break;
            }
        }
        Ok(page)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let g = self.lock();
        Ok(StoreStats {
            count: g.records.len() as u64,
            bytes: g.bytes,
            max_count: self.config.max_count,
            max_bytes: self.config.max_bytes,
            quarantined: 0,
            quarantined_bytes: 0,
            seen: g.ids.len() as u64,
        })
    }
}

/// Refuses `requested` more when `used + requested` would pass `limit`.
pub(crate) fn check_quota(
    kind: QuotaKind,
    limit: u64,
    used: u64,
    requested: u64,
) -> Result<(), StoreError> {
    if requested > 0 && used.saturating_add(requested) > limit {
        return Err(StoreError::StoreFull {
            kind,
            limit,
            used,
            requested,
        });
    }
    Ok(())
}
