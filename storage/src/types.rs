//! The record model, configuration and the small value types of the store API.

use ferry_core::{BundleId, Destination, NodeHash, Priority};

use crate::error::StoreError;

/// Most nodes a record's [`RoutingMeta::holders`] may list.
pub const MAX_HOLDERS: usize = 64;

/// Largest page any listing returns; larger `limit`s are clamped to it.
pub const MAX_PAGE_LIMIT: usize = 65_536;

/// What this node's custody of a bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CustodyState {
    /// A copy carried without custody (e.g. one of several spray copies).
    #[default]
    Carried,
    /// This node holds custody: it must keep the bundle until custody moves on.
    Held,
    /// Custody was offered to `to` at `since` (DTN seconds) and awaits acceptance.
    InTransit {
        /// The node custody was offered to.
        to: NodeHash,
        /// When it was offered (DTN seconds).
        since: u64,
    },
    /// The bundle reached its destination; kept only until the router removes it.
    Delivered,
}

/// Routing state of a stored bundle: the part the router rewrites.
///
/// Kept in the metadata table, apart from the bundle bytes, so updating it never
/// rewrites the payload.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct RoutingMeta {
    /// Nodes known to already hold a copy (at most [`MAX_HOLDERS`]).
    pub holders: Vec<NodeHash>,
    /// Copies this node may still hand out (spray-and-wait budget).
    pub copies_left: u32,
    /// This node's custody of the bundle.
    pub custody: CustodyState,
}

// By hand so that `clone_from` reuses the holder list's allocation (the router
// reads a record's metadata into one scratch value per scan).
impl Clone for RoutingMeta {
    fn clone(&self) -> Self {
        Self {
            holders: self.holders.clone(),
            copies_left: self.copies_left,
            custody: self.custody,
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.holders.clone_from(&source.holders);
        self.copies_left = source.copies_left;
        self.custody = source.custody;
    }
}

/// Metadata given with a new record: what indexes and routing need, so the bundle
/// bytes never have to be decoded to schedule it.
#[derive(Debug, PartialEq, Eq)]
pub struct BundleMeta {
    /// Scheduling priority (priority index).
    pub priority: Priority,
    /// Destination (destination index).
    pub destination: Destination,
    /// The source node's hash.
    pub source: NodeHash,
    /// When the bundle expires (DTN seconds); `None` never expires (expiry index).
    pub expires_at: Option<u64>,
    /// When this node received it (DTN seconds).
    pub received_at: u64,
    /// Routing state.
    pub routing: RoutingMeta,
}

// By hand so that `clone_from` reuses the holder list's allocation.
impl Clone for BundleMeta {
    fn clone(&self) -> Self {
        Self {
            priority: self.priority,
            destination: self.destination,
            source: self.source,
            expires_at: self.expires_at,
            received_at: self.received_at,
            routing: self.routing.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.priority = source.priority;
        self.destination = source.destination;
        self.source = source.source;
        self.expires_at = source.expires_at;
        self.received_at = source.received_at;
        self.routing.clone_from(&source.routing);
    }
}

/// A record to insert: the encoded bundle and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The bundle's id (the store's key).
    pub id: BundleId,
    /// The encoded bundle, stored as given.
    pub bytes: Vec<u8>,
    /// Metadata.
    pub meta: BundleMeta,
}

/// A stored record's metadata, as listings return it (without the bundle bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// The bundle's id.
    pub id: BundleId,
    /// Insertion number: unique in this store, increasing, never reused. Orders
    /// records "oldest first" within a priority or a destination.
    pub insertion: u64,
    /// Length of the bundle bytes.
    pub size: u64,
    /// Metadata, with the current routing state.
    pub meta: BundleMeta,
}

/// A stored record with its bundle bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Metadata.
    pub info: RecordInfo,
    /// The encoded bundle, as inserted.
    pub bytes: Vec<u8>,
}

/// What an insert did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsertOutcome {
    /// The record is now stored.
    Inserted,
    /// The id was already stored or seen; nothing was written for it and quotas are
    /// unchanged.
    Duplicate {
        /// `true` if a record with this id is stored now (possibly by an earlier
        /// record of the same batch); `false` if it was stored once and removed (a
        /// seen-set hit).
        still_stored: bool,
    },
}

