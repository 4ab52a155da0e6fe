//! The drive handle: FORMAT, folders, manifests, listing, removal and quarantine.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{drive_io, DriveError};
use crate::format::{hex, is_lower_hex, parse_hex};
use crate::fsio::{random_16, sync_dir, temp_name, Budget, BudgetFile};

/// The folder on the mount that holds everything.
pub const FERRY_DIR: &str = "ferry";
/// The FORMAT file's first line (without the newline).
pub const FORMAT_MAGIC: &str = "ferry-drive 1";
/// The FORMAT file's size: magic line, 32 hex chars, newline.
const FORMAT_LEN: usize = FORMAT_MAGIC.len() + 1 + 32 + 1;
/// Largest manifest name.
pub const MAX_NAME_LEN: usize = 64;

/// Limits on what is written and accepted. Readers refuse packs beyond them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveLimits {
    /// Most entries in one pack (default 65,536).
    pub max_entries: usize,
    /// Largest body (bundle) in a pack (default `ferry_core::DEFAULT_MAX_BUNDLE_BYTES`,
    /// 128 MiB).
    pub max_body_bytes: u64,
    /// Largest pack file (default 1 GiB).
    pub max_pack_bytes: u64,
    /// Largest manifest file (default 16 MiB).
    pub max_manifest_bytes: u64,
}

impl Default for DriveLimits {
    fn default() -> Self {
        Self {
            max_entries: 65_536,
            max_body_bytes: ferry_core::DEFAULT_MAX_BUNDLE_BYTES as u64,
            max_pack_bytes: 1 << 30,
            max_manifest_bytes: 16 << 20,
        }
    }
}

/// A drive's random id, from its FORMAT file. Displays as 32 lowercase hex chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriveId(pub [u8; 16]);

impl fmt::Display for DriveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A pack file on the drive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackRef {
    /// The 16 lowercase hex chars of `packs/<name>.fpk`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its size when listed.
    pub size: u64,
}

/// What `packs/` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackList {
    /// Well-named pack files, sorted by name.
    pub packs: Vec<PackRef>,
    /// Everything else in `packs/` (sorted): report or quarantine it.
    pub stray: Vec<PathBuf>,
}

/// A manifest file read from `nodes/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// The `<name>` of `nodes/<name>.fm`.
    pub name: String,
    /// Its bytes (opaque here: the node seals and opens them).
    pub bytes: Vec<u8>,
}

/// What `nodes/` holds.
#[derive(Debug, Default)]
pub struct ManifestList {
    /// Manifests read, sorted by name.
    pub manifests: Vec<ManifestFile>,
    /// Manifests that could not be read (too large, I/O errors), each naming its file.
    pub errors: Vec<DriveError>,
    /// Files in `nodes/` that are not `<name>.fm` with a valid name (sorted).
    pub stray: Vec<PathBuf>,
}

/// An open Ferry drive: the `ferry/` folder on a mounted USB drive (or any folder).
///
/// All writes go through a temp file in `tmp/`, are fsynced, renamed into place and
/// the folder fsynced, so a reader never sees a partial file.
#[derive(Debug)]
pub struct Drive {
    pub(crate) ferry: PathBuf,
    id: DriveId,
    pub(crate) limits: DriveLimits,
    pub(crate) budget: Budget,
}

impl Drive {
    /// Opens `<mount>/ferry`, or creates it (with a random drive id, FORMAT written
    /// atomically) if it has no FORMAT file yet.
    pub fn open_or_init(mount: &Path, limits: DriveLimits) -> Result<Drive, DriveError> {
        Self::open_inner(mount, limits, true)
    }

    /// Opens `<mount>/ferry`; [`DriveError::NotADrive`] if it has no FORMAT file.
    pub fn open(mount: &Path, limits: DriveLimits) -> Result<Drive, DriveError> {
        Self::open_inner(mount, limits, false)
    }

