//! [`LmdbStore`]: the durable store, on LMDB through heed.
//!
//! Tables (all keys and values are raw bytes, big-endian numbers so that byte order
//! is numeric order):
//!
//! | table        | key                                   | value                              |
//! |--------------|---------------------------------------|------------------------------------|
//! | `ids`        | bundle id (32)                        | seen time (8), insertion (8; 0 = removed) |
//! | `meta`       | insertion (8)                         | metadata record (see [`crate::record`]) |
//! | `blob`       | insertion (8)                         | bundle blob (version, CRC, bytes), or for a bundle of at least [`FILE_MIN`] bytes its payload file's CRC and length |
//! | `prio`       | 255 − priority (1), insertion (8)     | empty                              |
//! | `dest`       | kind (1), node hash (8), insertion (8)| empty                              |
//! | `expiry`     | expires_at (8), insertion (8)         | empty                              |
//! | `seen`       | seen time (8), bundle id (32)         | empty (removed records only)       |
//! | `quarantine` | insertion (8)                         | quarantine entry                   |
//! | `state`      | name                                  | u64 (format, next insertion, next sequence, bytes, quarantined bytes) |
//!
//! Records are keyed by their insertion number rather than their (random) bundle id,
//! so inserts append to the right edge of the `meta`, `blob` and `prio` B-trees
//! instead of dirtying a random leaf each; only `ids` is keyed by id. Insertion
//! numbers are never reused, so an index entry whose record is gone can never point
//! at another record: such a dangling entry is skipped and deleted when a scan meets
//! it. This is what makes quarantine safe when the metadata itself is unreadable (the
//! destination and expiry keys it held are then unknown and removed lazily).
//!
//! `meta` and `blob` are written with `MDB_APPEND` (their keys only grow), which
//! fills pages instead of splitting them in half and turns a counter that is ever
//! behind the stored records into an error instead of an overwrite.
//!
//! **Payload files.** A bundle of at least [`FILE_MIN`] bytes is written to a file of
//! its own, `payloads/<insertion as 16 hex digits>` in the store's directory, and its
//! `blob` entry keeps the CRC and length of those bytes. A transaction writes such
//! files while it holds LMDB's write lock, `fdatasync`s them and the directory, and
//! only then commits; a file whose record a transaction removes is unlinked once that
//! commit is durable. So a committed record always has its file, and what a crash
//! can leave behind is a file without a record: opening the store deletes those
//! (under the write lock, so another process's transaction in progress is not
//! touched). A file is never reused: insertion numbers only grow, and a number
//! handed out in a transaction that failed is used again only by a later one, which
//! truncates the file first. Large values in LMDB cost two 100 MiB copies per commit
//! (LMDB's dirty pages, then the page cache) and leave runs of free pages that only
//! a value of the same size can reuse; a file costs one write and is simply deleted.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_core::{BundleId, Destination};
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, PutFlags, RoTxn, RwTxn, WithoutTls};

use crate::error::{QuotaKind, StoreError};
use crate::mem::check_quota;
use crate::record::{
    self, blob_len, decode_blob, decode_quarantine, decode_record, dest_key, dest_prefix,
    encode_blob, encode_quarantine, encode_record, expiry_key, file_blob, file_bytes_match,
    id_value, inv_priority, parse_id_value, prio_key, read_u64, seen_key, slot_key,
    write_blob_header, Blob, BLOB_FILE_LEN, BLOB_FILE_VERSION,
};
use crate::store::{CustodyStore, IdPage};
use crate::types::{
    page_limit, seen_time, validate_routing, validate_routing_state, DestinationCursor,
    InsertOutcome, NewRecord, Page, PriorityCursor, QuarantineEntry, QuarantinedRaw, Record,
    RecordInfo, RoutingMeta, StoreConfig, StoreStats, WriteOp, WriteOutcome,
};

/// On-disk format version written to the `state` table. Version 2 added payload
/// files (blob version 2); a version-1 store is opened and marked version 2, and an
/// older build refuses a version-2 store instead of taking its file references for
/// damaged records.
pub const FORMAT_VERSION: u64 = 2;

/// Bundles of at least this many bytes are kept in payload files (see the module
/// documentation) instead of in LMDB.
pub const FILE_MIN: usize = 1 << 20;

/// The store directory's folder of payload files.
const PAYLOAD_DIR: &str = "payloads";

const K_FORMAT: &[u8] = b"format";
const K_NEXT_SLOT: &[u8] = b"next_insertion";
const K_NEXT_SEQ: &[u8] = b"next_sequence";
const K_BYTES: &[u8] = b"bytes";
const K_Q_BYTES: &[u8] = b"quarantined_bytes";
const K_ROUTING: &[u8] = b"routing_state";

type Db = Database<Bytes, Bytes>;

/// Canonical paths of the stores open in this process.
static OPEN_PATHS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Holds a path in [`OPEN_PATHS`] until dropped.
#[derive(Debug)]
struct PathRegistration(PathBuf);

impl PathRegistration {
    fn register(path: PathBuf) -> Result<Self, StoreError> {
        let mut open = OPEN_PATHS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open.insert(path.clone()) {
            return Err(StoreError::AlreadyOpen { path });
        }
        Ok(Self(path))
    }
}

impl Drop for PathRegistration {
    fn drop(&mut self) {
        let mut open = OPEN_PATHS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.remove(&self.0);
    }
}

#[derive(Debug, Clone, Copy)]
struct Dbs {
    ids: Db,
    meta: Db,
    blob: Db,
    prio: Db,
    dest: Db,
    expiry: Db,
    seen: Db,
    quarantine: Db,
    state: Db,
}

/// What reading one record's metadata found.
enum SlotRead {
    Missing,
    Ok(RecordInfo),
    Corrupt(String),
}

/// What a routing update inside a transaction found.
enum Updated {
    Ok(RoutingMeta),
    NotFound,
    Quarantined(String),
}

/// Pre-allocation of the data file (see [`LmdbStore::set_preallocation`]).
#[derive(Debug)]
struct Prealloc {
    file: File,
    enabled: bool,
}

/// The durable [`CustodyStore`], on LMDB.
///
/// Durability: the environment is opened with LMDB's default flags (no `NOSYNC`,
/// `NOMETASYNC` or `MAPASYNC`), so every write method has flushed its transaction to
/// disk (data pages `fdatasync`ed, then the meta page written with `O_DSYNC`) before
/// it returns `Ok`. A crash or power cut after that loses nothing; one before it
/// loses the whole transaction and nothing else.
///
/// A path may be open only once per process at a time (a second open returns
/// [`StoreError::AlreadyOpen`]); several processes may open the same store (LMDB
/// locks between them).
#[derive(Debug)]
pub struct LmdbStore {
    // Field order matters: the environment must close before the path is released.
    env: Env<WithoutTls>,
    dbs: Dbs,
    config: StoreConfig,
    map_size: usize,
    path: PathBuf,
    /// `path`/`payloads`.
    payload_dir: PathBuf,
    /// Payload files written ahead of their record's transaction.
    staged: Staged,
    prealloc: Mutex<Prealloc>,
    _registration: PathRegistration,
}

/// The payload files one write transaction touches.
#[derive(Debug)]
struct TxnFiles<'a> {
    dir: &'a Path,
    staged: &'a Staged,
    /// Written by this transaction: synced before its commit, deleted if it fails.
    written: Vec<(PathBuf, File)>,
    /// Staged files this transaction took under their record's name (already
    /// synced): deleted if it fails.
    renamed: Vec<PathBuf>,
    /// Files of records this transaction removes: unlinked once it is committed.
    doomed: Vec<PathBuf>,
}

impl<'a> TxnFiles<'a> {
    fn new(dir: &'a Path, staged: &'a Staged) -> Self {
        Self {
            dir,
            staged,
            written: Vec::new(),
            renamed: Vec::new(),
            doomed: Vec::new(),
        }
    }

    /// Makes `bytes` (bundle `id`'s) the payload file of `slot`, replacing what a
    /// failed transaction may have left under that name: the file staged for them if
    /// there is one, else a new one. Returns their CRC.
    fn write(&mut self, slot: u64, id: &BundleId, bytes: &[u8]) -> Result<u32, StoreError> {
        let crc = record::crc(bytes);
        let path = payload_path(self.dir, slot);
        if let Some(from) = self.staged.take(id, crc, bytes.len() as u64) {
            if fs::rename(&from, &path).is_ok() {
                self.renamed.push(path);
                return Ok(crc);
            }
            let _ = fs::remove_file(&from);
        }
        self.write_new(path, bytes)?;
        Ok(crc)
    }

    fn write_new(&mut self, path: PathBuf, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let io = io_err(&path);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Readable by the node's user only, as LMDB's own files.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(&io)?;
        // Registered before writing, so a failed write is cleaned up too.
        let written = file.try_clone().map_err(&io)?;
        self.written.push((path.clone(), written));
        file.write_all(bytes).map_err(io_err(&path))
    }

    /// Marks `slot`'s payload file for deletion after the commit.
    fn doom(&mut self, slot: u64) {
        self.doomed.push(payload_path(self.dir, slot));
    }

    /// Makes the written files durable: their data, then their names.
    fn sync(&self) -> Result<(), StoreError> {
        if self.written.is_empty() && self.renamed.is_empty() {
            return Ok(());
        }
        for (path, file) in &self.written {
            file.sync_data().map_err(io_err(path))?;
        }
        sync_dir(self.dir)
    }

    /// The transaction failed: its files go (best effort; a leftover is an orphan
    /// the next open deletes).
    fn abandon(self) {
        for (path, file) in self.written {
            drop(file);
            let _ = fs::remove_file(&path);
        }
        for path in self.renamed {
            let _ = fs::remove_file(&path);
        }
    }

