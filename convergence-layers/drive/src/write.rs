//! Writing packs in one pass: bodies stream into a temp file, the index and trailer
//! follow, then fsync, rename into `packs/` and fsync `packs/`.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use ferry_core::codec::{put_varint, varint_len};

use crate::format::{put_entry, trailer, HEAD_LEN, PACK_MAGIC, TRAILER_LEN};
use crate::fsio::{sync_dir, BudgetFile};
use crate::{Drive, DriveError, PackRef};

/// Writes one pack; see [`Drive::pack_writer`].
///
/// Dropping it before [`PackWriter::finish`] removes its temp file.
#[derive(Debug)]
pub struct PackWriter<'d> {
    drive: &'d Drive,
    tmp: PathBuf,
    /// `None` once a write failed (the temp file is then gone) or after `finish`.
    out: Option<BufWriter<BudgetFile<'d>>>,
    /// The index entries written so far (without the count).
    index: Vec<u8>,
    count: usize,
    body_bytes: u64,
}

impl Drive {
    /// Starts a new pack: a temp file in `tmp/` that [`PackWriter::finish`] renames to
    /// `packs/<name>.fpk`.
    pub fn pack_writer(&self) -> Result<PackWriter<'_>, DriveError> {
        let packs = self.packs_dir();
        if !packs.is_dir() {
            if let Err(e) = fs::create_dir(&packs) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(self.io(&packs, e));
                }
            }
        }
        let (tmp, f) = self.create_temp("fpk")?;
        let mut w = PackWriter {
            drive: self,
            tmp,
            out: Some(BufWriter::with_capacity(
                256 * 1024,
                BudgetFile::new(f, &self.budget),
            )),
            index: Vec::new(),
            count: 0,
            body_bytes: 0,
        };
        w.write(&PACK_MAGIC)?;
        Ok(w)
    }
}

