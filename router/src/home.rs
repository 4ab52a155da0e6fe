//! A node's home directory: identity, realm secrets, configuration and store.
//!
//! ```text
//! HOME/
//!   ferry.toml         configuration (commented defaults written by `ferry init`)
//!   identity.key       Ed25519 secret, mode 0600, refused if group or others can read it
//!   realms/NAME.key    realm secret as NAME:SECRET, mode 0600, same rule
//!   store/             LMDB custody store
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_core::rand_core::OsRng;
use ferry_core::{Identity, Keyring, Limits, NodeId, Realm};
use ferry_storage::{LmdbStore, StoreConfig};

use crate::config::{Config, ConfigError};

/// Config file name.
pub const CONFIG_FILE: &str = "ferry.toml";
/// Identity key file name.
pub const IDENTITY_FILE: &str = "identity.key";
/// Realm key folder.
pub const REALMS_DIR: &str = "realms";
/// Store folder.
pub const STORE_DIR: &str = "store";
/// Largest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Why a home cannot be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `ferry init` on a home that already has an identity.
    #[error("{0} already holds a node identity; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// No identity in the home.
    #[error("{0} has no node identity: run `ferry init --home {0}` first")]
    NotInitialised(PathBuf),
    /// A key file group or others can read or write.
    #[error(
        "{path} has mode {mode:03o}: group and others must have no access to key files; \
         fix it with `chmod 600 {path}`"
    )]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file with bad contents.
    #[error("{path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] ferry_storage::StoreError),
    /// Another process (a running `ferry run`) holds the home's lock.
    #[error("{0} is in use by a running node")]
    Locked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The lock file that one process at a time holds on a home.
pub const LOCK_FILE: &str = "ferry.lock";

/// An exclusive lock on a node home, held by `ferry run` (and by a standalone
/// `ferry drive sync`) for as long as it works on the store; released on drop, and
/// by the kernel if the process dies.
#[derive(Debug)]
pub struct HomeLock {
    _file: fs::File,
}

impl HomeLock {
    /// Takes the lock on `dir`, or [`HomeError::Locked`] at once if a running
    /// process holds it.
    pub fn try_take(dir: &Path) -> Result<HomeLock, HomeError> {
        let path = dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| HomeError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(HomeError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => Err(HomeError::Io { path, source }),
        }
    }
}

/// Writes `data` to `path` atomically (temp file, fsync, rename, fsync dir) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), HomeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // The umask may have narrowed the mode; never widen a key file beyond `mode`.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads a private key file, refusing it if group or others have any access.
pub fn read_private(path: &Path) -> Result<String, HomeError> {
    let f = File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HomeError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    f.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|e| HomeError::KeyFile {
            path: path.to_owned(),
            reason: format!("unreadable: {e}"),
        })?;
    Ok(text)
}

/// Settings `ferry init` takes.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Configuration to write (flags already applied).
    pub config: Config,
    /// Realms given as `NAME:SECRET`; names in `config.node.realms` without a secret
    /// here get a fresh random secret.
    pub realm_secrets: Vec<Realm>,
}

/// An opened node home.
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    config: Config,
    keyring: Keyring,
}

impl Home {
    /// Creates a new home: identity, realm keys, config and an empty store.
    pub fn init(dir: &Path, opts: InitOptions) -> Result<(NodeId, Vec<Realm>), HomeError> {
        opts.config.validate()?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let id_path = dir.join(IDENTITY_FILE);
        if id_path.exists() {
            return Err(HomeError::AlreadyInitialised(dir.to_owned()));
        }
        let realms_dir = dir.join(REALMS_DIR);
        fs::create_dir_all(&realms_dir).map_err(io_err(&realms_dir))?;
        let _ = fs::set_permissions(&realms_dir, fs::Permissions::from_mode(0o700));
        let mut realms = Vec::new();
        for name in &opts.config.node.realms {
            let realm = match opts.realm_secrets.iter().find(|r| r.name() == name) {
                Some(r) => r.clone(),
                None => Realm::generate(name, &mut OsRng).map_err(|e| {
                    HomeError::Config(ConfigError::Value(format!("realm `{name}`: {e}")))
                })?,
            };
            write_atomic(
                &realms_dir.join(format!("{name}.key")),
                format!("{}\n", realm.to_share_string().as_str()).as_bytes(),
                0o600,
            )?;
            realms.push(realm);
        }
        let store_dir = dir.join(STORE_DIR);
        LmdbStore::open(store_dir, store_config(&opts.config))?;
        write_atomic(
            &dir.join(CONFIG_FILE),
            opts.config.to_commented_toml().as_bytes(),
            0o644,
        )?;
        // The identity goes last: its presence marks a complete home.
        let identity = Identity::generate(&mut OsRng);
        write_atomic(&id_path, identity.to_key_file().as_bytes(), 0o600)?;
        Ok((identity.node_id(), realms))
    }