    /// The transaction is committed: the files of removed records go (best effort,
    /// as above).
    fn committed(self) {
        for path in self.doomed {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Whether a blob refers to a payload file (recognised by its form; its CRC is of
/// the file, checked when the file is read).
fn is_file_ref(raw: &[u8]) -> bool {
    raw.len() == BLOB_FILE_LEN && raw.first() == Some(&BLOB_FILE_VERSION)
}

/// Bytes a quarantined record occupies: its raw metadata and blob, and the payload
/// file the blob refers to, if any.
fn quarantined_len(meta_raw: &[u8], blob_raw: &[u8]) -> u64 {
    let file = match decode_blob(blob_raw) {
        Ok(Blob::File { len, .. }) => len,
        _ => 0,
    };
    (meta_raw.len() + blob_raw.len()) as u64 + file
}

/// The payload file of insertion `slot`.
fn payload_path(dir: &Path, slot: u64) -> PathBuf {
    dir.join(format!("{slot:016x}"))
}

/// The insertion number a payload file's name stands for.
fn payload_slot(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    if name.len() != 16 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// Prefix of staged payload files' names.
const STAGED_PREFIX: &str = "staged-";
/// Most payload files staged at once; staging another deletes the oldest.
const STAGED_MAX: usize = 8;
/// Most bytes staged at once (staged files are outside the store's quota, for the
/// moment between a bundle's arrival and its commit); staging more deletes the
/// oldest.
const STAGED_MAX_BYTES: u64 = 512 << 20;

/// One staged payload file.
#[derive(Debug)]
struct StagedFile {
    id: BundleId,
    path: PathBuf,
    crc: u32,
    len: u64,
}

/// Payload files written ahead of the transaction that will store their bundle
/// (see [`LmdbStore::stage_payload`]); the files left when the store closes are
/// deleted.
#[derive(Debug, Default)]
struct Staged(Mutex<std::collections::VecDeque<StagedFile>>);

impl Staged {
    /// Takes the file staged for `id`, if its bytes have this CRC and length.
    fn take(&self, id: &BundleId, crc: u32, len: u64) -> Option<PathBuf> {
        let mut files = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = files.iter().position(|f| f.id == *id)?;
        let f = files.remove(at)?;
        // The file must still be what was staged (another process opening the store
        // deletes staged files it finds).
        let intact = fs::metadata(&f.path).is_ok_and(|m| m.len() == len);
        if f.crc == crc && f.len == len && intact {
            Some(f.path)
        } else {
            let _ = fs::remove_file(&f.path);
            None
        }
    }

    fn add(&self, file: StagedFile) {
        let mut files = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = files.iter().position(|f| f.id == file.id) {
            if let Some(old) = files.remove(at) {
                if old.path != file.path {
                    let _ = fs::remove_file(&old.path);
                }
            }
        }
        let mut bytes: u64 = files.iter().map(|f| f.len).sum();
        while files.len() >= STAGED_MAX
            || (!files.is_empty() && bytes + file.len > STAGED_MAX_BYTES)
        {
            if let Some(old) = files.pop_front() {
                bytes -= old.len;
                let _ = fs::remove_file(&old.path);
            }
        }
        files.push_back(file);
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let files = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for f in files.drain(..) {
            let _ = fs::remove_file(&f.path);
        }
    }
}

/// `fsync`s a directory, making the names in it durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn lmdb_err(map_size: usize) -> impl Fn(heed::Error) -> StoreError {
    move |e| match e {
        heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::MapFull { map_size },
        other => StoreError::Lmdb(other),
    }
}

/// Maps a failed MDB_APPEND: a key not above the last one means the insertion
/// counter is behind the stored records.
fn append_err(map_size: usize) -> impl Fn(heed::Error) -> StoreError {
    move |e| match e {
        heed::Error::Mdb(heed::MdbError::KeyExist) => {
            StoreError::Corrupt("insertion counter is behind the stored records".into())
        }
        other => lmdb_err(map_size)(other),
    }
}

/// Bundles up to this size are framed in a buffer and appended; larger ones are
/// written straight into LMDB's reserved space.
const APPEND_COPY_MAX: usize = 64 << 10;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LmdbStore {
    /// Opens (creating the directory and tables if missing) the store at `path`.
    ///
    /// Fails with [`StoreError::AlreadyOpen`] if this process already has it open,
    /// and with [`StoreError::InvalidConfig`] if the map size cannot hold the quotas
    /// (see [`StoreConfig::required_map_size`]).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let map_size = config.effective_map_size()?;
        let path = path.as_ref();
        fs::create_dir_all(path).map_err(io_err(path))?;
        let canonical = fs::canonicalize(path).map_err(io_err(path))?;
        let registration = PathRegistration::register(canonical.clone())?;

        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(16);
        // SAFETY: heed marks `open` unsafe because the memory map is undefined
        // behaviour if the file is modified other than through LMDB's protocol. We
        // uphold that: (1) no unsafe flags are set (default sync flags, locking on,
        // no WRITEMAP), so LMDB's lock file coordinates every process that opens the
        // environment; (2) `PathRegistration` above guarantees this process opens
        // the path at most once at a time (opening it twice would let closing one
        // handle drop the other's POSIX locks), and heed's own registry refuses it
        // too; (3) this crate never truncates or writes the data file's used part:
        // the only other write is `preallocate`, which appends zeros past the end of
        // the file while holding the write transaction. Users must not place the
        // store on a network file system or edit its files while it is open
        // (documented on the crate).
        #[allow(unsafe_code)]
        let env = unsafe { options.open(&canonical) }.map_err(|e| match e {
            heed::Error::EnvAlreadyOpened => StoreError::AlreadyOpen {
                path: canonical.clone(),
            },
            other => lmdb_err(map_size)(other),
        })?;

        let err = lmdb_err(map_size);
        // Reader slots left by processes that died would pin old pages forever.
        env.clear_stale_readers().map_err(&err)?;
        let mut wtxn = env.write_txn().map_err(&err)?;
        let mut create = |name: &str| -> Result<Db, StoreError> {
            env.create_database(&mut wtxn, Some(name)).map_err(&err)
        };
        let dbs = Dbs {
            ids: create("ids")?,
            meta: create("meta")?,
            blob: create("blob")?,
            prio: create("prio")?,
            dest: create("dest")?,
            expiry: create("expiry")?,
            seen: create("seen")?,
            quarantine: create("quarantine")?,
            state: create("state")?,
        };
        match get_u64(&dbs.state, &wtxn, K_FORMAT)? {
            // Version 1 is version 2 without payload files.
            None | Some(1) => put_u64(&dbs.state, &mut wtxn, K_FORMAT, FORMAT_VERSION, map_size)?,
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                })
            }
        }
        wtxn.commit().map_err(&err)?;

        let data_path = canonical.join("data.mdb");
        let file = OpenOptions::new()
            .write(true)
            .open(&data_path)
            .map_err(io_err(&data_path))?;
        let payload_dir = canonical.join(PAYLOAD_DIR);
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&payload_dir) {
            Ok(()) => sync_dir(&canonical)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&payload_dir)(e)),
        }
        let store = Self {
            env,
            dbs,
            config,
            map_size,
            path: canonical,
            payload_dir,
            staged: Staged::default(),
            prealloc: Mutex::new(Prealloc {
                file,
                enabled: false,
            }),
            _registration: registration,
        };
        store.remove_orphan_files()?;
        Ok(store)
    }

    /// The store's directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The LMDB map size in use.
    pub fn map_size(&self) -> usize {
        self.map_size
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Turns data-file pre-allocation on or off (off by default).
    ///
    /// On, a write transaction that could grow the data file first extends the file
    /// with written zeros (in steps of 1/8 of its size, 1 to 16 MiB) and syncs that
    /// once, so LMDB's per-commit `fdatasync` overwrites allocated blocks and has no
    /// file-size change (inode update, or journal commit on a journalling file
    /// system) to make durable. LMDB's own syncs are unchanged, so durability is
    /// the same either way. It is off by default because on the machine it was
    /// measured on (ext4 without a journal) the zero-filling cost about what it
    /// saved; `benches/lmdb.rs` compares both on yours.
    pub fn set_preallocation(&self, on: bool) {
        self.prealloc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .enabled = on;
    }

    /// Writes and syncs, ahead of its transaction, the payload file of bundle `id`
    /// (not already stored) whose stored bytes will be `parts` concatenated (see [`Bundle::encoded_parts`]
    /// in ferry-core). The insert that stores those bytes later takes the file under
    /// its record's name instead of writing them again, so a driver can do the large
    /// write on a thread of its own while the transaction's thread does other work.
    /// Bundles shorter than [`FILE_MIN`] are not staged (`Ok(false)`). At most 8
    /// files and 512 MiB are staged at once (the oldest go); the rest go when
    /// the store closes, or at the next open after a crash. Staging is an
    /// optimisation only: an insert whose bytes differ from what was staged writes
    /// its own file.
    ///
    /// [`Bundle::encoded_parts`]: https://docs.rs/ferry-core
    pub fn stage_payload(&self, id: &BundleId, parts: &[&[u8]]) -> Result<bool, StoreError> {
        use std::io::Write;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len < FILE_MIN || self.contains(id)? {
            return Ok(false);
        }
        // A name of its own (process, counter): a second staging of the same bundle
        // never writes into a file an insert has taken.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .payload_dir
            .join(format!("{STAGED_PREFIX}{}-{n}", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&path).and_then(|mut f| {
            let mut crc = crc32fast::Hasher::new();
            for p in parts {
                f.write_all(p)?;
                crc.update(p);
            }
            f.sync_data()?;
            Ok(crc.finalize())
        });
        match written {
            Ok(crc) => {
                self.staged.add(StagedFile {
                    id: *id,
                    path,
                    crc,
                    len: len as u64,
                });
                Ok(true)
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(io_err(&path)(e))
            }
        }
    }

    /// The raw bytes (metadata record, bundle blob) kept for a quarantined record.
    pub fn quarantined_raw(&self, insertion: u64) -> Result<Option<QuarantinedRaw>, StoreError> {
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let Some(raw) = self
            .dbs
            .quarantine
            .get(&rtxn, &slot_key(insertion))
            .map_err(&err)?
        else {
            return Ok(None);
        };
        let q = decode_quarantine(raw)
            .map_err(|e| StoreError::Corrupt(format!("quarantine entry {insertion}: {e}")))?;
        Ok(Some(QuarantinedRaw {
            meta: q.meta_raw.to_vec(),
            blob: q.blob_raw.to_vec(),
        }))
    }

    fn err(&self) -> impl Fn(heed::Error) -> StoreError {
        lmdb_err(self.map_size)
    }

    /// Runs `f` in a write transaction and commits it (durably) if it succeeds;
    /// `grow_hint` is an upper estimate of the bytes it adds.
    ///
    /// Payload files the transaction writes are synced before the commit and
    /// deleted if it fails; those of records it removes are deleted after it.
    fn write<R>(
        &self,
        grow_hint: u64,
        f: impl FnOnce(&mut RwTxn<'_>, &Dbs, &mut TxnFiles<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let err = self.err();
        let mut wtxn = self.env.write_txn().map_err(&err)?;
        let mut files = TxnFiles::new(&self.payload_dir, &self.staged);
        let ready = f(&mut wtxn, &self.dbs, &mut files).and_then(|out| {
            self.preallocate(grow_hint)?;
            files.sync()?;
            Ok(out)
        });
        let out = match ready {
            Ok(out) => out,
            Err(e) => {
                // While the write lock is still held: the insertion numbers of this
                // transaction go to the next one, whose files must not be touched.
                files.abandon();
                drop(wtxn);
                return Err(e);
            }
        };
        // A failed commit leaves its files: the next transaction takes the same
        // insertion numbers and overwrites them, and opening the store deletes any
        // that no record refers to.
        wtxn.commit().map_err(err)?;
        files.committed();
        Ok(out)
    }

    /// Deletes payload files that no record or quarantine entry refers to: what a
    /// crash between a file's write and its transaction's commit, or between a
    /// commit and the deletion of a removed record's file, leaves. Runs in a write
    /// transaction, so no other process is between writing a file and committing.
    fn remove_orphan_files(&self) -> Result<(), StoreError> {
        let dir = &self.payload_dir;
        let entries = fs::read_dir(dir).map_err(io_err(dir))?;
        let err = self.err();
        let wtxn = self.env.write_txn().map_err(&err)?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            // Staged files live as long as the process that staged them.
            if name.to_str().is_some_and(|n| n.starts_with(STAGED_PREFIX)) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path))?;
                removed = true;
                continue;
            }
            // Names this store did not write are left alone.
            let Some(slot) = payload_slot(&name) else {
                continue;
            };
            let key = slot_key(slot);
            let stored = self.dbs.meta.get(&wtxn, &key).map_err(&err)?.is_some()
                && self
                    .dbs
                    .blob
                    .get(&wtxn, &key)
                    .map_err(&err)?
                    .is_some_and(is_file_ref);
            // A quarantine entry whose blob cannot be read keeps the file (it is
            // deleted with the entry).
            let quarantined = self
                .dbs
                .quarantine
                .get(&wtxn, &key)
                .map_err(&err)?
                .is_some_and(|raw| match decode_quarantine(raw) {
                    Ok(q) => is_file_ref(q.blob_raw),
                    Err(_) => true,
                });
            let referred = stored || quarantined;
            if !referred {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path))?;
                removed = true;
            }
        }
        drop(wtxn);
        if removed {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Extends the data file with zeros so the coming commit writes into allocated
    /// blocks. Must be called with the write transaction held: no LMDB writer can
    /// then be writing past the file's end concurrently, and LMDB's commit, which
    /// follows, overwrites any of these zeros it needs.
    fn preallocate(&self, grow_hint: u64) -> Result<(), StoreError> {
        let p = self
            .prealloc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !p.enabled {
            return Ok(());
        }
        let data_path = self.path.join("data.mdb");
        let io = io_err(&data_path);
        let info = self.env.info();
        let page = u64::from(self.env.stat().page_size);
        let used = (info.last_page_number as u64 + 1).saturating_mul(page);
        // A transaction rewrites (copy-on-write) the pages it touches: allow for the
        // new data twice over, plus the branch pages of a few trees.
        let need = used
            .saturating_add(grow_hint.saturating_mul(2))
            .saturating_add(64 * page);
        let len = p.file.metadata().map_err(&io)?.len();
        if len >= need {
            return Ok(());
        }
        let step = (len / 8).clamp(1 << 20, 16 << 20);
        let target = need.max(len + step).min(self.map_size as u64);
        if target <= len {
            return Ok(());
        }
        write_zeros(&p.file, len, target).map_err(&io)?;
        p.file.sync_data().map_err(&io)
    }

    /// Reads and checks the metadata of `slot`.
    fn read_info(&self, txn: &RoTxn<'_>, slot: u64) -> Result<SlotRead, StoreError> {
        let Some(raw) = self
            .dbs
            .meta
            .get(txn, &slot_key(slot))
            .map_err(self.err())?
        else {
            return Ok(SlotRead::Missing);
        };
        Ok(match decode_record(raw) {
            Ok(info) if info.insertion != slot => SlotRead::Corrupt(format!(
                "metadata names insertion {} but is stored under {slot}",
                info.insertion
            )),
            Ok(info) => SlotRead::Ok(info),
            Err(e) => SlotRead::Corrupt(format!("metadata: {e}")),
        })
    }

    /// The stored slot of `id`: `Ok(None)` if not stored (or seen only).
    fn slot_of(&self, txn: &RoTxn<'_>, id: &BundleId) -> Result<Option<(u64, u64)>, StoreError> {
        match self.dbs.ids.get(txn, &id.0).map_err(self.err())? {
            None => Ok(None),
            Some(v) => parse_id_value(v).map(Some).ok_or_else(|| {
                StoreError::Corrupt(format!("id entry of {id} has {} bytes", v.len()))
            }),
        }
    }

    /// The reason a quarantined slot was quarantined, if it is.
    fn quarantine_reason(&self, txn: &RoTxn<'_>, slot: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .dbs
            .quarantine
            .get(txn, &slot_key(slot))
            .map_err(self.err())?
            .map(|raw| match decode_quarantine(raw) {
                Ok(q) => q.reason,
                Err(e) => format!("(quarantine entry unreadable: {e})"),
            }))
    }

    /// Quarantines `slot` in its own transaction.
    fn quarantine_now(
        &self,
        slot: u64,
        id: Option<BundleId>,
        reason: String,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        self.write(0, |txn, dbs, _| {
            quarantine_slot(dbs, txn, slot, id, reason, self.map_size)
        })
    }

    /// Metadata of a stored id, quarantining it if unreadable. With `with_bytes`,
    /// the bundle bytes too.
    fn fetch(&self, id: &BundleId, with_bytes: bool) -> Result<Option<Record>, StoreError> {
        let rtxn = self.env.read_txn().map_err(self.err())?;
        let Some((_, slot)) = self.slot_of(&rtxn, id)? else {
            return Ok(None);
        };
        if slot == 0 {
            return Ok(None);
        }
        let problem = match self.read_info(&rtxn, slot)? {
            SlotRead::Missing => {
                return match self.quarantine_reason(&rtxn, slot)? {
                    Some(reason) => Err(StoreError::Quarantined { id: *id, reason }),
                    None => Ok(None),
                }
            }
            SlotRead::Corrupt(reason) => reason,
            SlotRead::Ok(info) if info.id != *id => {
                format!("metadata names bundle {} instead", info.id)
            }
            SlotRead::Ok(info) if !with_bytes => {
                return Ok(Some(Record {
                    info,
                    bytes: Vec::new(),
                }))
            }
            SlotRead::Ok(info) => {
                match self
                    .dbs
                    .blob
                    .get(&rtxn, &slot_key(slot))
                    .map_err(self.err())?
                {
                    None => "bundle bytes missing".to_owned(),
                    Some(raw) => match decode_blob(raw) {
                        Err(e) => format!("bundle bytes: {e}"),
                        Ok(b) if b.bundle_len() != info.size => format!(
                            "bundle bytes: {} bytes where metadata says {}",
                            b.bundle_len(),
                            info.size
                        ),
                        Ok(Blob::Inline(b)) => {
                            return Ok(Some(Record {
                                info,
                                bytes: b.to_vec(),
                            }))
                        }
                        Ok(Blob::File { crc, len }) => {
                            drop(rtxn);
                            return self.fetch_file(id, info, crc, len);
                        }
                    },
                }
            }
        };
        drop(rtxn);
        let entry = self.quarantine_now(slot, Some(*id), problem.clone())?;
        let reason = entry.map(|e| e.reason).unwrap_or(problem);
        Err(StoreError::Quarantined { id: *id, reason })
    }

    /// Reads the payload file of a record `fetch` found (its read transaction
    /// ended: a file is read outside LMDB's snapshot).
    fn fetch_file(
        &self,
        id: &BundleId,
        info: RecordInfo,
        crc: u32,
        len: u64,
    ) -> Result<Option<Record>, StoreError> {
        let slot = info.insertion;
        let path = payload_path(&self.payload_dir, slot);
        // At most one byte more than the record says is read: a damaged file could
        // be any size.
        let read = File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.take(len.saturating_add(1))
                .read_to_end(&mut bytes)
                .map(|_| bytes)
        });
        let problem = match read {
            Ok(bytes) if file_bytes_match(&bytes, crc, len) => {
                return Ok(Some(Record { info, bytes }))
            }
            Ok(bytes) if bytes.len() as u64 > len => {
                format!("payload file: more than the {len} bytes the record says")
            }
            Ok(bytes) if (bytes.len() as u64) < len => format!(
                "payload file: {} bytes where the record says {len}",
                bytes.len()
            ),
            Ok(_) => "payload file: checksum mismatch".to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Removed (and its file deleted) since the record was read?
                let rtxn = self.env.read_txn().map_err(self.err())?;
                let still = matches!(self.slot_of(&rtxn, id)?, Some((_, s)) if s == slot)
                    && self
                        .dbs
                        .meta
                        .get(&rtxn, &slot_key(slot))
                        .map_err(self.err())?
                        .is_some();
                if !still {
                    return Ok(None);
                }
                "payload file missing".to_owned()
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let entry = self.quarantine_now(slot, Some(*id), problem.clone())?;
        let reason = entry.map(|e| e.reason).unwrap_or(problem);
        Err(StoreError::Quarantined { id: *id, reason })
    }

    /// One insert inside a write transaction: duplicates, validation and quotas
    /// as in `insert_batch`, against what the transaction holds so far.
    fn insert_in(
        &self,
        txn: &mut RwTxn<'_>,
        dbs: &Dbs,
        files: &mut TxnFiles<'_>,
        r: &NewRecord,
    ) -> Result<InsertOutcome, StoreError> {
        let map_size = self.map_size;
        let err = self.err();
        validate_routing(&r.id, &r.meta.routing)?;
        match self.slot_of(txn, &r.id)? {
            Some((_, 0)) => {
                return Ok(InsertOutcome::Duplicate {
                    still_stored: false,
                })
            }
            Some((_, slot)) if dbs.meta.get(txn, &slot_key(slot)).map_err(&err)?.is_some() => {
                return Ok(InsertOutcome::Duplicate { still_stored: true })
            }
            // Never stored, or its stored copy was quarantined: store it.
            _ => {}
        }
        let count = dbs.meta.len(txn).map_err(&err)?;
        let q_count = dbs.quarantine.len(txn).map_err(&err)?;
        let bytes = get_u64(&dbs.state, txn, K_BYTES)?.unwrap_or(0);
        let q_bytes = get_u64(&dbs.state, txn, K_Q_BYTES)?.unwrap_or(0);
        let size = r.bytes.len() as u64;
        check_quota(
            QuotaKind::Count,
            self.config.max_count,
            count.saturating_add(q_count),
            1,
        )?;
        check_quota(
            QuotaKind::Bytes,
            self.config.max_bytes,
            bytes.saturating_add(q_bytes),
            size,
        )?;
        let slot = get_u64(&dbs.state, txn, K_NEXT_SLOT)?.unwrap_or(1);
        put_record(dbs, txn, files, r, slot, map_size)?;
        let next = slot
            .checked_add(1)
            .ok_or(StoreError::Corrupt("insertion numbers exhausted".into()))?;
        put_u64(&dbs.state, txn, K_NEXT_SLOT, next, map_size)?;
        put_u64(
            &dbs.state,
            txn,
            K_BYTES,
            bytes.saturating_add(size),
            map_size,
        )?;
        Ok(InsertOutcome::Inserted)
    }

    /// `remove` inside a write transaction.
    fn remove_in(
        &self,
        txn: &mut RwTxn<'_>,
        dbs: &Dbs,
        files: &mut TxnFiles<'_>,
        id: &BundleId,
    ) -> Result<bool, StoreError> {
        let map_size = self.map_size;
        let Some((t, slot)) = self.slot_of(txn, id)? else {
            return Ok(false);
        };
        if slot == 0 {
            return Ok(false);
        }
        match self.read_info(txn, slot)? {
            SlotRead::Missing => Ok(false),
            SlotRead::Ok(info) if info.id == *id => {
                delete_record(dbs, txn, files, &info, map_size)?;
                Ok(true)
            }
            SlotRead::Ok(info) => {
                let reason = format!("metadata names bundle {} instead", info.id);
                removed_corrupt(dbs, txn, id, t, slot, reason, map_size)
            }
            SlotRead::Corrupt(reason) => removed_corrupt(dbs, txn, id, t, slot, reason, map_size),
        }
    }

    /// A routing update inside a write transaction; an unreadable record is
    /// quarantined (in the same transaction).
    fn update_in(
        &self,
        txn: &mut RwTxn<'_>,
        dbs: &Dbs,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<Updated, StoreError> {
        let map_size = self.map_size;
        let err = self.err();
        let Some((_, slot)) = self.slot_of(txn, id)? else {
            return Ok(Updated::NotFound);
        };
        if slot == 0 {
            return Ok(Updated::NotFound);
        }
        let mut info = match self.read_info(txn, slot)? {
            SlotRead::Missing => {
                return Ok(match self.quarantine_reason(txn, slot)? {
                    Some(reason) => Updated::Quarantined(reason),
                    None => Updated::NotFound,
                })
            }
            SlotRead::Ok(info) if info.id == *id => info,
            SlotRead::Ok(info) => {
                let reason = format!("metadata names bundle {} instead", info.id);
                let e = quarantine_slot(dbs, txn, slot, Some(*id), reason.clone(), map_size)?;
                return Ok(Updated::Quarantined(e.map(|e| e.reason).unwrap_or(reason)));
            }
            SlotRead::Corrupt(reason) => {
                let e = quarantine_slot(dbs, txn, slot, Some(*id), reason.clone(), map_size)?;
                return Ok(Updated::Quarantined(e.map(|e| e.reason).unwrap_or(reason)));
            }
        };
        update(&mut info.meta.routing);
        validate_routing(id, &info.meta.routing)?;
        let enc = encode_record(&info).map_err(StoreError::Encode)?;
        dbs.meta.put(txn, &slot_key(slot), &enc).map_err(&err)?;
        Ok(Updated::Ok(info.meta.routing))
    }

    /// `mark_seen` inside a write transaction.
    fn mark_seen_in(
        &self,
        txn: &mut RwTxn<'_>,
        dbs: &Dbs,
        id: &BundleId,
        time: u64,
    ) -> Result<(), StoreError> {
        let err = self.err();
        let (old, slot) = match self.slot_of(txn, id)? {
            None => (None, 0),
            Some((t, slot)) => (Some(t), slot),
        };
        let stored = slot != 0 && dbs.meta.get(txn, &slot_key(slot)).map_err(&err)?.is_some();
        if stored {
            // The record's seen time only matters once it is removed.
            if old.is_some_and(|t| time > t) {
                dbs.ids
                    .put(txn, &id.0, &id_value(time, slot))
                    .map_err(&err)?;
            }
            return Ok(());
        }
        // A tombstone, an id whose stored copy was quarantined, or a new id.
        let new_time = match old {
            Some(t) if slot == 0 && t >= time => return Ok(()),
            Some(t) => {
                dbs.seen.delete(txn, &seen_key(t, id)).map_err(&err)?;
                t.max(time)
            }
            None => time,
        };
        dbs.ids
            .put(txn, &id.0, &id_value(new_time, 0))
            .map_err(&err)?;
        dbs.seen
            .put(txn, &seen_key(new_time, id), &[])
            .map_err(&err)?;
        Ok(())
    }

    /// One page of an index whose keys end with the insertion number. `start` and
    /// `end` bound the keys; `make` turns a key into the page's cursor.
    fn scan_index<C>(
        &self,
        db: Db,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        check: impl Fn(&RecordInfo, &[u8]) -> bool,
        cursor: impl Fn(&[u8]) -> Option<C>,
    ) -> Result<Page<C>, StoreError> {
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let mut items = Vec::new();
        let mut dangling = Vec::new();
        let mut corrupt = Vec::new();
        let mut last: Option<C> = None;
        let mut scanned = 0;
        for entry in db.range(&rtxn, &(start, end)).map_err(&err)? {
            let (key, _) = entry.map_err(&err)?;
            // A key too short to be an index key cannot come from this crate: it is
            // deleted, and not counted (each is met once).
            let (Some(slot), Some(c)) = (
                key.len().checked_sub(8).and_then(|at| read_u64(&key[at..])),
                cursor(key),
            ) else {
                dangling.push(key.to_vec());
                continue;
            };
            scanned += 1;
            last = Some(c);
            match self.read_info(&rtxn, slot)? {
                SlotRead::Missing => dangling.push(key.to_vec()),
                SlotRead::Ok(info) if check(&info, key) => items.push(info),
                SlotRead::Ok(_) => dangling.push(key.to_vec()),
                SlotRead::Corrupt(reason) => corrupt.push((slot, reason)),
            }
            if scanned == limit {
                break;
            }
        }
        drop(rtxn);
        let next = if scanned == limit { last } else { None };
        let mut quarantined = Vec::new();
        if !dangling.is_empty() || !corrupt.is_empty() {
            quarantined = self.write(0, |txn, dbs, _| {
                for key in &dangling {
                    db.delete(txn, key).map_err(&err)?;
                }
                let mut out = Vec::new();
                for (slot, reason) in corrupt {
                    if let Some(e) = quarantine_slot(dbs, txn, slot, None, reason, self.map_size)? {
                        out.push(e);
                    }
                }
                Ok(out)
            })?;
        }
        Ok(Page {
            items,
            next,
            quarantined,
        })
    }
}

