//! The store's one error type.

use std::path::PathBuf;

use ferry_core::BundleId;

use crate::record::RecordError;

/// Which quota a refused insert would have exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// [`StoreConfig::max_bytes`](crate::StoreConfig::max_bytes): bundle bytes held.
    Bytes,
    /// [`StoreConfig::max_count`](crate::StoreConfig::max_count): records held.
    Count,
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bytes => "byte",
            Self::Count => "count",
        })
    }
}

/// Everything a store operation can fail with.
///
/// No variant is fatal to the store: after any error the store stays usable, and
/// the operation that failed left the store as it was before the call (every write is
/// one transaction).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The insert (or the whole batch) would exceed a quota; nothing was written.
    ///
    /// `used` includes quarantined records, which occupy space until they are
    /// discarded with [`CustodyStore::discard_quarantined`](crate::CustodyStore::discard_quarantined).
    #[error("store full: {kind} quota is {limit}, {used} used, {requested} more requested")]
    StoreFull {
        /// The quota that would be exceeded.
        kind: QuotaKind,
        /// The quota.
        limit: u64,
        /// What is held now.
        used: u64,
        /// What the refused operation would have added.
        requested: u64,
    },
    /// The record was unreadable and has been moved to quarantine (see
    /// [`CustodyStore::quarantined`](crate::CustodyStore::quarantined)).
    #[error("record {id} is quarantined: {reason}")]
    Quarantined {
        /// The record's id.
        id: BundleId,
        /// Why it could not be read.
        reason: String,
    },
    /// No record with this id is stored.
    #[error("no stored record {id}")]
    NotFound {
        /// The id asked for.
        id: BundleId,
    },
    /// A record given to the store breaks one of its rules (e.g. too many holders).
    #[error("invalid record {id}: {reason}")]
    InvalidRecord {
        /// The record's id.
        id: BundleId,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// An argument is out of range (e.g. a page limit of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The configuration cannot work (e.g. a map size too small for the quotas).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// This path is already open as a store in this process.
    #[error("store at {} is already open in this process", path.display())]
    AlreadyOpen {
        /// The canonical path.
        path: PathBuf,
    },
    /// The store was written by a newer version of this crate.
    #[error("store format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version found on disk.
        found: u64,
        /// Version this build reads and writes.
        supported: u64,
    },
    /// Sequence numbers would pass `u64::MAX`.
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// LMDB's memory map is full. Raise [`StoreConfig::map_size`](crate::StoreConfig::map_size)
    /// (the quotas normally prevent this; see the crate docs for the sizing rule).
    #[error("LMDB map of {map_size} bytes is full")]
    MapFull {
        /// The configured map size.
        map_size: usize,
    },
    /// Internal bookkeeping (not a record) is malformed on disk.
    #[error("store bookkeeping is corrupt: {0}")]
    Corrupt(String),
    /// A record could not be encoded (never expected; reported rather than panicking).
    #[error("record encoding failed: {0}")]
    Encode(#[source] RecordError),
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Any other LMDB error.
    #[error("LMDB error: {0}")]
    Lmdb(#[source] heed::Error),
}
