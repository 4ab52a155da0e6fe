//! Reading packs: the index from the trailer, then the bodies one at a time.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{classify, pack_io, EntryError, IoClass, PackError};
use crate::format::{
    check_size, parse_index, parse_trailer, IndexEntry, PackIndex, HEAD_LEN, PACK_MAGIC,
    TRAILER_LEN,
};
use crate::{Drive, DriveLimits, PackRef};

/// One body read from a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackEntry {
    /// Position in the pack.
    pub index: usize,
    /// The bundle id the writer claims.
    pub id: [u8; 32],
    /// Copies handed over with the bundle.
    pub copies: u32,
    /// The bundle's bytes (opaque here).
    pub bytes: Vec<u8>,
}

/// Reads and checks the index of the pack file at `path` (used by
/// [`Drive::read_index`]; `ferry_dir` only decides whether an I/O error means the
/// drive is gone).
pub(crate) fn read_index_at(
    ferry_dir: &Path,
    path: &Path,
    limits: &DriveLimits,
) -> Result<PackIndex, PackError> {
    let io = |e| pack_io(ferry_dir, path, e);
    let mut f = File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    check_size(path, size, limits)?;
    let mut head = [0u8; HEAD_LEN as usize];
    read_exact_or_truncated(&mut f, &mut head, path, size, ferry_dir)?;
    if head != PACK_MAGIC {
        return Err(PackError::BadMagic {
            path: path.to_owned(),
            at: "start",
        });
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    f.seek(SeekFrom::Start(size - TRAILER_LEN)).map_err(io)?;
    read_exact_or_truncated(&mut f, &mut trailer, path, size, ferry_dir)?;
    let (index_len, check) = parse_trailer(path, &trailer, size, limits)?;
    // index_len is bounded by the file's real size and by the limits.
    let start = size - TRAILER_LEN - u64::from(index_len);
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut index = vec![0u8; index_len as usize];
    read_exact_or_truncated(&mut f, &mut index, path, size, ferry_dir)?;
    parse_index(path, &index, &check, size, limits)
}

/// `read_exact`, with a file that shrank under us reported as truncated.
fn read_exact_or_truncated(
    f: &mut File,
    buf: &mut [u8],
    path: &Path,
    size: u64,
    ferry_dir: &Path,
) -> Result<(), PackError> {
    f.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            PackError::Truncated {
                path: path.to_owned(),
                size,
            }
        } else {
            pack_io(ferry_dir, path, e)
        }
    })
}

/// An iterator over a pack's bodies, one in memory at a time; see
/// [`Drive::read_entries`].
#[derive(Debug)]
pub struct Entries<'i, F> {
    path: PathBuf,
    ferry_dir: PathBuf,
    reader: BufReader<File>,
    /// Position of `reader`, `None` after an error left it unknown.
    pos: Option<u64>,
    file_size: u64,
    entries: std::slice::Iter<'i, IndexEntry>,
    want: F,
    truncated: bool,
    done: bool,
}

impl<F: FnMut(&IndexEntry) -> bool> Entries<'_, F> {
    fn read_body(&mut self, e: &IndexEntry) -> Result<Vec<u8>, io::Error> {
        match self.pos {
            Some(pos) if pos == e.offset => {}
            Some(pos) if e.offset > pos && e.offset - pos <= i64::MAX as u64 => {
                self.reader.seek_relative((e.offset - pos) as i64)?;
            }
            _ => {
                self.reader.seek(SeekFrom::Start(e.offset))?;
            }
        }
        self.pos = None;
        // `e.len` ≤ max_body_bytes (checked by the index) and the body lies within
        // the file's current size (checked by the caller).
        let mut bytes = vec![0u8; e.len as usize];
        self.reader.read_exact(&mut bytes)?;
        self.pos = Some(e.offset + e.len);
        Ok(bytes)
    }
}

impl<F: FnMut(&IndexEntry) -> bool> Iterator for Entries<'_, F> {
    type Item = Result<PackEntry, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let e = loop {
            let e = self.entries.next()?;
            if (self.want)(e) {
                break e;
            }
        };
        let truncated = |path: &Path| EntryError::Truncated {
            path: path.to_owned(),
            index: e.index,
        };
        if self.truncated
            || e.offset
                .checked_add(e.len)
                .is_none_or(|end| end > self.file_size)
        {
            self.truncated = true;
            return Some(Err(truncated(&self.path)));
        }
        match self.read_body(e) {
            Ok(bytes) => Some(Ok(PackEntry {
                index: e.index,
                id: e.id,
                copies: e.copies,
                bytes,
            })),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated = true;
                Some(Err(truncated(&self.path)))
            }
            Err(source) => match classify(&source, &self.ferry_dir) {
                IoClass::Gone => {
                    self.done = true;
                    Some(Err(EntryError::Gone {
                        path: self.path.clone(),
                        index: e.index,
                    }))
                }
                _ => Some(Err(EntryError::Io {
                    path: self.path.clone(),
                    index: e.index,
                    source,
                })),
            },
        }
    }
}

/// All entries.
pub type AllEntries<'i> = Entries<'i, fn(&IndexEntry) -> bool>;

impl Drive {
    /// Reads and checks a pack's index (trailer, check, every entry's id, length,
    /// copies and body offset) without reading the bodies.
    pub fn read_index(&self, pack: &PackRef) -> Result<PackIndex, PackError> {
        read_index_at(&self.ferry, &pack.path, &self.limits)
    }

    /// Streams the bodies of the entries for which `want` returns true, in file
    /// order, skipping the others with a seek. A body cut short by the end of the
    /// file yields [`EntryError::Truncated`] for it and every later wanted entry.
    pub fn read_entries<'i, F>(
        &self,
        pack: &PackRef,
        index: &'i PackIndex,
        want: F,
    ) -> Result<Entries<'i, F>, PackError>
    where
        F: FnMut(&IndexEntry) -> bool,
    {
        let path = &pack.path;
        let io = |e| pack_io(&self.ferry, path, e);
        let f = File::open(path).map_err(io)?;
        let file_size = f.metadata().map_err(io)?.len();
        Ok(Entries {
            path: path.clone(),
            ferry_dir: self.ferry.clone(),
            reader: BufReader::with_capacity(256 * 1024, f),
            pos: Some(0),
            file_size,
            entries: index.entries.iter(),
            want,
            truncated: false,
            done: false,
        })
    }

    /// Streams every body of the pack; see [`Drive::read_entries`].
    pub fn entries<'i>(
        &self,
        pack: &PackRef,
        index: &'i PackIndex,
    ) -> Result<AllEntries<'i>, PackError> {
        let all: fn(&IndexEntry) -> bool = |_| true;
        self.read_entries(pack, index, all)
    }
}
