//! # ferry-storage
//!
//! The custody store: the bundles a Ferry node carries, their routing metadata, the
//! seen-set that deduplicates re-received copies, and the durable counter that hands
//! out bundle sequence numbers.
//!
//! Two implementations of one trait, [`CustodyStore`]:
//!
//! - [`LmdbStore`], durable, on LMDB (through heed). Bundle bytes live in LMDB, not
//!   in RAM: memory use does not grow with the number of records. Bundles of at
//!   least [`lmdb::FILE_MIN`] (1 MiB) are kept in payload files of their own next to
//!   LMDB, written and synced before the transaction that refers to them commits.
//! - [`MemStore`], in memory, for the simulator and tests. Same behaviour, no
//!   durability.
//!
//! ## Record model
//!
//! A [`NewRecord`] is a bundle id, the encoded bundle (`bytes`, stored as given) and a
//! [`BundleMeta`]: priority, destination, source, expiry, receive time and the
//! [`RoutingMeta`] the router rewrites (nodes known to hold a copy, spray copies
//! left, [`CustodyState`]). Stored, it gets an *insertion number* (unique, increasing,
//! never reused) and its size; listings return [`RecordInfo`]s (metadata without the
//! bytes), [`CustodyStore::get`] a [`Record`] with the bytes.
//!
//! In LMDB the metadata and the bundle bytes are separate tables, so routing updates
//! never rewrite a payload, and three indexes serve the listings: by priority
//! (highest first, then oldest insertion), by destination (oldest first) and by
//! expiry. Listings are paginated ([`Page`], cursors, a `limit` of at most
//! [`MAX_PAGE_LIMIT`]), so a million-record store is never read into memory at once.
//! The table layout is described in the [`lmdb`] module.
//!
//! ## Rules
//!
//! - **Duplicates**: inserting an id that is stored, or was stored and removed (the
//!   *seen-set*, which survives restarts), returns [`InsertOutcome::Duplicate`] and
//!   changes nothing. Seen entries of removed records carry a time (the record's
//!   `expires_at`, or its `received_at` without one) and are forgotten by
//!   [`CustodyStore::purge_seen_before`].
//! - **Quotas**: [`StoreConfig::max_bytes`] (bundle bytes) and
//!   [`StoreConfig::max_count`] (records). A batch whose new records would exceed
//!   either fails whole with [`StoreError::StoreFull`]; nothing is written.
//!   Quarantined records count until discarded.
//! - **Expiry**: a record with `expires_at <= now` is removed by
//!   [`CustodyStore::purge_expired`]; times are DTN seconds passed in by the caller
//!   (this crate reads no clock).
//! - **Corruption**: every record is encoded behind a version byte and a CRC-32
//!   (metadata: postcard; bundle bytes: a frame around the bytes; see [`record`]). A
//!   record that fails to decode is *quarantined*: moved to a quarantine table with
//!   the reason and its raw bytes, taken out of the indexes and reported —
//!   [`StoreError::Quarantined`] from `get`, [`Page::quarantined`] from listings, and
//!   [`CustodyStore::quarantined`] at any time. It is never a panic, and the other
//!   records stay usable.
//! - **Durability** ([`LmdbStore`]): LMDB's default sync flags; a write that returned
//!   `Ok` survives `SIGKILL` and power loss. A batch is one transaction: one commit
//!   (LMDB syncs the data file, then writes the meta page synchronously) for the
//!   whole batch; the payload files it writes are synced (data, then directory)
//!   before that commit, and those of records it removes are deleted after it. A
//!   file a crash leaves without a record is deleted when the store is next opened.
//!   The directory must be on a local file system (LMDB's locks do not work over a
//!   network one), and a path is open at most once per process at a time (a second
//!   [`LmdbStore::open`] returns [`StoreError::AlreadyOpen`]); several processes
//!   may share it. Optional data-file pre-allocation:
//!   [`LmdbStore::set_preallocation`].
//! - **Sequence numbers**: [`CustodyStore::reserve_sequence`] returns a range never
//!   returned before by this store, even across crashes; numbers start at 1.
//!
//! ## Sizing the LMDB map
//!
//! The map must hold the quotas with room for B-tree slack, indexes and LMDB's
//! copy-on-write pages: `map_size >= 2 × max_bytes + 1 KiB × max_count + 64 MiB`
//! ([`StoreConfig::required_map_size`], the default when `map_size` is `None`; a
//! smaller explicit value is refused). The defaults (1 GiB, 1,000,000 records) give a
//! 3.07 GiB map; the file grows only as data is written. On 32-bit targets the
//! defaults are 256 MiB and 250,000 records and the map must stay below 2 GiB.
//!
//! ## Example
//!
//! ```
//! use ferry_core::{BundleId, Destination, NodeHash, Priority};
//! use ferry_storage::{
//!     BundleMeta, CustodyStore, InsertOutcome, LmdbStore, NewRecord, RoutingMeta, StoreConfig,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = StoreConfig { max_bytes: 1 << 20, max_count: 1000, map_size: None };
//! let store = LmdbStore::open(dir.path().join("store"), config)?;
//!
//! let record = NewRecord {
//!     id: BundleId([1; 32]),
//!     bytes: b"an encoded bundle".to_vec(),
//!     meta: BundleMeta {
//!         priority: Priority::Expedited,
//!         destination: Destination::Node(NodeHash([2; 8])),
//!         source: NodeHash([3; 8]),
//!         expires_at: Some(1_000),
//!         received_at: 10,
//!         routing: RoutingMeta { copies_left: 4, ..RoutingMeta::default() },
//!     },
//! };
//! assert_eq!(store.insert(&record)?, InsertOutcome::Inserted);
//! assert!(matches!(store.insert(&record)?, InsertOutcome::Duplicate { .. }));
//!
//! // The router halves its spray copies when it hands some to node 9.
//! store.update_routing(&record.id, &mut |r| {
//!     r.copies_left /= 2;
//!     r.holders.push(NodeHash([9; 8]));
//! })?;
//!
//! let page = store.by_priority(None, 100)?;
//! assert_eq!(page.items[0].meta.routing.copies_left, 2);
//! assert_eq!(store.get(&record.id)?.unwrap().bytes, record.bytes);
//!
//! // Expired records go; their ids stay seen.
//! assert_eq!(store.purge_expired(1_000, 100)?, vec![record.id]);
//! assert!(store.is_seen(&record.id)?);
//! assert_eq!(store.reserve_sequence(10)?, 1..11);
//! # Ok(()) }
//! ```

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod lmdb;
pub mod mem;
pub mod record;
pub mod store;
pub mod types;

pub use error::{QuotaKind, StoreError};
pub use lmdb::LmdbStore;
pub use mem::MemStore;
pub use record::{decode_record, RecordError};
pub use store::{CustodyStore, IdPage};
/// The rules every store applies, for [`CustodyStore`] implementations outside this
/// crate (the simulator's).
pub use types::{
    page_limit, seen_time, validate_routing, validate_routing_state, MAX_ROUTING_STATE,
};
pub use types::{
    BundleMeta, CustodyState, DestinationCursor, InsertOutcome, NewRecord, Page, PriorityCursor,
    QuarantineEntry, QuarantinedRaw, Record, RecordInfo, RoutingEdit, RoutingMeta, StoreConfig,
    StoreStats, WriteOp, WriteOutcome, DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT, MAX_HOLDERS,
    MAX_PAGE_LIMIT,
};