    fn open_inner(mount: &Path, limits: DriveLimits, init: bool) -> Result<Drive, DriveError> {
        match fs::metadata(mount) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(DriveError::Io {
                    path: mount.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DriveError::Gone {
                    path: mount.to_owned(),
                })
            }
            Err(source) => {
                return Err(DriveError::Io {
                    path: mount.to_owned(),
                    source,
                })
            }
        }
        let ferry = mount.join(FERRY_DIR);
        let mut drive = Drive {
            ferry,
            id: DriveId([0; 16]),
            limits,
            budget: Budget::default(),
        };
        let format = drive.ferry.join("FORMAT");
        match fs::symlink_metadata(&format) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !init {
                    return Err(DriveError::NotADrive { path: format });
                }
                drive.init_format()?;
            }
            Err(source) => {
                return Err(DriveError::Io {
                    path: format,
                    source,
                })
            }
        }
        drive.id = drive.read_format()?;
        drive.ensure_dirs()?;
        Ok(drive)
    }

    fn init_format(&self) -> Result<(), DriveError> {
        let mkdir = |p: &Path| match fs::create_dir(p) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(DriveError::Io {
                path: p.to_owned(),
                source: e,
            }),
            _ => Ok(()),
        };
        mkdir(&self.ferry)?;
        mkdir(&self.tmp_dir())?;
        let id = random_16().map_err(|source| DriveError::Io {
            path: self.ferry.join("FORMAT"),
            source,
        })?;
        let text = format!("{FORMAT_MAGIC}\n{}\n", hex(&id));
        self.write_atomic(&self.ferry, "FORMAT", text.as_bytes())?;
        tracing::info!(drive = %self.ferry.display(), id = %hex(&id), "initialised Ferry drive");
        Ok(())
    }

    fn read_format(&self) -> Result<DriveId, DriveError> {
        let path = self.ferry.join("FORMAT");
        let f = File::open(&path).map_err(|e| self.io(&path, e))?;
        let mut buf = Vec::with_capacity(FORMAT_LEN + 1);
        // One byte more than a valid FORMAT, so a longer file is noticed; never more.
        f.take(FORMAT_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.io(&path, e))?;
        parse_format(&buf).map_err(|reason| DriveError::BadFormat { path, reason })
    }

    fn ensure_dirs(&self) -> Result<(), DriveError> {
        for dir in [self.packs_dir(), self.nodes_dir(), self.tmp_dir()] {
            if !dir.is_dir() {
                match fs::create_dir(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(self.io(&dir, e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The drive's id.
    pub fn id(&self) -> DriveId {
        self.id
    }

    /// `<mount>/ferry`.
    pub fn ferry_dir(&self) -> &Path {
        &self.ferry
    }

    /// The limits this handle writes and reads with.
    pub fn limits(&self) -> &DriveLimits {
        &self.limits
    }

    /// Fault injection for tests: from now on, at most `bytes` more bytes may be
    /// written through this handle; a write past that writes what fits and then fails
    /// as ENOSPC does ([`DriveError::Full`]). `None` removes the budget.
    pub fn set_write_budget(&mut self, bytes: Option<u64>) {
        self.budget.set(bytes);
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.ferry.join("packs")
    }

    pub(crate) fn nodes_dir(&self) -> PathBuf {
        self.ferry.join("nodes")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.ferry.join("tmp")
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.ferry.join("quarantine")
    }

    pub(crate) fn io(&self, path: &Path, e: io::Error) -> DriveError {
        drive_io(&self.ferry, path, e)
    }

    /// Creates a new temp file in `tmp/`.
    pub(crate) fn create_temp(&self, suffix: &str) -> Result<(PathBuf, File), DriveError> {
        let dir = self.tmp_dir();
        if !dir.is_dir() {
            if let Err(e) = fs::create_dir(&dir) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(self.io(&dir, e));
                }
            }
        }
        let name = temp_name(suffix).map_err(|e| self.io(&dir, e))?;
        let path = dir.join(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.io(&path, e))?;
        Ok((path, f))
    }

    /// Removes a temp file this handle wrote, giving its bytes back to the write
    /// budget (as the space of a real drive comes back).
    pub(crate) fn remove_temp(&self, path: &Path) {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(path).is_ok() {
            self.budget.refund_bytes(size);
        }
    }

    /// Writes `dir/name` atomically: temp in `tmp/`, fsync, rename, fsync `dir`.
    fn write_atomic(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DriveError> {
        let (tmp, f) = self.create_temp("w")?;
        let result = (|| {
            let mut w = BudgetFile::new(f, &self.budget);
            w.write_all(bytes).map_err(|e| self.io(&tmp, e))?;
            w.file.sync_all().map_err(|e| self.io(&tmp, e))?;
            drop(w);
            let dest = dir.join(name);
            fs::rename(&tmp, &dest).map_err(|e| self.io(&dest, e))?;
            sync_dir(dir).map_err(|e| self.io(dir, e))
        })();
        if result.is_err() {
            self.remove_temp(&tmp);
        }
        result
    }

    /// Removes every file in `tmp/` (left by a killed or interrupted writer). Call it
    /// at the start of a sync, before writing. Returns how many were removed.
    pub fn clean_tmp(&self) -> Result<usize, DriveError> {
        let dir = self.tmp_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.ferry.is_dir() => return Ok(0),
            Err(e) => return Err(self.io(&dir, e)),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&dir, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| self.io(&path, e))?;
            let removed = if ft.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path, e)),
            }
        }
        if n > 0 {
            sync_dir(&dir).map_err(|e| self.io(&dir, e))?;
            tracing::debug!(removed = n, dir = %dir.display(), "removed stale temp files");
        }
        Ok(n)
    }

    /// The packs on the drive, sorted by name; anything in `packs/` that is not a
    /// regular file named `<16 lowercase hex>.fpk` is returned as `stray`.
    pub fn list_packs(&self) -> Result<PackList, DriveError> {
        let dir = self.packs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.ferry.is_dir() => {
                return Ok(PackList::default())
            }
            Err(e) => return Err(self.io(&dir, e)),
        };
        let mut list = PackList::default();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&dir, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| self.io(&path, e))?;
            let file_name = entry.file_name();
            let stem = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".fpk"))
                .filter(|s| is_lower_hex(s, 16));
            match stem {
                Some(stem) if ft.is_file() => {
                    let size = entry.metadata().map_err(|e| self.io(&path, e))?.len();
                    list.packs.push(PackRef {
                        name: stem.to_owned(),
                        path,
                        size,
                    });
                }
                _ => list.stray.push(path),
            }
        }
        list.packs.sort();
        list.stray.sort();
        Ok(list)
    }

    /// Checks that `pack` names a pack file of this drive.
    pub(crate) fn check_pack_ref(&self, pack: &PackRef) -> Result<(), DriveError> {
        let expected = self.packs_dir().join(format!("{}.fpk", pack.name));
        if !is_lower_hex(&pack.name, 16) || pack.path != expected {
            return Err(DriveError::BadName {
                name: shorten(&pack.path.display().to_string()),
                reason: "not a pack of this drive (packs/<16 hex>.fpk)",
            });
        }
        Ok(())
    }

    /// Deletes a pack (when all its bundles have expired). Already gone is fine.
    pub fn remove_pack(&self, pack: &PackRef) -> Result<(), DriveError> {
        self.check_pack_ref(pack)?;
        match fs::remove_file(&pack.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.ferry.is_dir() => return Ok(()),
            Err(e) => return Err(self.io(&pack.path, e)),
        }
        let dir = self.packs_dir();
        sync_dir(&dir).map_err(|e| self.io(&dir, e))
    }

    /// Moves a file (or folder) inside `ferry/` into `ferry/quarantine/<name>.<n>`,
    /// where `n` is the first free counter, so later syncs do not read it again.
    /// Returns the new path.
    pub fn quarantine_file(&self, path: &Path) -> Result<PathBuf, DriveError> {
        let file_name = match (path.strip_prefix(&self.ferry), path.file_name()) {
            (Ok(rel), Some(name))
                if rel.components().count() >= 2
                    && !rel.starts_with("quarantine")
                    && rel
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))) =>
            {
                name.to_owned()
            }
            _ => {
                return Err(DriveError::NotOnDrive {
                    path: path.to_owned(),
                })
            }
        };
        let qdir = self.quarantine_dir();
        if let Err(e) = fs::create_dir(&qdir) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(self.io(&qdir, e));
            }
        }
        let mut dest = None;
        for n in 1..=10_000u32 {
            let mut name = file_name.clone();
            name.push(format!(".{n}"));
            let candidate = qdir.join(name);
            if fs::symlink_metadata(&candidate).is_err() {
                dest = Some(candidate);
                break;
            }
        }
        let dest = match dest {
            Some(d) => d,
            None => {
                let mut name = file_name.clone();
                let r = random_16().map_err(|e| self.io(&qdir, e))?;
                name.push(format!(".{}", hex(&r)));
                qdir.join(name)
            }
        };
        fs::rename(path, &dest).map_err(|e| self.io(path, e))?;
        sync_dir(&qdir).map_err(|e| self.io(&qdir, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(|e| self.io(parent, e))?;
        }
        tracing::warn!(from = %path.display(), to = %dest.display(), "quarantined");
        Ok(dest)
    }

    /// Replaces `nodes/<name>.fm` atomically with `bytes`. `name` must match
    /// `[a-z0-9-]{1,64}`; at most `max_manifest_bytes`.
    pub fn write_manifest(&self, name: &str, bytes: &[u8]) -> Result<(), DriveError> {
        check_manifest_name(name)?;
        let dir = self.nodes_dir();
        let file = format!("{name}.fm");
        if bytes.len() as u64 > self.limits.max_manifest_bytes {
            return Err(DriveError::ManifestTooLarge {
                path: dir.join(file),
                len: bytes.len() as u64,
                limit: self.limits.max_manifest_bytes,
            });
        }
        if !dir.is_dir() {
            if let Err(e) = fs::create_dir(&dir) {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(self.io(&dir, e));
                }
            }
        }
        self.write_atomic(&dir, &file, bytes)
    }

    /// Reads every `nodes/<name>.fm`. Unreadable or oversized ones are listed in
    /// `errors`; other files in `stray`. Fails only if `nodes/` itself cannot be read.
    pub fn read_manifests(&self) -> Result<ManifestList, DriveError> {
        let dir = self.nodes_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.ferry.is_dir() => {
                return Ok(ManifestList::default())
            }
            Err(e) => return Err(self.io(&dir, e)),
        };
        let mut list = ManifestList::default();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&dir, e))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let name = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".fm"))
                .filter(|n| check_manifest_name(n).is_ok());
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            match name {
                Some(name) if is_file => match self.read_manifest_file(&path) {
                    Ok(bytes) => list.manifests.push(ManifestFile {
                        name: name.to_owned(),
                        bytes,
                    }),
                    Err(e) => list.errors.push(e),
                },
                _ => list.stray.push(path),
            }
        }
        list.manifests.sort_by(|a, b| a.name.cmp(&b.name));
        list.stray.sort();
        Ok(list)
    }

    fn read_manifest_file(&self, path: &Path) -> Result<Vec<u8>, DriveError> {
        let limit = self.limits.max_manifest_bytes;
        let f = File::open(path).map_err(|e| self.io(path, e))?;
        let len = f.metadata().map_err(|e| self.io(path, e))?.len();
        if len > limit {
            return Err(DriveError::ManifestTooLarge {
                path: path.to_owned(),
                len,
                limit,
            });
        }
        // `len` ≤ limit; the read is bounded by limit + 1 in case the file grows.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(path, e))?;
        if bytes.len() as u64 > limit {
            return Err(DriveError::ManifestTooLarge {
                path: path.to_owned(),
                len: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }
}

/// Checks a manifest name: `[a-z0-9-]{1,64}`.
pub fn check_manifest_name(name: &str) -> Result<(), DriveError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 64 characters"
    } else if !name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    {
        "only a-z, 0-9 and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(DriveError::BadName {
        name: shorten(name),
        reason,
    })
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses a FORMAT file's bytes.
fn parse_format(buf: &[u8]) -> Result<DriveId, String> {
    let Some(rest) = buf.strip_prefix(b"ferry-drive ") else {
        return Err("not a Ferry drive FORMAT file".into());
    };
    let version_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let version = &rest[..version_end];
    if version != b"1" {
        let shown: String = String::from_utf8_lossy(version).chars().take(20).collect();
        return Err(format!(
            "unsupported drive format version {shown:?} (this build reads version 1)"
        ));
    }
    if buf.len() != FORMAT_LEN || buf[FORMAT_LEN - 1] != b'\n' {
        return Err("malformed FORMAT file (expected \"ferry-drive 1\\n<32 hex>\\n\")".into());
    }
    let hex_part = std::str::from_utf8(&buf[FORMAT_MAGIC.len() + 1..FORMAT_LEN - 1])
        .map_err(|_| "drive id is not lowercase hex".to_owned())?;
    let mut id = [0u8; 16];
    if !parse_hex(hex_part, &mut id) {
        return Err("drive id is not 32 lowercase hex characters".into());
    }
    Ok(DriveId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parsing() {
        let ok = b"ferry-drive 1\n00112233445566778899aabbccddeeff\n";
        assert_eq!(
            parse_format(ok).unwrap().to_string(),
            "00112233445566778899aabbccddeeff"
        );
        assert!(
            parse_format(b"ferry-drive 2\n00112233445566778899aabbccddeeff\n")
                .unwrap_err()
                .contains("version \"2\"")
        );
        assert!(parse_format(b"").is_err());
        assert!(parse_format(b"ferry-drive 1\n00112233445566778899AABBCCDDEEFF\n").is_err());
        assert!(parse_format(b"ferry-drive 1\n00112233445566778899aabbccddeeff").is_err());
        assert!(parse_format(b"ferry-drive 1\n00112233445566778899aabbccddeeff\n\n").is_err());
        assert!(parse_format(b"ferry-drive 1\n\xff\xfe").is_err());
        assert!(parse_format(b"ferry-drive 1").is_err());
    }

    #[test]
    fn manifest_names() {
        for ok in ["a", "node-1", &"z".repeat(64), "0-9"] {
            check_manifest_name(ok).unwrap();
        }
        for bad in ["", "A", "a_b", "a.b", "../x", &"z".repeat(65), "é"] {
            assert!(matches!(
                check_manifest_name(bad),
                Err(DriveError::BadName { .. })
            ));
        }
    }
}
