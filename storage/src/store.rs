//! The store trait both implementations share.

use std::ops::Range;

use ferry_core::{BundleId, Destination};

use crate::error::StoreError;
use crate::types::{
    DestinationCursor, InsertOutcome, NewRecord, Page, PriorityCursor, QuarantineEntry, Record,
    RecordInfo, RoutingMeta, StoreStats, WriteOp, WriteOutcome,
};

/// A custody store: bundles, their routing metadata, a seen-set for deduplication and
/// a durable sequence counter.
///
/// Every method is one atomic operation (one LMDB transaction in [`LmdbStore`]); a
/// failed call changes nothing. Methods take `&self`: stores are `Send + Sync` and can
/// be shared between threads.
///
/// [`LmdbStore`]: crate::LmdbStore
pub trait CustodyStore: Send + Sync + std::fmt::Debug {
    /// Inserts one record (a batch of one).
    fn insert(&self, record: &NewRecord) -> Result<InsertOutcome, StoreError> {
        let mut out = self.insert_batch(std::slice::from_ref(record))?;
        out.pop().ok_or(StoreError::Corrupt(
            "insert_batch returned no outcome".into(),
        ))
    }

    /// Inserts records in one transaction (one commit, so one group of syncs, for the
    /// whole batch). Returns one outcome per record, in order.
    ///
    /// All or nothing: if the records that are not duplicates would exceed a quota,
    /// the call fails with [`StoreError::StoreFull`] and writes nothing; an invalid
    /// record fails the batch with [`StoreError::InvalidRecord`]. An id already
    /// stored, already seen, or repeated within the batch is a
    /// [`InsertOutcome::Duplicate`], written once and counted once.
    fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<InsertOutcome>, StoreError>;

    /// The record with its bundle bytes; `Ok(None)` if not stored.
    ///
    /// A record that fails to decode is moved to quarantine and reported as
    /// [`StoreError::Quarantined`] (by this and every later `get` of the id, until a
    /// fresh copy is inserted or the quarantine entry is discarded).
    fn get(&self, id: &BundleId) -> Result<Option<Record>, StoreError>;

    /// The record's metadata only (the bundle bytes are not read); quarantines like
    /// [`CustodyStore::get`].
    fn get_info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError>;

    /// [`CustodyStore::get_info`] into `info`, for stores that can reuse its holder
    /// list's allocation (a scan reads many records into one value). Returns whether
    /// a record with this id is stored; if not, `info` is left as it was.
    fn get_info_into(&self, id: &BundleId, info: &mut RecordInfo) -> Result<bool, StoreError> {
        Ok(match self.get_info(id)? {
            Some(found) => {
                *info = found;
                true
            }
            None => false,
        })
    }

    /// Whether a record with this id is stored.
    fn contains(&self, id: &BundleId) -> Result<bool, StoreError>;

    /// Removes a record, keeping its id in the seen-set. Returns whether it was stored.
    fn remove(&self, id: &BundleId) -> Result<bool, StoreError>;

    /// Updates a stored record's routing metadata: `update` is called once with the
    /// current value and what it leaves is written back (the bundle bytes are not
    /// rewritten). Returns the new value; [`StoreError::NotFound`] if not stored.
    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<RoutingMeta, StoreError>;

    /// Applies several writes in one transaction (one commit, so one group of syncs,
    /// for the whole batch), in order: each op sees the effect of those before it.
    /// Returns one outcome per op, in order.
    ///
    /// All or nothing: if any op fails (an insert over a quota, an invalid record, a
    /// store error), the call returns that error and nothing is written. Removing or
    /// updating a record that is not stored is not an error (`Removed(false)`,
    /// `Updated(None)`); a record found unreadable by a remove or an update is
    /// quarantined as part of the batch. Quotas are checked op by op, so a remove
    /// earlier in the batch makes room for a later insert.
    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError>;