/// One change to a stored record's [`RoutingMeta`], for [`WriteOp::Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingEdit {
    /// Records a node as holding a copy: nothing if it is listed already; past
    /// [`MAX_HOLDERS`] the oldest entry makes room.
    AddHolder(NodeHash),
    /// Deducts spray copies handed out (saturating at zero).
    SpendCopies(u32),
    /// Sets this node's custody state.
    SetCustody(CustodyState),
}

impl RoutingEdit {
    /// Applies the edit to `routing` (what [`WriteOp::Update`] does in the store).
    pub fn apply(&self, routing: &mut RoutingMeta) {
        match *self {
            RoutingEdit::AddHolder(node) => routing.add_holder(node),
            RoutingEdit::SpendCopies(n) => {
                routing.copies_left = routing.copies_left.saturating_sub(n)
            }
            RoutingEdit::SetCustody(c) => routing.custody = c,
        }
    }
}

impl RoutingMeta {
    /// Records `node` as a holder: nothing if it is listed already; past
    /// [`MAX_HOLDERS`] the oldest entry makes room.
    pub fn add_holder(&mut self, node: NodeHash) {
        if !self.holders.contains(&node) {
            if self.holders.len() >= MAX_HOLDERS {
                self.holders.remove(0);
            }
            self.holders.push(node);
        }
    }
}

/// One write of a [`CustodyStore::apply_batch`](crate::CustodyStore::apply_batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Inserts a record, as [`CustodyStore::insert_batch`](crate::CustodyStore::insert_batch)
    /// does (duplicates, quotas and validation alike).
    Insert(NewRecord),
    /// Removes a record, keeping its id in the seen-set, as
    /// [`CustodyStore::remove`](crate::CustodyStore::remove) does.
    Remove(BundleId),
    /// Edits a stored record's routing metadata (the bundle bytes are not
    /// rewritten). A record that is not stored is left alone.
    Update(BundleId, RoutingEdit),
    /// Adds an id to the seen-set, as [`CustodyStore::mark_seen`](crate::CustodyStore::mark_seen) does.
    MarkSeen(BundleId, u64),
    /// Replaces the routing policy's saved state (opaque bytes, at most
    /// [`MAX_ROUTING_STATE`]), read back by
    /// [`CustodyStore::routing_state`](crate::CustodyStore::routing_state).
    SetRoutingState(Vec<u8>),
}

/// What one [`WriteOp`] did, in the order of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// [`WriteOp::Insert`]: inserted or a duplicate.
    Inserted(InsertOutcome),
    /// [`WriteOp::Remove`]: whether a record was stored.
    Removed(bool),
    /// [`WriteOp::Update`]: the new routing state; `None` if the record is not
    /// stored (or was found unreadable and moved to quarantine by this batch).
    Updated(Option<RoutingMeta>),
    /// [`WriteOp::MarkSeen`].
    MarkedSeen,
    /// [`WriteOp::SetRoutingState`].
    RoutingStateSet,
}

/// Position after which [`CustodyStore::by_priority`](crate::CustodyStore::by_priority)
/// continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PriorityCursor {
    /// 255 − priority, so that ascending order is highest priority first.
    pub(crate) inv_priority: u8,
    pub(crate) insertion: u64,
}

impl PriorityCursor {
    /// The insertion number of the last record of the page this cursor ends.
    pub fn insertion(&self) -> u64 {
        self.insertion
    }

    /// A cursor positioned at the record of `priority` with this insertion number,
    /// for [`CustodyStore`](crate::CustodyStore) implementations outside this crate.
    pub fn new(priority: Priority, insertion: u64) -> Self {
        Self {
            inv_priority: 255 - priority as u8,
            insertion,
        }
    }

    /// The priority of the record this cursor is positioned at, as `255 − priority`
    /// (ascending is the listing order).
    pub fn inv_priority(&self) -> u8 {
        self.inv_priority
    }
}

/// Position after which [`CustodyStore::by_destination`](crate::CustodyStore::by_destination)
/// continues; only valid for the destination it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestinationCursor {
    pub(crate) destination: Destination,
    pub(crate) insertion: u64,
}

impl DestinationCursor {
    /// The insertion number of the last record of the page this cursor ends.
    pub fn insertion(&self) -> u64 {
        self.insertion
    }

    /// A cursor positioned at the record of `destination` with this insertion
    /// number, for [`CustodyStore`](crate::CustodyStore) implementations outside
    /// this crate.
    pub fn new(destination: Destination, insertion: u64) -> Self {
        Self {
            destination,
            insertion,
        }
    }