/// What inserting `r` may add to the data file (a payload file is not in it).
fn grow_of(r: &NewRecord) -> u64 {
    let inline = if r.bytes.len() >= FILE_MIN {
        0
    } else {
        r.bytes.len() as u64
    };
    inline + 256 + 8 * r.meta.routing.holders.len() as u64
}

/// Writes zeros to `file` from `from` to `to`.
#[cfg(unix)]
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut off = from;
    while off < to {
        let n = usize::try_from((to - off).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Pre-allocation is implemented for Unix only; elsewhere it does nothing.
#[cfg(not(unix))]
fn write_zeros(_file: &File, _from: u64, _to: u64) -> std::io::Result<()> {
    Ok(())
}

fn get_u64(db: &Db, txn: &RoTxn<'_>, key: &[u8]) -> Result<Option<u64>, StoreError> {
    match db.get(txn, key).map_err(StoreError::Lmdb)? {
        None => Ok(None),
        Some(v) if v.len() == 8 => Ok(read_u64(v)),
        Some(v) => Err(StoreError::Corrupt(format!(
            "state value {} has {} bytes",
            String::from_utf8_lossy(key),
            v.len()
        ))),
    }
}

fn put_u64(
    db: &Db,
    txn: &mut RwTxn<'_>,
    key: &[u8],
    v: u64,
    map_size: usize,
) -> Result<(), StoreError> {
    db.put(txn, key, &v.to_be_bytes())
        .map_err(lmdb_err(map_size))
}

/// Moves `slot`'s record to the quarantine table and out of every index it can be
/// found in. Returns `None` if there is no record at `slot`.
fn quarantine_slot(
    dbs: &Dbs,
    txn: &mut RwTxn<'_>,
    slot: u64,
    id_hint: Option<BundleId>,
    reason: String,
    map_size: usize,
) -> Result<Option<QuarantineEntry>, StoreError> {
    let err = lmdb_err(map_size);
    let key = slot_key(slot);
    let meta_raw = dbs.meta.get(txn, &key).map_err(&err)?.map(<[u8]>::to_vec);
    let blob_raw = dbs.blob.get(txn, &key).map_err(&err)?.map(<[u8]>::to_vec);
    let (meta_raw, blob_raw) = match (meta_raw, blob_raw) {
        (None, None) => return Ok(None),
        (m, b) => (m.unwrap_or_default(), b.unwrap_or_default()),
    };
    let info = decode_record(&meta_raw)
        .ok()
        .filter(|i| i.insertion == slot);
    let id = info.as_ref().map(|i| i.id).or(id_hint);
    // The bytes this record was counted for: exact from the metadata or the intact
    // blob; only when both are unreadable is it estimated from the raw blob.
    let size = match (&info, decode_blob(&blob_raw)) {
        (Some(i), _) => i.size,
        (None, Ok(b)) => b.bundle_len(),
        (None, Err(_)) => blob_raw.len().saturating_sub(blob_len(0)) as u64,
    };
    dbs.meta.delete(txn, &key).map_err(&err)?;
    dbs.blob.delete(txn, &key).map_err(&err)?;
    for p in [
        ferry_core::Priority::Bulk,
        ferry_core::Priority::Normal,
        ferry_core::Priority::Expedited,
    ] {
        dbs.prio
            .delete(txn, &prio_key(inv_priority(p), slot))
            .map_err(&err)?;
    }
    if let Some(i) = &info {
        dbs.dest
            .delete(txn, &dest_key(&i.meta.destination, slot))
            .map_err(&err)?;
        if let Some(e) = i.meta.expires_at {
            dbs.expiry.delete(txn, &expiry_key(e, slot)).map_err(&err)?;
        }
    }
    let reason = record::bound_reason(reason);
    let value = encode_quarantine(id, &reason, &meta_raw, &blob_raw).map_err(StoreError::Encode)?;
    dbs.quarantine.put(txn, &key, &value).map_err(&err)?;
    let bytes = get_u64(&dbs.state, txn, K_BYTES)?.unwrap_or(0);
    put_u64(
        &dbs.state,
        txn,
        K_BYTES,
        bytes.saturating_sub(size),
        map_size,
    )?;
    let raw_len = quarantined_len(&meta_raw, &blob_raw);
    let q_bytes = get_u64(&dbs.state, txn, K_Q_BYTES)?.unwrap_or(0);
    put_u64(
        &dbs.state,
        txn,
        K_Q_BYTES,
        q_bytes.saturating_add(raw_len),
        map_size,
    )?;
    Ok(Some(QuarantineEntry {
        insertion: slot,
        id,
        reason,
        raw_len,
    }))
}

/// Writes a new record at `slot` (the next insertion number) with its index
/// entries; the caller checked duplicates and quotas and advances the counters.
fn put_record(
    dbs: &Dbs,
    txn: &mut RwTxn<'_>,
    files: &mut TxnFiles<'_>,
    r: &NewRecord,
    slot: u64,
    map_size: usize,
) -> Result<(), StoreError> {
    let err = lmdb_err(map_size);
    let info = RecordInfo {
        id: r.id,
        insertion: slot,
        size: r.bytes.len() as u64,
        meta: r.meta.clone(),
    };
    let key = slot_key(slot);
    let enc = encode_record(&info).map_err(StoreError::Encode)?;
    // Insertion numbers only grow, so `meta` and `blob` are appended to:
    // MDB_APPEND fills pages instead of splitting them in half, and fails
    // (rather than overwrites) should the counter ever be behind.
    dbs.meta
        .put_with_flags(txn, PutFlags::APPEND, &key, &enc)
        .map_err(append_err(map_size))?;
    if r.bytes.len() <= APPEND_COPY_MAX {
        let blob = encode_blob(&r.bytes);
        dbs.blob
            .put_with_flags(txn, PutFlags::APPEND, &key, &blob)
            .map_err(append_err(map_size))?;
    } else if r.bytes.len() >= FILE_MIN {
        let crc = files.write(slot, &r.id, &r.bytes)?;
        dbs.blob
            .put_with_flags(
                txn,
                PutFlags::APPEND,
                &key,
                &file_blob(crc, r.bytes.len() as u64),
            )
            .map_err(append_err(map_size))?;
    } else {
        // Large bundles go to overflow pages (no leaf splitting to avoid)
        // and are written in place, without a copy.
        let header = write_blob_header(&r.bytes);
        dbs.blob
            .put_reserved(txn, &key, blob_len(r.bytes.len()), |space| {
                use std::io::Write;
                space.write_all(&header)?;
                space.write_all(&r.bytes)
            })
            .map_err(&err)?;
    }
    let m = &info.meta;
    dbs.prio
        .put(txn, &prio_key(inv_priority(m.priority), slot), &[])
        .map_err(&err)?;
    dbs.dest
        .put(txn, &dest_key(&m.destination, slot), &[])
        .map_err(&err)?;
    if let Some(e) = m.expires_at {
        dbs.expiry
            .put(txn, &expiry_key(e, slot), &[])
            .map_err(&err)?;
    }
    dbs.ids
        .put(txn, &r.id.0, &id_value(seen_time(m), slot))
        .map_err(&err)?;
    Ok(())
}

/// Deletes a readable record and its index entries, leaving its id as a seen-set
/// tombstone.
fn delete_record(
    dbs: &Dbs,
    txn: &mut RwTxn<'_>,
    files: &mut TxnFiles<'_>,
    info: &RecordInfo,
    map_size: usize,
) -> Result<(), StoreError> {
    let err = lmdb_err(map_size);
    let slot = info.insertion;
    let key = slot_key(slot);
    let m = &info.meta;
    dbs.meta.delete(txn, &key).map_err(&err)?;
    if let Some(raw) = dbs.blob.get(txn, &key).map_err(&err)? {
        if is_file_ref(raw) {
            files.doom(slot);
        }
        dbs.blob.delete(txn, &key).map_err(&err)?;
    }
    dbs.prio
        .delete(txn, &prio_key(inv_priority(m.priority), slot))
        .map_err(&err)?;
    dbs.dest
        .delete(txn, &dest_key(&m.destination, slot))
        .map_err(&err)?;
    if let Some(e) = m.expires_at {
        dbs.expiry.delete(txn, &expiry_key(e, slot)).map_err(&err)?;
    }
    let t = match dbs
        .ids
        .get(txn, &info.id.0)
        .map_err(&err)?
        .and_then(parse_id_value)
    {
        Some((t, _)) => t,
        None => seen_time(m),
    };
    dbs.ids
        .put(txn, &info.id.0, &id_value(t, 0))
        .map_err(&err)?;
    dbs.seen
        .put(txn, &seen_key(t, &info.id), &[])
        .map_err(&err)?;
    let bytes = get_u64(&dbs.state, txn, K_BYTES)?.unwrap_or(0);
    put_u64(
        &dbs.state,
        txn,
        K_BYTES,
        bytes.saturating_sub(info.size),
        map_size,
    )
}

impl CustodyStore for LmdbStore {
    fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<InsertOutcome>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let map_size = self.map_size;
        let err = self.err();
        let grow: u64 = records.iter().map(grow_of).sum();
        self.write(grow, |txn, dbs, files| {
            let mut outcomes = Vec::with_capacity(records.len());
            let mut in_batch = HashSet::with_capacity(records.len());
            let (mut new_count, mut new_bytes) = (0u64, 0u64);
            for r in records {
                validate_routing(&r.id, &r.meta.routing)?;
                let outcome = if in_batch.contains(&r.id) {
                    InsertOutcome::Duplicate { still_stored: true }
                } else {
                    match self.slot_of(txn, &r.id)? {
                        Some((_, 0)) => InsertOutcome::Duplicate {
                            still_stored: false,
                        },
                        Some((_, slot))
                            if dbs.meta.get(txn, &slot_key(slot)).map_err(&err)?.is_some() =>
                        {
                            InsertOutcome::Duplicate { still_stored: true }
                        }
                        // Never stored, or its stored copy was quarantined: store it.
                        _ => InsertOutcome::Inserted,
                    }
                };
                if outcome == InsertOutcome::Inserted {
                    in_batch.insert(r.id);
                    new_count += 1;
                    new_bytes = new_bytes.saturating_add(r.bytes.len() as u64);
                }
                outcomes.push(outcome);
            }
            if new_count == 0 {
                return Ok(outcomes);
            }
            let count = dbs.meta.len(txn).map_err(&err)?;
            let q_count = dbs.quarantine.len(txn).map_err(&err)?;
            let bytes = get_u64(&dbs.state, txn, K_BYTES)?.unwrap_or(0);
            let q_bytes = get_u64(&dbs.state, txn, K_Q_BYTES)?.unwrap_or(0);
            check_quota(
                QuotaKind::Count,
                self.config.max_count,
                count.saturating_add(q_count),
                new_count,
            )?;
            check_quota(
                QuotaKind::Bytes,
                self.config.max_bytes,
                bytes.saturating_add(q_bytes),
                new_bytes,
            )?;
            let mut slot = get_u64(&dbs.state, txn, K_NEXT_SLOT)?.unwrap_or(1);
            for (r, o) in records.iter().zip(&outcomes) {
                if *o != InsertOutcome::Inserted {
                    continue;
                }
                put_record(dbs, txn, files, r, slot, map_size)?;
                slot = slot
                    .checked_add(1)
                    .ok_or(StoreError::Corrupt("insertion numbers exhausted".into()))?;
            }
            put_u64(&dbs.state, txn, K_NEXT_SLOT, slot, map_size)?;
            put_u64(
                &dbs.state,
                txn,
                K_BYTES,
                bytes.saturating_add(new_bytes),
                map_size,
            )?;
            Ok(outcomes)
        })
    }

    fn get(&self, id: &BundleId) -> Result<Option<Record>, StoreError> {
        self.fetch(id, true)
    }

    fn get_info(&self, id: &BundleId) -> Result<Option<RecordInfo>, StoreError> {
        Ok(self.fetch(id, false)?.map(|r| r.info))
    }

    fn contains(&self, id: &BundleId) -> Result<bool, StoreError> {
        let rtxn = self.env.read_txn().map_err(self.err())?;
        match self.slot_of(&rtxn, id)? {
            Some((_, slot)) if slot != 0 => Ok(self
                .dbs
                .meta
                .get(&rtxn, &slot_key(slot))
                .map_err(self.err())?
                .is_some()),
            _ => Ok(false),
        }
    }

    fn remove(&self, id: &BundleId) -> Result<bool, StoreError> {
        self.write(0, |txn, dbs, files| self.remove_in(txn, dbs, files, id))
    }

    fn update_routing(
        &self,
        id: &BundleId,
        update: &mut dyn FnMut(&mut RoutingMeta),
    ) -> Result<RoutingMeta, StoreError> {
        // A record found unreadable is quarantined in a committed transaction and
        // reported after it, so the quarantine is not rolled back with the update.
        self.write(0, |txn, dbs, _| {
            match self.update_in(txn, dbs, id, update)? {
                Updated::Ok(r) => Ok(Ok(r)),
                Updated::NotFound => Err(StoreError::NotFound { id: *id }),
                Updated::Quarantined(reason) => {
                    Ok(Err(StoreError::Quarantined { id: *id, reason }))
                }
            }
        })?
    }

    fn by_priority(
        &self,
        after: Option<PriorityCursor>,
        limit: usize,
    ) -> Result<Page<PriorityCursor>, StoreError> {
        let limit = page_limit(limit)?;
        let after_key = after.map(|c| prio_key(c.inv_priority, c.insertion));
        let start = match &after_key {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        self.scan_index(
            self.dbs.prio,
            start,
            Bound::Unbounded,
            limit,
            |info, key| key.first() == Some(&inv_priority(info.meta.priority)),
            |key| {
                Some(PriorityCursor {
                    inv_priority: *key.first()?,
                    insertion: read_u64(key.get(1..)?)?,
                })
            },
        )
    }

    fn by_destination(
        &self,
        destination: &Destination,
        after: Option<DestinationCursor>,
        limit: usize,
    ) -> Result<Page<DestinationCursor>, StoreError> {
        let limit = page_limit(limit)?;
        if matches!(after, Some(c) if c.destination != *destination) {
            return Err(StoreError::InvalidArgument(
                "cursor belongs to another destination",
            ));
        }
        let start_key = match after {
            Some(c) => dest_key(destination, c.insertion),
            None => dest_key(destination, 0),
        };
        let end_key = dest_key(destination, u64::MAX);
        let start = match after {
            Some(_) => Bound::Excluded(&start_key[..]),
            None => Bound::Included(&start_key[..]),
        };
        let prefix = dest_prefix(destination);
        let dest = *destination;
        self.scan_index(
            self.dbs.dest,
            start,
            Bound::Included(&end_key[..]),
            limit,
            |info, key| key.len() == 17 && key[..9] == prefix && info.meta.destination == dest,
            |key| {
                Some(DestinationCursor {
                    destination: dest,
                    insertion: read_u64(key.get(9..)?)?,
                })
            },
        )
    }

    fn purge_expired(&self, now: u64, limit: usize) -> Result<Vec<BundleId>, StoreError> {
        let limit = page_limit(limit)?;
        let map_size = self.map_size;
        let err = self.err();
        let end = expiry_key(now, u64::MAX);
        self.write(0, |txn, dbs, files| {
            let mut removed = Vec::new();
            // Batches of keys (the tree cannot change under a live iterator); dangling
            // and unreadable entries are cleaned up and do not count towards `limit`.
            loop {
                let mut keys = Vec::new();
                for entry in dbs
                    .expiry
                    .range(txn, &(Bound::Unbounded, Bound::Included(&end[..])))
                    .map_err(&err)?
                {
                    let (k, _) = entry.map_err(&err)?;
                    keys.push(k.to_vec());
                    if keys.len() == limit - removed.len() {
                        break;
                    }
                }
                if keys.is_empty() {
                    return Ok(removed);
                }
                for key in keys {
                    let slot = read_u64(key.get(8..).unwrap_or_default());
                    let read = match slot {
                        Some(s) => self.read_info(txn, s)?,
                        None => SlotRead::Missing,
                    };
                    match read {
                        SlotRead::Ok(info)
                            if info.meta.expires_at.map(|e| expiry_key(e, info.insertion))
                                == key.as_slice().try_into().ok() =>
                        {
                            delete_record(dbs, txn, files, &info, map_size)?;
                            removed.push(info.id);
                        }
                        SlotRead::Corrupt(reason) => {
                            dbs.expiry.delete(txn, &key).map_err(&err)?;
                            if let Some(s) = slot {
                                quarantine_slot(dbs, txn, s, None, reason, map_size)?;
                            }
                        }
                        _ => {
                            dbs.expiry.delete(txn, &key).map_err(&err)?;
                        }
                    }
                }
                if removed.len() == limit {
                    return Ok(removed);
                }
            }
        })
    }

    fn is_seen(&self, id: &BundleId) -> Result<bool, StoreError> {
        let rtxn = self.env.read_txn().map_err(self.err())?;
        match self.slot_of(&rtxn, id)? {
            None => Ok(false),
            Some((_, 0)) => Ok(true),
            Some((_, slot)) => Ok(self
                .dbs
                .meta
                .get(&rtxn, &slot_key(slot))
                .map_err(self.err())?
                .is_some()),
        }
    }

    fn mark_seen(&self, id: &BundleId, time: u64) -> Result<(), StoreError> {
        self.write(64, |txn, dbs, _| self.mark_seen_in(txn, dbs, id, time))
    }

    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let grow: u64 = ops
            .iter()
            .map(|op| match op {
                WriteOp::Insert(r) => grow_of(r),
                WriteOp::SetRoutingState(b) => b.len() as u64 + 64,
                _ => 64,
            })
            .sum();
        self.write(grow, |txn, dbs, files| {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(match op {
                    WriteOp::Insert(r) => {
                        WriteOutcome::Inserted(self.insert_in(txn, dbs, files, r)?)
                    }
                    WriteOp::Remove(id) => {
                        WriteOutcome::Removed(self.remove_in(txn, dbs, files, id)?)
                    }
                    WriteOp::Update(id, edit) => {
                        match self.update_in(txn, dbs, id, &mut |r| edit.apply(r))? {
                            Updated::Ok(r) => WriteOutcome::Updated(Some(r)),
                            Updated::NotFound | Updated::Quarantined(_) => {
                                WriteOutcome::Updated(None)
                            }
                        }
                    }
                    WriteOp::MarkSeen(id, t) => {
                        self.mark_seen_in(txn, dbs, id, *t)?;
                        WriteOutcome::MarkedSeen
                    }
                    WriteOp::SetRoutingState(b) => {
                        validate_routing_state(b)?;
                        dbs.state
                            .put(txn, K_ROUTING, b)
                            .map_err(lmdb_err(self.map_size))?;
                        WriteOutcome::RoutingStateSet
                    }
                });
            }
            Ok(out)
        })
    }

    fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let first = self.dbs.expiry.first(&rtxn).map_err(&err)?;
        Ok(first.and_then(|(k, _)| read_u64(k)))
    }

    fn purge_seen_before(&self, t: u64, limit: usize) -> Result<u64, StoreError> {
        let limit = page_limit(limit)?;
        let err = self.err();
        let end = seen_key(t, &BundleId([0; 32]));
        self.write(0, |txn, dbs, _| {
            let mut keys = Vec::new();
            for entry in dbs
                .seen
                .range(txn, &(Bound::Unbounded, Bound::Excluded(&end[..])))
                .map_err(&err)?
            {
                keys.push(entry.map_err(&err)?.0.to_vec());
                if keys.len() == limit {
                    break;
                }
            }
            let mut forgotten = 0;
            for key in &keys {
                dbs.seen.delete(txn, key).map_err(&err)?;
                let Some(id) = key.get(8..).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                    continue;
                };
                // Only a tombstone with this very time is forgotten; a re-marked or
                // re-stored id has another entry (or none) here.
                if let Some((time, 0)) = self.slot_of(txn, &BundleId(id))? {
                    if read_u64(key) == Some(time) {
                        dbs.ids.delete(txn, &id).map_err(&err)?;
                        forgotten += 1;
                    }
                }
            }
            Ok(forgotten)
        })
    }

    fn reserve_sequence(&self, n: u64) -> Result<Range<u64>, StoreError> {
        if n == 0 {
            return Err(StoreError::InvalidArgument(
                "reserve at least one sequence number",
            ));
        }
        let map_size = self.map_size;
        self.write(0, |txn, dbs, _| {
            let start = get_u64(&dbs.state, txn, K_NEXT_SEQ)?.unwrap_or(1);
            let end = start.checked_add(n).ok_or(StoreError::SequenceExhausted)?;
            put_u64(&dbs.state, txn, K_NEXT_SEQ, end, map_size)?;
            Ok(start..end)
        })
    }

    fn routing_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let v = self.dbs.state.get(&rtxn, K_ROUTING).map_err(&err)?;
        Ok(v.map(<[u8]>::to_vec))
    }

    fn quarantined(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        let limit = page_limit(limit)?;
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let after_key = after.map(slot_key);
        let start = match &after_key {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in self
            .dbs
            .quarantine
            .range(&rtxn, &(start, Bound::Unbounded))
            .map_err(&err)?
            .take(limit)
        {
            let (k, v) = entry.map_err(&err)?;
            let insertion = read_u64(k).unwrap_or(0);
            out.push(match decode_quarantine(v) {
                Ok(q) => QuarantineEntry {
                    insertion,
                    id: q.id,
                    raw_len: quarantined_len(q.meta_raw, q.blob_raw),
                    reason: q.reason,
                },
                Err(e) => QuarantineEntry {
                    insertion,
                    id: None,
                    reason: format!("(quarantine entry unreadable: {e})"),
                    raw_len: v.len() as u64,
                },
            });
        }
        Ok(out)
    }

    fn discard_quarantined(&self, insertion: u64) -> Result<bool, StoreError> {
        let map_size = self.map_size;
        let err = self.err();
        self.write(0, |txn, dbs, files| {
            let key = slot_key(insertion);
            let Some(raw) = dbs.quarantine.get(txn, &key).map_err(&err)? else {
                return Ok(false);
            };
            let (raw_len, id) = match decode_quarantine(raw) {
                Ok(q) => (quarantined_len(q.meta_raw, q.blob_raw), q.id),
                Err(_) => (raw.len() as u64, None),
            };
            dbs.quarantine.delete(txn, &key).map_err(&err)?;
            // Its payload file, if it had one, goes with it.
            files.doom(insertion);
            let q_bytes = get_u64(&dbs.state, txn, K_Q_BYTES)?.unwrap_or(0);
            put_u64(
                &dbs.state,
                txn,
                K_Q_BYTES,
                q_bytes.saturating_sub(raw_len),
                map_size,
            )?;
            // An id still pointing at the discarded copy is forgotten, so a fresh
            // copy can be stored.
            if let Some(id) = id {
                if let Some((_, slot)) = self.slot_of(txn, &id)? {
                    if slot == insertion {
                        dbs.ids.delete(txn, &id.0).map_err(&err)?;
                    }
                }
            }
            Ok(true)
        })
    }

    fn ids_after(&self, after: Option<&BundleId>, limit: usize) -> Result<IdPage, StoreError> {
        let limit = page_limit(limit)?;
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        let start: Bound<&[u8]> = match after {
            Some(a) => Bound::Excluded(&a.0[..]),
            None => Bound::Unbounded,
        };
        let mut page = IdPage::default();
        let mut scanned = 0;
        let range = (start, Bound::Unbounded);
        for entry in self.dbs.ids.range(&rtxn, &range).map_err(&err)? {
            let (key, value) = entry.map_err(&err)?;
            let id = BundleId(key.try_into().map_err(|_| {
                StoreError::Corrupt(format!("id index key of {} bytes", key.len()))
            })?);
            let (_, slot) = parse_id_value(value).ok_or_else(|| {
                StoreError::Corrupt(format!("id entry of {id} has {} bytes", value.len()))
            })?;
            scanned += 1;
            // An id whose stored copy was quarantined still points at its old
            // insertion number; it is not held any more.
            if slot != 0
                && self
                    .dbs
                    .meta
                    .get(&rtxn, &slot_key(slot))
                    .map_err(&err)?
                    .is_some()
            {
                page.ids.push(id);
            }
            if scanned == limit {
                page.next = Some(id);
                break;
            }
        }
        Ok(page)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let err = self.err();
        let rtxn = self.env.read_txn().map_err(&err)?;
        Ok(StoreStats {
            count: self.dbs.meta.len(&rtxn).map_err(&err)?,
            bytes: get_u64(&self.dbs.state, &rtxn, K_BYTES)?.unwrap_or(0),
            max_count: self.config.max_count,
            max_bytes: self.config.max_bytes,
            quarantined: self.dbs.quarantine.len(&rtxn).map_err(&err)?,
            quarantined_bytes: get_u64(&self.dbs.state, &rtxn, K_Q_BYTES)?.unwrap_or(0),
            seen: self.dbs.ids.len(&rtxn).map_err(&err)?,
        })
    }
}

