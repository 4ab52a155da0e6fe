//! Deferred store writes: removes, routing edits and seen marks are queued and
//! applied with the next commit (one `apply_batch`, one LMDB transaction), at the
//! latest [`super::EngineConfig::commit_delay`] after the first was queued.
//!
//! Everything the engine reads goes through the helpers here, which lay the queued
//! writes over what the store returns, so the engine always sees its own writes.

use ferry_core::BundleId;
use ferry_storage::{
    CustodyStore, IdPage, Record, RecordInfo, RoutingEdit, StoreError, WriteOp, WriteOutcome,
};

use super::{Engine, EngineError};

/// Queued writes above which they are committed at once (bounds the queue).
pub const MAX_QUEUED_WRITES: usize = 4096;

/// Entries the write queue and its overlay keep room for between commits.
const KEPT_CAPACITY: usize = 16;

/// What the queued writes do to one id.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// A remove is queued: the record is gone (its id seen).
    removed: bool,
    /// A seen mark is queued.
    seen: bool,
    /// Routing edits queued, in order.
    edits: Vec<RoutingEdit>,
}

/// The queued writes and their overlay.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    ops: Vec<WriteOp>,
    /// Looked up only, never walked in order; cleared at every commit, keeping
    /// its table unless a burst grew it past [`KEPT_CAPACITY`].
    overlay: super::FastMap<BundleId, Overlay>,
    since: Option<super::Millis>,
}

impl Writes {
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn since(&self) -> Option<super::Millis> {
        self.since
    }

    /// Takes the queued ops, leaving the queue empty.
    pub(crate) fn take(&mut self) -> Vec<WriteOp> {
        self.since = None;
        if self.overlay.capacity() > KEPT_CAPACITY {
            // A burst's table is let go: a simulator runs thousands of engines.
            self.overlay = super::FastMap::default();
        } else {
            self.overlay.clear();
        }
        std::mem::take(&mut self.ops)
    }

    /// Queues the removal of `id` at `now` (edits queued for it are dropped).
    pub(crate) fn push_remove(&mut self, id: BundleId, now: super::Millis) {
        let o = self.overlay.entry(id).or_default();
        o.removed = true;
        o.edits.clear();
        self.since.get_or_insert(now);
        self.ops.push(WriteOp::Remove(id));
    }

    pub(crate) fn removed(&self, id: &BundleId) -> bool {
        self.overlay.get(id).is_some_and(|o| o.removed)
    }

    /// Applies the queued edits of `info`'s id to it.
    fn patch(&self, info: &mut RecordInfo) {
        if let Some(o) = self.overlay.get(&info.id) {
            for e in &o.edits {
                e.apply(&mut info.meta.routing);
            }
        }
    }
}

/// Held ids after `after`, without those whose removal is queued.
pub(crate) fn ids_after<S: CustodyStore + ?Sized>(
    store: &S,
    writes: &Writes,
    after: Option<&BundleId>,
    limit: usize,
) -> Result<IdPage, StoreError> {
    let mut page = store.ids_after(after, limit)?;
    if !writes.overlay.is_empty() {
        page.ids.retain(|id| !writes.removed(id));
    }
    Ok(page)
}

impl<S: CustodyStore> Engine<S> {
    fn queue_op(&mut self, op: WriteOp) {
        self.writes.since.get_or_insert(self.now);
        self.writes.ops.push(op);
    }

    /// Queues a routing edit of a stored record (nothing if its removal is queued).
    pub(crate) fn queue_edit(&mut self, id: BundleId, edit: RoutingEdit) {
        let o = self.writes.overlay.entry(id).or_default();
        if o.removed {
            return;
        }
        o.edits.push(edit);
        self.queue_op(WriteOp::Update(id, edit));
    }

    /// Queues the removal of a record. Returns whether it is stored (as the engine
    /// sees it: not already being removed), i.e. whether this removes it.
    pub(crate) fn queue_remove(&mut self, id: &BundleId) -> Result<bool, StoreError> {
        if self.writes.removed(id) || !self.store.contains(id)? {
            return Ok(false);
        }
        self.writes.push_remove(*id, self.now);
        Ok(true)
    }

