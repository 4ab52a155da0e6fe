//! # ferry-cl-drive
//!
//! A USB drive carried between offline sites is a link ("sneakernet"). This crate is
//! the drive's on-disk format and its crash-safe file I/O, nothing more: no routing,
//! no dependency on the router. The layout is specified in `docs/sneakernet.md`:
//!
//! ```text
//! <mount>/ferry/FORMAT            "ferry-drive 1\n<32 hex: drive id>\n"
//! <mount>/ferry/packs/<16 hex>.fpk immutable bundle packs
//! <mount>/ferry/nodes/<name>.fm    manifests (opaque here), replaced atomically
//! <mount>/ferry/tmp/               temp files being written
//! <mount>/ferry/quarantine/        files moved aside as corrupt
//! ```
//!
//! A pack is written in one pass (bodies first, then the index and a fixed 16-byte
//! trailer), fsynced and renamed into `packs/`, so a reader never sees a partial pack.
//! Readers check the index (BLAKE3 check, canonical varints, limits, and that the
//! lengths add up to the file's real size) before reading any body, and never
//! allocate a length from the file that was not checked against both. Bundle bytes
//! are opaque: the importer checks them as it would any bundle from outside.
//!
//! ```
//! use ferry_cl_drive::{Drive, DriveLimits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mount = tempfile::tempdir()?;
//! let drive = Drive::open_or_init(mount.path(), DriveLimits::default())?;
//!
//! // Export: one pack with two bundles.
//! let mut w = drive.pack_writer()?;
//! w.push(&[1; 32], 1, b"first bundle")?;
//! w.push(&[2; 32], 4, b"second bundle")?;
//! let pack = w.finish()?.expect("two entries");
//!
//! // Import, on another site: list, check the index, stream the bodies.
//! let drive = Drive::open(mount.path(), DriveLimits::default())?;
//! let list = drive.list_packs()?;
//! assert_eq!(list.packs, vec![pack.clone()]);
//! let index = drive.read_index(&pack)?;
//! assert_eq!(index.len(), 2);
//! // Skip the bundles already seen (here: the first one).
//! let wanted: Vec<_> = drive
//!     .read_entries(&pack, &index, |e| e.id != [1; 32])?
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(wanted.len(), 1);
//! assert_eq!(wanted[0].bytes, b"second bundle");
//! assert_eq!(wanted[0].copies, 4);
//!
//! drive.write_manifest("node-a", b"sealed by the node")?;
//! assert_eq!(drive.read_manifests()?.manifests[0].name, "node-a");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod drive;
mod error;
mod format;
mod fsio;
pub mod manifest;
mod read;
mod write;

pub use drive::{
    check_manifest_name, Drive, DriveId, DriveLimits, ManifestFile, ManifestList, PackList,
    PackRef, FERRY_DIR, FORMAT_MAGIC, MAX_NAME_LEN,
};
pub use error::{DriveError, EntryError, PackError};
pub use format::{IndexEntry, PackIndex, HEAD_LEN, MIN_PACK_LEN, PACK_MAGIC, TRAILER_LEN};
pub use read::{AllEntries, Entries, PackEntry};
pub use write::PackWriter;