    /// Stored records, highest priority first, then oldest insertion first; at most
    /// `limit` index entries per call, continuing after `after`.
    fn by_priority(
        &self,
        after: Option<PriorityCursor>,
        limit: usize,
    ) -> Result<Page<PriorityCursor>, StoreError>;

    /// Stored records for one destination, oldest insertion first; paginated like
    /// [`CustodyStore::by_priority`]. A cursor from another destination is refused.
    fn by_destination(
        &self,
        destination: &Destination,
        after: Option<DestinationCursor>,
        limit: usize,
    ) -> Result<Page<DestinationCursor>, StoreError>;

    /// Removes up to `limit` records with `expires_at <= now` (earliest expiry first)
    /// and returns their ids. Their ids stay in the seen-set. Call again while it
    /// returns `limit` ids.
    fn purge_expired(&self, now: u64, limit: usize) -> Result<Vec<BundleId>, StoreError>;

    /// Whether inserting this id now would report a duplicate (stored or seen).
    fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError>;

    /// Adds an id to the seen-set without storing anything (e.g. a bundle delivered
    /// locally), remembered until `purge_seen_before(t)` with `t > time`. For an id
    /// already seen the later of the two times is kept.
    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), StoreError>;

    /// The earliest `expires_at` among stored bundles (DTN seconds), `None` if no
    /// stored bundle has one. May be earlier than the truth (an entry the next
    /// `purge_expired` cleans up), never later: the engine schedules its next purge
    /// by it.
    fn next_expiry(&self) -> Result<Option<u64>, StoreError>;

    /// Forgets up to `limit` seen-set entries of records no longer stored whose time
    /// is before `t` (a removed record's time is its `expires_at`, or without one its
    /// `received_at`). Returns how many were forgotten; call again while it returns
    /// `limit`.
    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, StoreError>;

    /// Reserves `n ≥ 1` sequence numbers: a range never returned before by this store
    /// (for [`LmdbStore`](crate::LmdbStore): across restarts and crashes, as the range
    /// is committed durably before it is returned). Numbers start at 1.
    fn reserve_sequence(&self, n: u64) -> Result<Range<u64>, StoreError>;

    /// The routing policy's state last written by [`WriteOp::SetRoutingState`]
    /// (for [`LmdbStore`](crate::LmdbStore): as committed, across restarts).
    fn routing_state(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Quarantined records, by insertion number, after `after`, at most `limit`.
    fn quarantined(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, StoreError>;

    /// Deletes a quarantine entry (and frees its space). Returns whether it existed.
    fn discard_quarantined(&self, insertion: u64) -> Result<bool, StoreError>;

    /// Counts, sizes and quotas.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Ids of stored records (not seen-only ones) in ascending byte order, strictly
    /// after `after` (from the smallest when `None`). At most `limit` id-index
    /// entries are examined per call (seen-only entries are skipped but counted), so
    /// a page may hold fewer than `limit` ids and still have a `next`: loop on
    /// `next`. The router's set reconciliation walks held ids in this order.
    ///
    /// The default implementation pages through [`CustodyStore::by_priority`] and
    /// sorts, which costs O(n log n) per call; [`MemStore`](crate::MemStore) and
    /// [`LmdbStore`](crate::LmdbStore) override it with an ordered index scan.
    fn ids_after(&self, after: Option<&BundleId>, limit: usize) -> Result<IdPage, StoreError> {
        let limit = crate::types::page_limit(limit)?;
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.by_priority(cursor, crate::types::MAX_PAGE_LIMIT)?;
            all.extend(
                page.items
                    .iter()
                    .map(|i| i.id)
                    .filter(|id| after.is_none_or(|a| id > a)),
            );
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        all.sort_unstable();
        all.dedup();
        let next = (all.len() > limit).then(|| all[limit - 1]);
        all.truncate(limit);
        Ok(IdPage { ids: all, next })
    }
}

/// One page of [`CustodyStore::ids_after`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdPage {
    /// Stored ids, ascending.
    pub ids: Vec<BundleId>,
    /// Pass as `after` to continue; `None` when the listing is complete.
    pub next: Option<BundleId>,
}