    /// The destination this cursor belongs to.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<C> {
    /// Records of this page, in listing order.
    pub items: Vec<RecordInfo>,
    /// Where the next page starts; `None` when the listing is complete. A page may
    /// hold fewer than `limit` items and still have a `next` (index entries that
    /// turned out unreadable count towards the limit), so loop on `next`.
    pub next: Option<C>,
    /// Records found unreadable while reading this page and moved to quarantine.
    pub quarantined: Vec<QuarantineEntry>,
}

/// A quarantined record: one that failed to decode when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// The record's insertion number (the quarantine table's key).
    pub insertion: u64,
    /// The bundle id, when it could still be recovered.
    pub id: Option<BundleId>,
    /// Why the record could not be read.
    pub reason: String,
    /// Raw bytes kept (metadata plus bundle), for inspection.
    pub raw_len: u64,
}

/// The raw bytes kept for a quarantined record (see [`LmdbStore::quarantined_raw`]).
///
/// [`LmdbStore::quarantined_raw`]: crate::LmdbStore::quarantined_raw
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRaw {
    /// The metadata record as found (empty if it was missing).
    pub meta: Vec<u8>,
    /// The bundle blob as found, frame included (empty if it was missing).
    pub blob: Vec<u8>,
}

/// Store statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Records stored (not counting quarantined ones).
    pub count: u64,
    /// Bundle bytes stored (not counting quarantined ones).
    pub bytes: u64,
    /// The count quota.
    pub max_count: u64,
    /// The byte quota.
    pub max_bytes: u64,
    /// Records in quarantine.
    pub quarantined: u64,
    /// Raw bytes held in quarantine.
    pub quarantined_bytes: u64,
    /// Ids in the seen-set (stored records plus remembered removed ones).
    pub seen: u64,
}

/// Default byte quota: 1 GiB (256 MiB on 32-bit targets).
#[cfg(target_pointer_width = "64")]
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default byte quota: 1 GiB (256 MiB on 32-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Default count quota: 1,000,000 records (250,000 on 32-bit targets).
#[cfg(target_pointer_width = "64")]
pub const DEFAULT_MAX_COUNT: u64 = 1_000_000;
/// Default count quota: 1,000,000 records (250,000 on 32-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const DEFAULT_MAX_COUNT: u64 = 250_000;

/// Map size allowed per stored bundle byte (B-tree pages can be half empty).
pub const MAP_BYTES_PER_BYTE: u64 = 2;
/// Map size allowed per record for its metadata and index entries.
pub const MAP_BYTES_PER_RECORD: u64 = 1024;
/// Fixed map headroom for LMDB's free list, copy-on-write pages and bookkeeping.
pub const MAP_HEADROOM: u64 = 64 << 20;
/// Largest map size on 32-bit targets (below 2 GiB of address space).
pub const MAX_MAP_SIZE_32BIT: u64 = (2 << 30) - (64 << 20);
const MAP_ALIGN: u64 = 64 << 10;

/// Store configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Byte quota: most bundle bytes held (default [`DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
    /// Count quota: most records held (default [`DEFAULT_MAX_COUNT`]).
    pub max_count: u64,
    /// LMDB map size; `None` uses [`StoreConfig::required_map_size`]. An explicit
    /// size smaller than that is refused. Ignored by [`MemStore`](crate::MemStore).
    pub map_size: Option<usize>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_count: DEFAULT_MAX_COUNT,
            map_size: None,
        }
    }
}

impl StoreConfig {
    /// The smallest map size these quotas need:
    /// `2 × max_bytes + 1 KiB × max_count + 64 MiB`, rounded up to 64 KiB.
    ///
    /// Bundle bytes may take up to twice their size in B-tree and overflow pages;
    /// each record's metadata and its four index entries stay well under 1 KiB even
    /// in half-full pages; the 64 MiB cover LMDB's free list, the copy-on-write pages
    /// of the largest transaction and the quarantine. Saturates at `u64::MAX`.
    pub fn required_map_size(&self) -> u64 {
        let need = self
            .max_bytes
            .saturating_mul(MAP_BYTES_PER_BYTE)
            .saturating_add(self.max_count.saturating_mul(MAP_BYTES_PER_RECORD))
            .saturating_add(MAP_HEADROOM);
        need.div_ceil(MAP_ALIGN).saturating_mul(MAP_ALIGN)
    }