    /// Opens an existing home, checking key-file permissions.
    pub fn open(dir: &Path) -> Result<Self, HomeError> {
        let id_path = dir.join(IDENTITY_FILE);
        if !id_path.exists() {
            return Err(HomeError::NotInitialised(dir.to_owned()));
        }
        let identity =
            Identity::from_key_file(&read_private(&id_path)?).map_err(|e| HomeError::KeyFile {
                path: id_path.clone(),
                reason: e.to_string(),
            })?;
        let cfg_path = dir.join(CONFIG_FILE);
        let config = match fs::metadata(&cfg_path) {
            Ok(m) if m.len() > crate::config::MAX_CONFIG_BYTES as u64 => {
                return Err(ConfigError::TooLarge.into())
            }
            Ok(_) => Config::parse(&fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(io_err(&cfg_path)(e)),
        };
        let mut realms = Vec::new();
        for name in &config.node.realms {
            let path = dir.join(REALMS_DIR).join(format!("{name}.key"));
            let text = read_private(&path)?;
            let realm = Realm::from_share_string(&text).map_err(|e| HomeError::KeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if realm.name() != name {
                return Err(HomeError::KeyFile {
                    path,
                    reason: format!("holds realm `{}`, expected `{name}`", realm.name()),
                });
            }
            realms.push(realm);
        }
        let limits = Limits {
            max_bundle_bytes: config.store.max_bundle_bytes,
        };
        let keyring = Keyring::with_options(
            identity,
            realms,
            ferry_core::crypto::DEFAULT_PAIR_CACHE,
            limits,
        );
        Ok(Self {
            dir: dir.to_owned(),
            config,
            keyring,
        })
    }

    /// Opens this home's custody store.
    pub fn open_store(&self) -> Result<LmdbStore, HomeError> {
        Ok(LmdbStore::open(
            self.dir.join(STORE_DIR),
            store_config(&self.config),
        )?)
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Takes the home apart: directory, configuration and keys (for a daemon that
    /// shares the keyring between threads).
    pub fn into_parts(self) -> (PathBuf, Config, Keyring) {
        (self.dir, self.config, self.keyring)
    }
}

/// Store settings from the configuration.
pub fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        max_bytes: config.store.max_bytes,
        max_count: config.store.max_bundles,
        ..StoreConfig::default()
    }
}

/// Reads only the node id, without opening the store.
pub fn node_id(dir: &Path) -> Result<NodeId, HomeError> {
    let id_path = dir.join(IDENTITY_FILE);
    if !id_path.exists() {
        return Err(HomeError::NotInitialised(dir.to_owned()));
    }
    let identity =
        Identity::from_key_file(&read_private(&id_path)?).map_err(|e| HomeError::KeyFile {
            path: id_path,
            reason: e.to_string(),
        })?;
    Ok(identity.node_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_readable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("n");
        let (id, _) = Home::init(&home, InitOptions::default()).unwrap();
        assert_eq!(Home::open(&home).unwrap().keyring().node_id(), id);
        let key = home.join(IDENTITY_FILE);
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Home::open(&home).unwrap_err();
        assert!(
            matches!(err, HomeError::KeyFilePermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let realm_key = home.join(REALMS_DIR).join("default.key");
        fs::set_permissions(&realm_key, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(
            Home::open(&home).unwrap_err(),
            HomeError::KeyFilePermissions { .. }
        ));
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        Home::init(dir.path(), InitOptions::default()).unwrap();
        assert!(matches!(
            Home::init(dir.path(), InitOptions::default()),
            Err(HomeError::AlreadyInitialised(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Home::open(empty.path()),
            Err(HomeError::NotInitialised(_))
        ));
    }
}