impl PackWriter<'_> {
    /// Appends a bundle. Errors:
    /// - [`DriveError::EntryTooLarge`]: `bytes` exceeds `max_body_bytes` (nothing
    ///   written; the writer is still usable);
    /// - [`DriveError::PackLimit`]: the pack would pass `max_entries` or
    ///   `max_pack_bytes` (nothing written; finish this pack and start another);
    /// - [`DriveError::Full`], [`DriveError::Gone`], [`DriveError::Io`]: the write
    ///   failed; the temp file is removed and the writer is dead
    ///   ([`DriveError::Poisoned`] from then on).
    pub fn push(&mut self, id: &[u8; 32], copies: u32, bytes: &[u8]) -> Result<(), DriveError> {
        self.push_expiring(id, copies, None, bytes)
    }

    /// Like [`PackWriter::push`], with the bundle's expiry (DTN seconds, from its
    /// signed header) recorded in the index so that readers can delete a pack once
    /// every bundle in it has expired.
    pub fn push_expiring(
        &mut self,
        id: &[u8; 32],
        copies: u32,
        expires: Option<u64>,
        bytes: &[u8],
    ) -> Result<(), DriveError> {
        if self.out.is_none() {
            return Err(DriveError::Poisoned {
                path: self.tmp.clone(),
            });
        }
        let limits = &self.drive.limits;
        let len = bytes.len() as u64;
        if len > limits.max_body_bytes {
            return Err(DriveError::EntryTooLarge {
                path: self.tmp.clone(),
                len,
                limit: limits.max_body_bytes,
            });
        }
        let entry_len =
            32 + varint_len(len) + varint_len(u64::from(copies)) + varint_len(expires.unwrap_or(0));
        let after = self.size_with(self.count + 1, self.index.len() + entry_len, len);
        if self.count >= limits.max_entries || after > limits.max_pack_bytes {
            return Err(DriveError::PackLimit {
                path: self.tmp.clone(),
                entries: self.count,
                bytes: self.bytes(),
            });
        }
        self.write(bytes)?;
        put_entry(&mut self.index, id, len, copies, expires);
        self.count += 1;
        self.body_bytes += len;
        Ok(())
    }

    /// Entries pushed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// No entries pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The size the pack file would have if finished now (magic, bodies, index,
    /// trailer).
    pub fn bytes(&self) -> u64 {
        self.size_with(self.count, self.index.len(), 0)
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &std::path::Path {
        &self.tmp
    }

    fn size_with(&self, count: usize, entries_len: usize, extra_body: u64) -> u64 {
        HEAD_LEN
            + self.body_bytes
            + extra_body
            + varint_len(count as u64) as u64
            + entries_len as u64
            + TRAILER_LEN
    }

    /// Writes through the buffer; on failure removes the temp file and kills the
    /// writer.
    fn write(&mut self, bytes: &[u8]) -> Result<(), DriveError> {
        let Some(out) = self.out.as_mut() else {
            return Err(DriveError::Poisoned {
                path: self.tmp.clone(),
            });
        };
        match out.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: std::io::Error) -> DriveError {
        let err = self.drive.io(&self.tmp, e);
        self.discard();
        tracing::debug!(error = %err, "pack write failed; temp file removed");
        err
    }

    fn discard(&mut self) {
        if let Some(out) = self.out.take() {
            // Drop without flushing what is buffered: the file is being removed.
            let (inner, _) = out.into_parts();
            drop(inner);
            self.drive.remove_temp(&self.tmp);
        }
    }

    /// Writes the index and trailer, fsyncs, and renames the pack to
    /// `packs/<name>.fpk` (then fsyncs `packs/`). Returns `None` (and writes nothing)
    /// if no entry was pushed. If a pack of the same name exists already (same
    /// index), it is kept and returned, and the new copy is discarded.
    pub fn finish(mut self) -> Result<Option<PackRef>, DriveError> {
        if self.out.is_none() {
            return Err(DriveError::Poisoned {
                path: self.tmp.clone(),
            });
        }
        if self.count == 0 {
            self.discard();
            return Ok(None);
        }
        let mut index = Vec::with_capacity(10 + self.index.len());
        put_varint(&mut index, self.count as u64);
        index.extend_from_slice(&self.index);
        // The entry count and sizes keep the index far below 4 GiB (≤ 57 bytes per
        // entry, max_entries entries).
        let index_len = u32::try_from(index.len()).map_err(|_| DriveError::PackLimit {
            path: self.tmp.clone(),
            entries: self.count,
            bytes: self.bytes(),
        })?;
        let (trailer, name) = trailer(&index, index_len);
        self.write(&index)?;
        self.write(&trailer)?;
        let Some(out) = self.out.take() else {
            return Err(DriveError::Poisoned {
                path: self.tmp.clone(),
            });
        };
        let file = match out.into_inner() {
            Ok(inner) => inner.file,
            Err(e) => {
                let err = self.drive.io(&self.tmp, e.into_error());
                self.drive.remove_temp(&self.tmp);
                return Err(err);
            }
        };
        let drive = self.drive;
        let tmp = self.tmp.clone();
        let cleanup = |err: DriveError| {
            drive.remove_temp(&tmp);
            err
        };
        file.sync_all().map_err(|e| cleanup(drive.io(&tmp, e)))?;
        let size = file
            .metadata()
            .map_err(|e| cleanup(drive.io(&tmp, e)))?
            .len();
        drop(file);
        let packs = drive.packs_dir();
        let path = packs.join(format!("{name}.fpk"));
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if meta.is_file() {
                drive.remove_temp(&tmp);
                tracing::debug!(pack = %path.display(), "identical pack already on the drive");
                return Ok(Some(PackRef {
                    name,
                    path,
                    size: meta.len(),
                }));
            }
        }
        fs::rename(&tmp, &path).map_err(|e| cleanup(drive.io(&path, e)))?;
        sync_dir(&packs).map_err(|e| drive.io(&packs, e))?;
        tracing::debug!(pack = %path.display(), entries = self.count, size, "pack written");
        Ok(Some(PackRef { name, path, size }))
    }
}

impl Drop for PackWriter<'_> {
    fn drop(&mut self) {
        self.discard();
    }
}