    /// Checks the configuration and returns the map size to open LMDB with.
    pub fn effective_map_size(&self) -> Result<usize, StoreError> {
        if self.max_bytes == 0 || self.max_count == 0 {
            return Err(StoreError::InvalidConfig(
                "max_bytes and max_count must be at least 1".into(),
            ));
        }
        let required = self.required_map_size();
        let size = match self.map_size {
            None => required,
            Some(s) => {
                let s = (s as u64).div_ceil(MAP_ALIGN).saturating_mul(MAP_ALIGN);
                if s < required {
                    return Err(StoreError::InvalidConfig(format!(
                        "map_size {s} is below the {required} bytes these quotas need \
                         (2 x max_bytes + 1 KiB x max_count + 64 MiB)"
                    )));
                }
                s
            }
        };
        let limit = if cfg!(target_pointer_width = "64") {
            u64::MAX / 2
        } else {
            MAX_MAP_SIZE_32BIT
        };
        if size > limit {
            return Err(StoreError::InvalidConfig(format!(
                "map size {size} exceeds this target's limit of {limit} bytes; lower the quotas"
            )));
        }
        usize::try_from(size)
            .map_err(|_| StoreError::InvalidConfig(format!("map size {size} does not fit usize")))
    }
}

/// Clamps a page limit, refusing zero (every listing of a [`crate::CustodyStore`]).
pub fn page_limit(limit: usize) -> Result<usize, StoreError> {
    if limit == 0 {
        return Err(StoreError::InvalidArgument("page limit must be at least 1"));
    }
    Ok(limit.min(MAX_PAGE_LIMIT))
}

/// Checks a new record against the store's rules (every [`crate::CustodyStore`]).
pub fn validate_routing(id: &BundleId, routing: &RoutingMeta) -> Result<(), StoreError> {
    if routing.holders.len() > MAX_HOLDERS {
        return Err(StoreError::InvalidRecord {
            id: *id,
            reason: "more than MAX_HOLDERS (64) holders",
        });
    }
    Ok(())
}

/// Largest routing-policy state a store keeps ([`WriteOp::SetRoutingState`]).
pub const MAX_ROUTING_STATE: usize = 256 * 1024;

/// Checks a routing-policy state against the store's size rule (every
/// [`crate::CustodyStore`]).
pub fn validate_routing_state(state: &[u8]) -> Result<(), StoreError> {
    if state.len() > MAX_ROUTING_STATE {
        return Err(StoreError::InvalidArgument(
            "routing state larger than MAX_ROUTING_STATE (256 KiB)",
        ));
    }
    Ok(())
}

/// The time a removed record stays in the seen-set: its expiry, or without one its
/// receive time.
pub fn seen_time(meta: &BundleMeta) -> u64 {
    meta.expires_at.unwrap_or(meta.received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_size_follows_the_rule() {
        let c = StoreConfig::default();
        let m = c.effective_map_size().unwrap() as u64;
        assert!(m >= 2 * c.max_bytes + 1024 * c.max_count + MAP_HEADROOM);
        assert_eq!(m % MAP_ALIGN, 0);
        if cfg!(target_pointer_width = "32") {
            assert!(m < 2 << 30);
        }
    }

    #[test]
    fn too_small_map_and_zero_quotas_are_refused() {
        let c = StoreConfig {
            map_size: Some(1 << 20),
            ..StoreConfig::default()
        };
        assert!(matches!(
            c.effective_map_size(),
            Err(StoreError::InvalidConfig(_))
        ));
        let z = StoreConfig {
            max_count: 0,
            ..StoreConfig::default()
        };
        assert!(matches!(
            z.effective_map_size(),
            Err(StoreError::InvalidConfig(_))
        ));
        let big = StoreConfig {
            max_bytes: u64::MAX,
            ..StoreConfig::default()
        };
        assert!(matches!(
            big.effective_map_size(),
            Err(StoreError::InvalidConfig(_))
        ));
        let explicit = StoreConfig {
            max_bytes: 1 << 20,
            max_count: 100,
            map_size: Some((256 << 20) + 1),
        };
        assert_eq!(
            explicit.effective_map_size().unwrap(),
            (256 << 20) + (64 << 10)
        );
    }

    #[test]
    fn page_limits() {
        assert!(page_limit(0).is_err());
        assert_eq!(page_limit(5).unwrap(), 5);
        assert_eq!(page_limit(usize::MAX).unwrap(), MAX_PAGE_LIMIT);
    }
}
