//! Typed errors. Every message names the file (or the name) it is about.

use std::io;
use std::path::{Path, PathBuf};

use ferry_core::codec::CodecError;

/// Why a drive operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    /// The drive is full: ENOSPC, EDQUOT or EFBIG, or the write budget set with
    /// [`Drive::set_write_budget`](crate::Drive::set_write_budget) is spent. Whatever was
    /// being written has been removed again.
    #[error("{path}: the drive is full")]
    Full {
        /// The file being written.
        path: PathBuf,
    },
    /// The drive went away (unplugged, unmounted, its `ferry/` folder deleted): ENODEV,
    /// ENXIO, or ENOENT/EIO while the `ferry/` folder can no longer be seen.
    #[error("{path}: the drive is gone")]
    Gone {
        /// The file or folder being used.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being used.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// [`Drive::open`](crate::Drive::open) found no `ferry/FORMAT` file.
    #[error("{path}: not a Ferry drive (no ferry/FORMAT)")]
    NotADrive {
        /// The `FORMAT` path looked for.
        path: PathBuf,
    },
    /// `ferry/FORMAT` is not a version this crate reads, or not a FORMAT file at all.
    #[error("{path}: {reason}")]
    BadFormat {
        /// The `FORMAT` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A manifest name outside `[a-z0-9-]{1,64}`, or a pack reference whose name or
    /// place is not that of a pack on this drive.
    #[error("bad name {name:?}: {reason}")]
    BadName {
        /// The name given (shortened if long).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A path handed in that is not inside this drive's `ferry/` folder.
    #[error("{path}: not inside this drive's ferry folder")]
    NotOnDrive {
        /// The path.
        path: PathBuf,
    },
    /// A manifest larger than [`DriveLimits::max_manifest_bytes`](crate::DriveLimits).
    #[error("{path}: manifest of {len} bytes is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        /// The manifest file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A bundle larger than [`DriveLimits::max_body_bytes`](crate::DriveLimits): it fits
    /// in no pack.
    #[error("{path}: a {len}-byte bundle is larger than the {limit}-byte limit for one entry")]
    EntryTooLarge {
        /// The pack being written (its temp file).
        path: PathBuf,
        /// The bundle's size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// This pack cannot take the entry without passing `max_entries` or
    /// `max_pack_bytes`. The entry was not written and the writer is still usable:
    /// finish this pack and push the entry into a new one.
    #[error(
        "{path}: pack is full ({entries} entries, {bytes} bytes); finish it and start another"
    )]
    PackLimit {
        /// The pack being written (its temp file).
        path: PathBuf,
        /// Entries already in the pack.
        entries: usize,
        /// Size the pack file would have now.
        bytes: u64,
    },
    /// An earlier write through this [`PackWriter`](crate::PackWriter) failed and its
    /// temp file was removed; the writer can no longer be used.
    #[error("{path}: an earlier write failed; this pack was discarded")]
    Poisoned {
        /// The discarded temp file.
        path: PathBuf,
    },
}

impl DriveError {
    /// `Full`: the caller should stop writing to this drive.
    pub fn is_full(&self) -> bool {
        matches!(self, DriveError::Full { .. })
    }

    /// `Gone`: the drive was removed; the sync should stop.
    pub fn is_gone(&self) -> bool {
        matches!(self, DriveError::Gone { .. })
    }
}

/// Why a pack's index cannot be read.
///
/// - [`PackError::is_corrupt`]: the file's contents are bad; quarantine it.
/// - [`PackError::is_over_limit`]: a well-formed pack beyond this reader's
///   [`DriveLimits`](crate::DriveLimits) (`TooLarge`, `IndexTooLarge`,
///   `TooManyEntries`, `EntryTooLarge`); leave it for nodes with larger limits.
/// - `Io`, `Gone`: the read failed; try again later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// An I/O error while reading.
    #[error("{path}: {source}")]
    Io {
        /// The pack file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The drive went away while reading.
    #[error("{path}: the drive is gone")]
    Gone {
        /// The pack file.
        path: PathBuf,
    },
    /// Shorter than the smallest possible pack.
    #[error("{path}: {size} bytes is too short for a pack (truncated?)")]
    Truncated {
        /// The pack file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Larger than [`DriveLimits::max_pack_bytes`](crate::DriveLimits).
    #[error("{path}: pack of {size} bytes is larger than the {limit}-byte limit")]
    TooLarge {
        /// The pack file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// No `FPK1` at the start or at the end of the file.
    #[error("{path}: no FPK1 magic at the {at} of the file (truncated, or not a pack)")]
    BadMagic {
        /// The pack file.
        path: PathBuf,
        /// `"start"` or `"end"`.
        at: &'static str,
    },
    /// The trailer's index length cannot be right for this file (0, or longer than
    /// the room between the head magic and the trailer).
    #[error("{path}: index length {index_len} does not fit a {size}-byte pack")]
    BadIndexLength {
        /// The pack file.
        path: PathBuf,
        /// The length in the trailer.
        index_len: u32,
        /// The file's size.
        size: u64,
    },
    /// The index is longer than the limits allow (`10 + 57 × max_entries` bytes).
    #[error("{path}: index of {index_len} bytes is longer than the {limit}-byte limit")]
    IndexTooLarge {
        /// The pack file.
        path: PathBuf,
        /// The length in the trailer.
        index_len: u32,
        /// The limit.
        limit: u64,
    },
    /// The index check (BLAKE3) does not match: the index or trailer is damaged.
    #[error("{path}: index check mismatch (damaged index)")]
    BadCheck {
        /// The pack file.
        path: PathBuf,
    },
    /// More entries than [`DriveLimits::max_entries`](crate::DriveLimits).
    #[error("{path}: {count} entries, more than the limit of {limit}")]
    TooManyEntries {
        /// The pack file.
        path: PathBuf,
        /// The count in the index.
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// An entry longer than [`DriveLimits::max_body_bytes`](crate::DriveLimits).
    #[error("{path}: entry {index} is {len} bytes, larger than the {limit}-byte limit")]
    EntryTooLarge {
        /// The pack file.
        path: PathBuf,
        /// The entry's position in the index.
        index: usize,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A malformed or non-canonical number, or a count that cannot fit, in the index.
    #[error("{path}: malformed index: {reason}")]
    BadIndex {
        /// The pack file.
        path: PathBuf,
        /// What the codec found.
        reason: CodecError,
    },
    /// Bytes left over after the last index entry.
    #[error("{path}: {extra} stray bytes after the last index entry")]
    TrailingBytes {
        /// The pack file.
        path: PathBuf,
        /// How many.
        extra: usize,
    },
    /// The entries' lengths do not add up to the file's size.
    #[error("{path}: the index describes a {expected}-byte pack but the file has {actual} bytes")]
    SizeMismatch {
        /// The pack file.
        path: PathBuf,
        /// The size the index implies.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
}

impl PackError {
    /// The file's contents are bad (as opposed to an I/O failure): quarantine it.
    pub fn is_corrupt(&self) -> bool {
        !self.is_over_limit() && !matches!(self, PackError::Io { .. } | PackError::Gone { .. })
    }

    /// The pack exceeds this reader's limits (it may be fine for another node).
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            PackError::TooLarge { .. }
                | PackError::IndexTooLarge { .. }
                | PackError::TooManyEntries { .. }
                | PackError::EntryTooLarge { .. }
        )
    }

    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            PackError::Io { path, .. }
            | PackError::Gone { path }
            | PackError::Truncated { path, .. }
            | PackError::TooLarge { path, .. }
            | PackError::BadMagic { path, .. }
            | PackError::BadIndexLength { path, .. }
            | PackError::IndexTooLarge { path, .. }
            | PackError::BadCheck { path }
            | PackError::TooManyEntries { path, .. }
            | PackError::EntryTooLarge { path, .. }
            | PackError::BadIndex { path, .. }
            | PackError::TrailingBytes { path, .. }
            | PackError::SizeMismatch { path, .. } => path,
        }
    }
}

/// Why one entry's body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The file ends before this entry's body does (and so before every later one).
    #[error("{path}: entry {index} is cut short by the end of the file")]
    Truncated {
        /// The pack file.
        path: PathBuf,
        /// The entry's position in the index.
        index: usize,
    },
    /// An I/O error reading this body; later entries are still attempted.
    #[error("{path}: entry {index}: {source}")]
    Io {
        /// The pack file.
        path: PathBuf,
        /// The entry's position in the index.
        index: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The drive went away; the iterator ends after this.
    #[error("{path}: entry {index}: the drive is gone")]
    Gone {
        /// The pack file.
        path: PathBuf,
        /// The entry's position in the index.
        index: usize,
    },
}

/// How an OS error is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoClass {
    Full,
    Gone,
    Other,
}

/// Classifies `e`, which happened on a file inside `ferry_dir`.
pub(crate) fn classify(e: &io::Error, ferry_dir: &Path) -> IoClass {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        if code == libc::ENOSPC || code == libc::EDQUOT || code == libc::EFBIG {
            return IoClass::Full;
        }
        if code == libc::ENODEV || code == libc::ENXIO {
            return IoClass::Gone;
        }
        if code == libc::EIO || code == libc::ENOENT || code == libc::ESTALE {
            return if ferry_dir.is_dir() {
                IoClass::Other
            } else {
                IoClass::Gone
            };
        }
        return IoClass::Other;
    }
    match e.kind() {
        io::ErrorKind::StorageFull => IoClass::Full,
        io::ErrorKind::NotFound if !ferry_dir.is_dir() => IoClass::Gone,
        _ => IoClass::Other,
    }
}

/// Maps an OS error on `path` (inside `ferry_dir`) to a [`DriveError`].
pub(crate) fn drive_io(ferry_dir: &Path, path: &Path, source: io::Error) -> DriveError {
    let path = path.to_owned();
    match classify(&source, ferry_dir) {
        IoClass::Full => DriveError::Full { path },
        IoClass::Gone => DriveError::Gone { path },
        IoClass::Other => DriveError::Io { path, source },
    }
}

/// Maps an OS error while reading the pack `path` to a [`PackError`].
pub(crate) fn pack_io(ferry_dir: &Path, path: &Path, source: io::Error) -> PackError {
    let path = path.to_owned();
    match classify(&source, ferry_dir) {
        IoClass::Gone => PackError::Gone { path },
        IoClass::Full | IoClass::Other => PackError::Io { path, source },
    }
}