/// `remove` of a record whose metadata is unreadable: it is quarantined (so the
/// corruption is reported) and its id becomes a seen-set tombstone.
fn removed_corrupt(
    dbs: &Dbs,
    txn: &mut RwTxn<'_>,
    id: &BundleId,
    t: u64,
    slot: u64,
    reason: String,
    map_size: usize,
) -> Result<bool, StoreError> {
    let err = lmdb_err(map_size);
    quarantine_slot(dbs, txn, slot, Some(*id), reason, map_size)?;
    dbs.ids.put(txn, &id.0, &id_value(t, 0)).map_err(&err)?;
    dbs.seen.put(txn, &seen_key(t, id), &[]).map_err(&err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! Corruption and quarantine: garbage is written into the tables through heed,
    //! under the store's own environment.

    use super::*;
    use crate::types::{BundleMeta, CustodyState};
    use ferry_core::{NodeHash, Priority};

    fn cfg() -> StoreConfig {
        StoreConfig {
            max_bytes: 1 << 20,
            max_count: 1000,
            map_size: None,
        }
    }

    fn id(n: u8) -> BundleId {
        BundleId([n; 32])
    }

    fn rec(n: u8, dest: Destination, expires_at: Option<u64>) -> NewRecord {
        NewRecord {
            id: id(n),
            bytes: vec![n; 100 + usize::from(n)],
            meta: BundleMeta {
                priority: Priority::Normal,
                destination: dest,
                source: NodeHash([9; 8]),
                expires_at,
                received_at: 1,
                routing: RoutingMeta {
                    holders: vec![],
                    copies_left: 2,
                    custody: CustodyState::Held,
                },
            },
        }
    }

    fn open() -> (tempfile::TempDir, LmdbStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path().join("s"), cfg()).unwrap();
        (dir, s)
    }

    /// Overwrites a table value through heed, as a disk fault would.
    fn clobber(s: &LmdbStore, db: Db, key: &[u8], value: &[u8]) {
        let mut wtxn = s.env.write_txn().unwrap();
        db.put(&mut wtxn, key, value).unwrap();
        wtxn.commit().unwrap();
    }

    fn slot(s: &LmdbStore, n: u8) -> u64 {
        s.get_info(&id(n)).unwrap().unwrap().insertion
    }

    const NODE_A: Destination = Destination::Node(NodeHash([1; 8]));

    #[test]
    fn garbage_metadata_is_quarantined_on_get() {
        let (_d, s) = open();
        s.insert_batch(&[
            rec(1, NODE_A, Some(10)),
            rec(2, NODE_A, Some(10)),
            rec(3, NODE_A, None),
        ])
        .unwrap();
        let k = slot_key(slot(&s, 2));
        clobber(&s, s.dbs.meta, &k, b"\x01garbage that is not a record");
        let before = s.stats().unwrap();

        let err = s.get(&id(2)).unwrap_err();
        match &err {
            StoreError::Quarantined { id: i, reason } => {
                assert_eq!(*i, id(2));
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Quarantined, got {other:?}"),
        }
        // Reported again, consistently, and listed.
        assert!(matches!(s.get(&id(2)), Err(StoreError::Quarantined { .. })));
        assert!(matches!(
            s.get_info(&id(2)),
            Err(StoreError::Quarantined { .. })
        ));
        assert!(!s.contains(&id(2)).unwrap());
        let q = s.quarantined(None, 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].id, Some(id(2)));
        assert_eq!(q[0].insertion, 2);
        let raw = s.quarantined_raw(2).unwrap().unwrap();
        assert_eq!(raw.meta, b"\x01garbage that is not a record");
        assert_eq!(
            decode_blob(&raw.blob).unwrap(),
            Blob::Inline(&[2u8; 102][..])
        );
        // Counted out of the store, into quarantine; exactly (the blob was intact).
        let after = s.stats().unwrap();
        assert_eq!(after.count, before.count - 1);
        assert_eq!(after.bytes, before.bytes - 102);
        assert_eq!(after.quarantined, 1);
        assert_eq!(after.quarantined_bytes, q[0].raw_len);
        // The others still work, and the indexes no longer list it.
        assert_eq!(s.get(&id(1)).unwrap().unwrap().bytes, vec![1; 101]);
        assert_eq!(s.get(&id(3)).unwrap().unwrap().bytes, vec![3; 103]);
        let ids = |p: Page<PriorityCursor>| p.items.iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(s.by_priority(None, 10).unwrap()), vec![id(1), id(3)]);
        let by_dest = s.by_destination(&NODE_A, None, 10).unwrap();
        assert_eq!(by_dest.items.len(), 2);
        assert!(by_dest.quarantined.is_empty());
        assert_eq!(s.purge_expired(10, 10).unwrap(), vec![id(1)]);
        // A fresh copy is accepted; discarding the entry frees its space.
        assert_eq!(
            s.insert(&rec(2, NODE_A, None)).unwrap(),
            InsertOutcome::Inserted
        );
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, vec![2; 102]);
        assert!(s.discard_quarantined(2).unwrap());
        assert!(!s.discard_quarantined(2).unwrap());
        let st = s.stats().unwrap();
        assert_eq!((st.quarantined, st.quarantined_bytes), (0, 0));
        assert!(s.get(&id(2)).unwrap().is_some());
    }

    #[test]
    fn garbage_metadata_met_by_listings_is_skipped_and_reported() {
        let (_d, s) = open();
        for n in 1..=6 {
            s.insert(&rec(n, NODE_A, Some(u64::from(n)))).unwrap();
        }
        // Two unreadable metadata records: random bytes, and a valid record of
        // another insertion number copied over (right CRC, wrong place).
        clobber(&s, s.dbs.meta, &slot_key(2), &[0xff; 40]);
        let other = s
            .dbs
            .meta
            .get(&s.env.read_txn().unwrap(), &slot_key(5))
            .unwrap()
            .unwrap()
            .to_vec();
        clobber(&s, s.dbs.meta, &slot_key(4), &other);

        let p1 = s.by_priority(None, 3).unwrap();
        assert_eq!(
            p1.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![id(1), id(3)]
        );
        assert_eq!(p1.quarantined.len(), 1);
        assert_eq!(p1.quarantined[0].insertion, 2);
        assert_eq!(p1.quarantined[0].id, None);
        assert!(
            p1.quarantined[0].reason.contains("version"),
            "{}",
            p1.quarantined[0].reason
        );
        let p2 = s.by_priority(p1.next, 3).unwrap();
        assert_eq!(
            p2.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![id(5), id(6)]
        );
        assert_eq!(p2.quarantined.len(), 1);
        assert!(
            p2.quarantined[0].reason.contains("insertion"),
            "{}",
            p2.quarantined[0].reason
        );
        // The second page ended on the last entry; the third finds nothing more.
        let p3 = s.by_priority(p2.next, 3).unwrap();
        assert!(p3.items.is_empty() && p3.next.is_none());
        // Gone from every listing: their destination and expiry entries dangle and
        // are dropped when met.
        let d = s.by_destination(&NODE_A, None, 100).unwrap();
        assert_eq!(d.items.len(), 4);
        assert!(d.quarantined.is_empty());
        let rtxn = s.env.read_txn().unwrap();
        assert_eq!(s.dbs.dest.len(&rtxn).unwrap(), 4);
        drop(rtxn);
        assert_eq!(
            s.purge_expired(100, 100).unwrap(),
            vec![id(1), id(3), id(5), id(6)]
        );
        let rtxn = s.env.read_txn().unwrap();
        assert_eq!(s.dbs.expiry.len(&rtxn).unwrap(), 0);
        drop(rtxn);
        // Nothing is held any more: neither purged nor quarantined ids are listed.
        assert!(s.ids_after(None, 100).unwrap().ids.is_empty());
        // The ids still resolve to their quarantine entries.
        assert!(matches!(s.get(&id(2)), Err(StoreError::Quarantined { .. })));
        assert!(matches!(
            s.update_routing(&id(4), &mut |_| {}),
            Err(StoreError::Quarantined { .. })
        ));
        let st = s.stats().unwrap();
        assert_eq!((st.count, st.bytes, st.quarantined), (0, 0, 2));
        assert_eq!(s.quarantined(Some(2), 10).unwrap().len(), 1);
    }

    #[test]
    fn garbage_bundle_bytes_are_quarantined_on_get() {
        let (_d, s) = open();
        s.insert_batch(&[rec(1, NODE_A, None), rec(2, NODE_A, None)])
            .unwrap();
        let k = slot_key(slot(&s, 1));
        // Flip one payload byte, keeping the frame.
        let mut blob = s
            .dbs
            .blob
            .get(&s.env.read_txn().unwrap(), &k)
            .unwrap()
            .unwrap()
            .to_vec();
        blob[50] ^= 0x10;
        clobber(&s, s.dbs.blob, &k, &blob);
        // Listings read metadata only; the record is still listed until read.
        assert_eq!(s.by_priority(None, 10).unwrap().items.len(), 2);
        match s.get(&id(1)) {
            Err(StoreError::Quarantined { reason, .. }) => {
                assert!(reason.contains("bundle bytes"), "{reason}")
            }
            other => panic!("expected Quarantined, got {other:?}"),
        }
        assert_eq!(s.by_priority(None, 10).unwrap().items.len(), 1);
        assert_eq!(s.stats().unwrap().bytes, 102);
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, vec![2; 102]);
        // A truncated blob and a missing one are reported the same way.
        let k2 = slot_key(slot(&s, 2));
        clobber(&s, s.dbs.blob, &k2, &[1, 2]);
        assert!(matches!(s.get(&id(2)), Err(StoreError::Quarantined { .. })));
        s.insert(&rec(3, NODE_A, None)).unwrap();
        let k3 = slot_key(slot(&s, 3));
        let mut wtxn = s.env.write_txn().unwrap();
        s.dbs.blob.delete(&mut wtxn, &k3).unwrap();
        wtxn.commit().unwrap();
        match s.get(&id(3)) {
            Err(StoreError::Quarantined { reason, .. }) => assert!(reason.contains("missing")),
            other => panic!("expected Quarantined, got {other:?}"),
        }
        let st = s.stats().unwrap();
        assert_eq!((st.count, st.bytes, st.quarantined), (0, 0, 3));
    }

    #[test]
    fn removing_or_updating_a_corrupt_record_quarantines_it() {
        let (_d, s) = open();
        s.insert_batch(&[rec(1, NODE_A, None), rec(2, NODE_A, None)])
            .unwrap();
        clobber(&s, s.dbs.meta, &slot_key(1), b"");
        clobber(&s, s.dbs.meta, &slot_key(2), &[1, 2, 3, 4, 5, 6, 7]);
        assert!(s.remove(&id(1)).unwrap());
        assert_eq!(
            s.insert(&rec(1, NODE_A, None)).unwrap(),
            InsertOutcome::Duplicate {
                still_stored: false
            }
        );
        assert!(matches!(
            s.update_routing(&id(2), &mut |r| r.copies_left = 0),
            Err(StoreError::Quarantined { .. })
        ));
        let q = s.quarantined(None, 10).unwrap();
        assert_eq!(
            q.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![Some(id(1)), Some(id(2))]
        );
        // Both were counted out exactly (their blobs were intact).
        assert_eq!(s.stats().unwrap().bytes, 0);
        assert_eq!(s.stats().unwrap().count, 0);
    }

    #[test]
    fn a_batch_quarantines_what_it_finds_unreadable_and_commits_the_rest() {
        use crate::types::{RoutingEdit, WriteOp, WriteOutcome};
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LmdbStore::open(dir.path(), cfg()).unwrap();
            s.insert_batch(&[
                rec(1, NODE_A, None),
                rec(2, NODE_A, None),
                rec(3, NODE_A, None),
            ])
            .unwrap();
            clobber(&s, s.dbs.meta, &slot_key(slot(&s, 1)), b"junk");
            clobber(&s, s.dbs.meta, &slot_key(slot(&s, 2)), b"junk");
            let out = s
                .apply_batch(&[
                    WriteOp::Update(id(1), RoutingEdit::SpendCopies(1)),
                    WriteOp::Remove(id(2)),
                    WriteOp::Update(id(3), RoutingEdit::SpendCopies(1)),
                    WriteOp::Insert(rec(4, NODE_A, None)),
                ])
                .unwrap();
            assert_eq!(out[0], WriteOutcome::Updated(None));
            assert_eq!(out[1], WriteOutcome::Removed(true));
            assert_eq!(out[3], WriteOutcome::Inserted(InsertOutcome::Inserted));
        }
        // Committed durably, as one transaction.
        let s = LmdbStore::open(dir.path(), cfg()).unwrap();
        assert_eq!(s.quarantined(None, 10).unwrap().len(), 2);
        assert!(matches!(s.get(&id(1)), Err(StoreError::Quarantined { .. })));
        assert!(s.is_seen(&id(2)).unwrap() && !s.contains(&id(2)).unwrap());
        assert_eq!(
            s.get_info(&id(3))
                .unwrap()
                .unwrap()
                .meta
                .routing
                .copies_left,
            1
        );
        assert!(s.contains(&id(4)).unwrap());
        let st = s.stats().unwrap();
        assert_eq!((st.count, st.bytes), (2, 103 + 104));
    }

    #[test]
    fn quarantined_records_still_count_against_quotas() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(
            dir.path(),
            StoreConfig {
                max_bytes: 1000,
                max_count: 3,
                map_size: None,
            },
        )
        .unwrap();
        s.insert_batch(&[rec(1, NODE_A, None), rec(2, NODE_A, None)])
            .unwrap();
        clobber(&s, s.dbs.meta, &slot_key(1), b"junk");
        assert!(s.get(&id(1)).is_err());
        s.insert(&rec(3, NODE_A, None)).unwrap();
        assert!(matches!(
            s.insert(&rec(4, NODE_A, None)),
            Err(StoreError::StoreFull {
                kind: QuotaKind::Count,
                used: 3,
                ..
            })
        ));
        assert!(s.discard_quarantined(1).unwrap());
        assert_eq!(
            s.insert(&rec(4, NODE_A, None)).unwrap(),
            InsertOutcome::Inserted
        );
    }

    #[test]
    fn malformed_bookkeeping_is_an_error_not_a_panic() {
        let (_d, s) = open();
        s.insert(&rec(1, NODE_A, None)).unwrap();
        s.insert(&rec(2, NODE_A, None)).unwrap();
        clobber(&s, s.dbs.ids, &id(1).0, &[1, 2, 3]);
        assert!(matches!(s.get(&id(1)), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            s.insert(&rec(1, NODE_A, None)),
            Err(StoreError::Corrupt(_))
        ));
        // Other records are unaffected.
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, vec![2; 102]);
        assert_eq!(
            s.insert(&rec(5, Destination::Group, None)).unwrap(),
            InsertOutcome::Inserted
        );
        // Index entries that are not even well-formed are dropped.
        clobber(&s, s.dbs.prio, &[7], &[]);
        let p = s.by_priority(None, 10).unwrap();
        assert_eq!(p.items.len(), 3);
        let rtxn = s.env.read_txn().unwrap();
        assert_eq!(s.dbs.prio.len(&rtxn).unwrap(), 3);
        drop(rtxn);
        // A malformed counter fails the operations that need it, and only them.
        clobber(&s, s.dbs.state, K_BYTES, &[1]);
        assert!(matches!(s.stats(), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            s.insert(&rec(6, NODE_A, None)),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, vec![2; 102]);
        assert_eq!(s.reserve_sequence(2).unwrap(), 1..3);
    }

    #[test]
    fn a_counter_behind_the_records_fails_instead_of_overwriting() {
        let (_d, s) = open();
        s.insert_batch(&[rec(1, NODE_A, None), rec(2, NODE_A, None)])
            .unwrap();
        clobber(&s, s.dbs.state, K_NEXT_SLOT, &2u64.to_be_bytes());
        assert!(matches!(
            s.insert(&rec(3, NODE_A, None)),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, vec![2; 102]);
        assert!(!s.contains(&id(3)).unwrap());
    }

    #[test]
    fn large_and_small_bundles_mix() {
        let (_d, s) = open();
        let mut big = rec(1, NODE_A, None);
        big.bytes = (0..APPEND_COPY_MAX + 1000).map(|i| i as u8).collect();
        s.insert_batch(&[rec(2, NODE_A, None), big.clone(), rec(3, NODE_A, None)])
            .unwrap();
        s.insert(&rec(4, NODE_A, None)).unwrap();
        assert_eq!(s.get(&id(1)).unwrap().unwrap().bytes, big.bytes);
        for n in 2..=4 {
            assert_eq!(
                s.get(&id(n)).unwrap().unwrap().bytes,
                vec![n; 100 + usize::from(n)]
            );
        }
        assert_eq!(
            s.stats().unwrap().bytes,
            big.bytes.len() as u64 + 102 + 103 + 104
        );
    }

    fn big_cfg() -> StoreConfig {
        StoreConfig {
            max_bytes: 64 << 20,
            ..cfg()
        }
    }

    fn big(n: u8, len: usize) -> NewRecord {
        let mut r = rec(n, NODE_A, None);
        r.bytes = (0..len).map(|i| (i as u8) ^ n).collect();
        r
    }

    /// `s` holds `big(n, len)`, byte for byte.
    #[track_caller]
    fn assert_holds_big(s: &LmdbStore, n: u8, len: usize) {
        assert_eq!(s.get(&id(n)).unwrap().unwrap().bytes, big(n, len).bytes);
    }

    fn payload_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(PAYLOAD_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn large_bundles_live_in_payload_files_that_go_with_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        let (a, b) = (big(1, FILE_MIN), big(2, FILE_MIN + 4321));
        s.insert_batch(&[a.clone(), rec(3, NODE_A, None), big(4, FILE_MIN - 1)])
            .unwrap();
        s.apply_batch(&[WriteOp::Insert(b.clone())]).unwrap();
        // Insertions 1 and 4 are at least FILE_MIN long; 3 just under stays in LMDB.
        assert_eq!(
            payload_files(dir.path()),
            [format!("{:016x}", 1), format!("{:016x}", 4)]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path().join(PAYLOAD_DIR)), 0o700);
            assert_eq!(mode(payload_path(&dir.path().join(PAYLOAD_DIR), 1)), 0o600);
        }
        assert_eq!(s.get(&id(1)).unwrap().unwrap().bytes, a.bytes);
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, b.bytes);
        assert_eq!(s.get(&id(4)).unwrap().unwrap().bytes.len(), FILE_MIN - 1);
        assert_eq!(
            s.get_info(&id(2)).unwrap().unwrap().size,
            b.bytes.len() as u64
        );
        let total = (2 * FILE_MIN + 4321 + FILE_MIN - 1 + 103) as u64;
        assert_eq!(s.stats().unwrap().bytes, total);
        // Reopened: the same.
        drop(s);
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        assert_eq!(s.get(&id(2)).unwrap().unwrap().bytes, b.bytes);
        assert_eq!(payload_files(dir.path()).len(), 2);
        // Removed, expired or through a batch: the file goes once committed.
        assert!(s.remove(&id(1)).unwrap());
        assert_eq!(payload_files(dir.path()), [format!("{:016x}", 4)]);
        s.apply_batch(&[WriteOp::Remove(id(2))]).unwrap();
        assert!(payload_files(dir.path()).is_empty());
        assert_eq!(s.get(&id(2)).unwrap(), None);
        let mut c = big(5, FILE_MIN);
        c.meta.expires_at = Some(10);
        s.insert(&c).unwrap();
        assert_eq!(payload_files(dir.path()).len(), 1);
        assert_eq!(s.purge_expired(11, 10).unwrap(), vec![id(5)]);
        assert!(payload_files(dir.path()).is_empty());
        assert_eq!(s.stats().unwrap().bytes, (FILE_MIN - 1 + 103) as u64);
        // Inserted and removed in one transaction: no file is left.
        s.apply_batch(&[WriteOp::Insert(big(6, FILE_MIN)), WriteOp::Remove(id(6))])
            .unwrap();
        assert!(payload_files(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_transaction_leaves_no_payload_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        // The routing state is checked after the insert wrote its file.
        let bad_state = vec![0u8; crate::MAX_ROUTING_STATE + 1];
        let out = s.apply_batch(&[
            WriteOp::Insert(big(1, FILE_MIN)),
            WriteOp::SetRoutingState(bad_state),
        ]);
        assert!(out.is_err());
        assert!(payload_files(dir.path()).is_empty());
        assert_eq!(s.get(&id(1)).unwrap(), None);
        // The insertion number is used again, and its file written afresh.
        s.insert(&big(2, FILE_MIN + 1)).unwrap();
        assert_eq!(payload_files(dir.path()), [format!("{:016x}", 1)]);
        assert_holds_big(&s, 2, FILE_MIN + 1);
        // Over quota: refused before anything is written.
        let small_dir = tempfile::tempdir().unwrap();
        let small = LmdbStore::open(small_dir.path(), cfg()).unwrap();
        assert!(matches!(
            small.insert(&big(3, FILE_MIN + 1)),
            Err(StoreError::StoreFull { .. })
        ));
        assert!(payload_files(small.path()).is_empty());
    }

    #[test]
    fn files_without_a_record_are_deleted_on_open_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        s.insert(&big(1, FILE_MIN)).unwrap();
        drop(s);
        // What a crash between a file's write and the commit leaves.
        let payloads = dir.path().join(PAYLOAD_DIR);
        fs::write(payloads.join(format!("{:016x}", 2)), b"half a bundle").unwrap();
        fs::write(payloads.join(format!("{:016x}", 77)), b"x").unwrap();
        fs::write(payloads.join("notes.txt"), b"not ours").unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        assert_eq!(
            payload_files(dir.path()),
            [format!("{:016x}", 1), "notes.txt".to_owned()]
        );
        assert_holds_big(&s, 1, FILE_MIN);
        // The next insert takes insertion 2 and writes its own file.
        s.insert(&big(2, FILE_MIN)).unwrap();
        assert_holds_big(&s, 2, FILE_MIN);
        // A file named after a record kept in LMDB is not that record's: it goes.
        s.insert(&rec(9, NODE_A, None)).unwrap();
        drop(s);
        fs::write(payloads.join(format!("{:016x}", 3)), b"stray").unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        assert_eq!(
            payload_files(dir.path()).len(),
            3,
            "{:?}",
            payload_files(dir.path())
        );
        assert!(!payloads.join(format!("{:016x}", 3)).exists());
        assert_eq!(s.get(&id(9)).unwrap().unwrap().bytes, vec![9; 109]);
    }

    #[test]
    fn a_damaged_or_missing_payload_file_quarantines_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        for n in 1..=3 {
            s.insert(&big(n, FILE_MIN)).unwrap();
        }
        let payloads = dir.path().join(PAYLOAD_DIR);
        let file = |n: u64| payloads.join(format!("{n:016x}"));
        // One byte changed, one file cut short, one gone.
        let mut bytes = fs::read(file(1)).unwrap();
        bytes[1000] ^= 0x40;
        fs::write(file(1), &bytes).unwrap();
        fs::write(file(2), &bytes[..10]).unwrap();
        fs::remove_file(file(3)).unwrap();
        for (n, reason) in [
            (1, "checksum mismatch"),
            (2, "10 bytes where the record says"),
            (3, "payload file missing"),
        ] {
            match s.get(&id(n)) {
                Err(StoreError::Quarantined { reason: r, .. }) => {
                    assert!(r.contains(reason), "{n}: {r}")
                }
                other => panic!("{n}: {other:?}"),
            }
        }
        let q = s.quarantined(None, 10).unwrap();
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|e| e.raw_len > FILE_MIN as u64), "{q:?}");
        assert_eq!(s.stats().unwrap().bytes, 0);
        // Their files count against the quota until discarded.
        let held = s.stats().unwrap().quarantined_bytes;
        assert!(held > 3 * FILE_MIN as u64, "{held}");
        // A quarantined record keeps its file (for inspection) across reopening...
        drop(s);
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        assert!(file(1).exists() && file(2).exists());
        // ...until it is discarded.
        assert!(s.discard_quarantined(1).unwrap());
        assert!(!file(1).exists());
        assert!(s.discard_quarantined(3).unwrap());
        let left = s.stats().unwrap().quarantined_bytes;
        assert!(
            left > FILE_MIN as u64 && left < 2 * FILE_MIN as u64,
            "{left}"
        );
        // A fresh copy can be stored again.
        s.insert(&big(1, FILE_MIN)).unwrap();
        assert_holds_big(&s, 1, FILE_MIN);
    }

    #[test]
    fn a_staged_payload_file_is_taken_by_its_insert_and_others_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        let staged = |dir: &Path| {
            payload_files(dir)
                .into_iter()
                .filter(|n| n.starts_with(STAGED_PREFIX))
                .count()
        };
        // Staged in two parts (storage and envelope), then inserted: renamed.
        let a = big(1, FILE_MIN + 10);
        let (head, tail) = a.bytes.split_at(FILE_MIN);
        assert!(s.stage_payload(&id(1), &[head, tail]).unwrap());
        assert_eq!(staged(dir.path()), 1);
        assert_eq!(payload_files(dir.path()).len(), 1);
        s.insert(&a).unwrap();
        assert_eq!(payload_files(dir.path()), [format!("{:016x}", 1)]);
        assert_holds_big(&s, 1, FILE_MIN + 10);
        // Staged bytes that are not the inserted ones are not used (and go).
        let mut wrong = big(2, FILE_MIN).bytes;
        wrong[7] ^= 1;
        assert!(s.stage_payload(&id(2), &[&wrong]).unwrap());
        s.insert(&big(2, FILE_MIN)).unwrap();
        assert_holds_big(&s, 2, FILE_MIN);
        assert_eq!(payload_files(dir.path()).len(), 2);
        // Small bundles, and bundles already stored, are not staged.
        assert!(!s.stage_payload(&id(3), &[&[0u8; 100]]).unwrap());
        assert!(!s.stage_payload(&id(2), &[&big(2, FILE_MIN).bytes]).unwrap());
        assert_eq!(staged(dir.path()), 0);
        // At most STAGED_MAX wait; the oldest goes first (the first two are not
        // taken, the third is).
        let bytes = big(10, FILE_MIN).bytes;
        for n in 10..10 + STAGED_MAX as u8 + 2 {
            assert!(s.stage_payload(&id(n), &[&bytes]).unwrap());
        }
        assert_eq!(staged(dir.path()), STAGED_MAX);
        let mut r10 = big(10, FILE_MIN);
        r10.id = id(12);
        s.insert(&r10).unwrap();
        assert_eq!(staged(dir.path()), STAGED_MAX - 1);
        // Staged twice: the newer file stays, the older goes.
        assert!(s.stage_payload(&id(13), &[&bytes]).unwrap());
        assert_eq!(staged(dir.path()), STAGED_MAX - 1);
        // A staged file changed under the store is not taken.
        let victim = payload_files(dir.path())
            .into_iter()
            .find(|n| n.starts_with(STAGED_PREFIX))
            .unwrap();
        let before = payload_files(dir.path()).len();
        fs::write(dir.path().join(PAYLOAD_DIR).join(&victim), b"short").unwrap();
        drop(victim);
        for n in 14..10 + STAGED_MAX as u8 + 2 {
            let mut r = big(10, FILE_MIN);
            r.id = id(n);
            s.insert(&r).unwrap();
            assert_eq!(s.get(&id(n)).unwrap().unwrap().bytes, bytes);
        }
        assert!(payload_files(dir.path()).len() <= before);
        // Closing deletes what was never inserted; so does opening after a crash.
        let stored = payload_files(dir.path()).len() - staged(dir.path());
        drop(s);
        assert_eq!(payload_files(dir.path()).len(), stored);
        fs::write(dir.path().join(PAYLOAD_DIR).join("staged-1-1"), b"x").unwrap();
        let s = LmdbStore::open(dir.path(), big_cfg()).unwrap();
        assert_eq!(payload_files(dir.path()).len(), stored);
        assert_eq!(staged(dir.path()), 0);
        assert_holds_big(&s, 2, FILE_MIN);
    }

    #[test]
    fn a_version_1_store_opens_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LmdbStore::open(dir.path(), cfg()).unwrap();
            s.insert(&rec(1, NODE_A, None)).unwrap();
            clobber(&s, s.dbs.state, K_FORMAT, &1u64.to_be_bytes());
        }
        fs::remove_dir(dir.path().join(PAYLOAD_DIR)).unwrap();
        let s = LmdbStore::open(dir.path(), cfg()).unwrap();
        let rtxn = s.env.read_txn().unwrap();
        assert_eq!(get_u64(&s.dbs.state, &rtxn, K_FORMAT).unwrap(), Some(2));
        drop(rtxn);
        assert!(dir.path().join(PAYLOAD_DIR).is_dir());
        assert_eq!(s.get(&id(1)).unwrap().unwrap().bytes, vec![1; 101]);
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LmdbStore::open(dir.path(), cfg()).unwrap();
            clobber(&s, s.dbs.state, K_FORMAT, &3u64.to_be_bytes());
        }
        assert!(matches!(
            LmdbStore::open(dir.path(), cfg()),
            Err(StoreError::UnsupportedFormat {
                found: 3,
                supported: 2
            })
        ));
    }

    #[test]
    fn preallocation_grows_the_file_ahead_and_can_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let s = LmdbStore::open(dir.path(), cfg()).unwrap();
        s.set_preallocation(true);
        s.insert(&rec(1, NODE_A, None)).unwrap();
        let len = fs::metadata(dir.path().join("data.mdb")).unwrap().len();
        assert!(len >= 1 << 20, "file is {len} bytes");
        let used = (s.env.info().last_page_number as u64 + 1) * u64::from(s.env.stat().page_size);
        assert!(used < len);
        s.set_preallocation(false);
        for n in 2..50 {
            s.insert(&rec(n, NODE_A, None)).unwrap();
        }
        s.set_preallocation(true);
        for n in 50..120 {
            s.insert(&rec(n, NODE_A, None)).unwrap();
        }
        // LMDB ignores the zeros past its last page, on reopen too.
        drop(s);
        let s = LmdbStore::open(dir.path(), cfg()).unwrap();
        for n in 1..120 {
            assert_eq!(
                s.get(&id(n)).unwrap().unwrap().bytes,
                vec![n; 100 + usize::from(n)]
            );
        }
        assert_eq!(s.stats().unwrap().count, 119);
    }
}