    /// Queues a seen mark.
    pub(crate) fn queue_mark_seen(&mut self, id: BundleId, time: u64) {
        self.writes.overlay.entry(id).or_default().seen = true;
        self.queue_op(WriteOp::MarkSeen(id, time));
    }

    /// Queues the routing policy's state (replacing one already queued), if it has
    /// state and [`super::EngineConfig::persist_routing`] is on.
    pub(crate) fn queue_routing_state(&mut self) {
        if !self.config.persist_routing {
            return;
        }
        let wall = self.wall.map(|w| u64::from(w.0));
        let Some(state) = self.policy.save_state(self.now, wall) else {
            return;
        };
        self.writes
            .ops
            .retain(|op| !matches!(op, WriteOp::SetRoutingState(_)));
        self.queue_op(WriteOp::SetRoutingState(state));
    }

    /// Restores the routing policy's state saved by an earlier run, once (the first
    /// call). A state that does not decode is dropped (the policy starts empty and
    /// the next save replaces it): it only steers routing, it holds no custody.
    pub(crate) fn restore_routing(&mut self) -> Result<(), EngineError> {
        if self.routing_restored {
            return Ok(());
        }
        self.routing_restored = true;
        if !self.config.persist_routing {
            return Ok(());
        }
        if let Some(bytes) = self.store.routing_state()? {
            let wall = self.wall.map(|w| u64::from(w.0));
            if self.policy.restore_state(&bytes, self.now, wall).is_err() {
                self.stats.routing_state_dropped += 1;
            }
        }
        Ok(())
    }

    /// A record's metadata, with the queued writes applied; a quarantined record
    /// counts as absent.
    pub(crate) fn info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError> {
        if self.writes.removed(id) {
            return Ok(None);
        }
        match self.store.get_info(id) {
            Ok(Some(mut info)) => {
                self.writes.patch(&mut info);
                Ok(Some(info))
            }
            Err(StoreError::Quarantined { .. }) => Ok(None),
            other => other,
        }
    }

    /// [`Engine::info`] into `info` (reusing its allocations); `false` if absent.
    pub(crate) fn info_into(
        &self,
        id: &BundleId,
        info: &mut RecordInfo,
    ) -> Result<bool, StoreError> {
        if self.writes.removed(id) {
            return Ok(false);
        }
        match self.store.get_info_into(id, info) {
            Ok(true) => {
                self.writes.patch(info);
                Ok(true)
            }
            Ok(false) | Err(StoreError::Quarantined { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A record with its bytes, with the queued writes applied.
    pub(crate) fn record(&self, id: &BundleId) -> Result<Option<Record>, StoreError> {
        if self.writes.removed(id) {
            return Ok(None);
        }
        let mut rec = self.store.get(id)?;
        if let Some(r) = rec.as_mut() {
            self.writes.patch(&mut r.info);
        }
        Ok(rec)
    }

    /// Whether an id is stored or seen, counting the queued writes.
    pub(crate) fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError> {
        if self
            .writes
            .overlay
            .get(id)
            .is_some_and(|o| o.removed || o.seen)
        {
            return Ok(true);
        }
        self.store.is_seen(id)
    }

    /// Listing entries with the queued writes applied (removed ones left out).
    pub(crate) fn patch_listing(&self, items: &mut Vec<RecordInfo>) {
        if self.writes.overlay.is_empty() {
            return;
        }
        items.retain(|i| !self.writes.removed(&i.id));
        for i in items.iter_mut() {
            self.writes.patch(i);
        }
    }

    /// Commits the queued writes alone (one transaction). On failure they are
    /// dropped: each only releases or annotates a copy, so losing one causes at
    /// worst a re-offer or a redelivery.
    pub(crate) fn flush_writes(&mut self) -> Result<(), EngineError> {
        if self.writes.ops.is_empty() {
            return Ok(());
        }
        let mut ops = self.writes.take();
        self.stats.commits += 1;
        self.stats.write_batches += 1;
        let result = self.store.apply_batch(&ops);
        let n = ops.len();
        // The queue's buffer is kept for the next writes (unless a burst grew it).
        ops.clear();
        if self.writes.ops.capacity() == 0 && ops.capacity() <= KEPT_CAPACITY {
            self.writes.ops = ops;
        }
        let out: Vec<WriteOutcome> = result?;
        debug_assert_eq!(out.len(), n);
        Ok(())
    }
}
