//! `ferry run`: the tokio driver around the sans-IO engine.
//!
//! Threads and tasks:
//!
//! - the **engine thread** owns the [`Engine`] and runs a single-threaded tokio
//!   runtime of its own, because the engine calls the LMDB store synchronously (a
//!   commit takes milliseconds). It selects on one bounded command channel and on the
//!   engine's next timeout, and after every input drains the engine's outputs;
//! - the **link task** reads QUIC link events, verifies received bundles in batches
//!   (Ed25519 batch verification on the blocking pool) and feeds them to the engine;
//! - one **writer task per link** sends the engine's frames and bundles in order;
//! - the **API server** (`api.rs`) on a loopback address.
//!
//! Every channel is bounded. A SIGTERM or SIGINT stops the API, commits what the
//! engine has buffered, replies to waiting apps and closes the links: nothing that was
//! acknowledged (to an app or a peer) is ever only in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ferry_cl_api::{LinkEvent, LinkId, TransferId};
use ferry_cl_quic::{DiscoveryConfig, QuicConfig, QuicLink};

use ferry_core::{Bundle, BundleId, DtnTime, Fragment, Keyring, NodeId, OpenError, PayloadKind};
use ferry_router::config::Config;
use ferry_router::engine::{
    Engine, EngineConfig, EngineStats, ImportOutcome, Input, Millis, Origin, Output, RefuseReason,
};
use ferry_storage::LmdbStore;

use crate::reassembly::{Added, Message, Parts, Reassembly};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

/// Capacity of the engine's command channel.
const CMD_QUEUE: usize = 4096;
/// Most commands the engine thread handles in a row before it waits again.
const CMD_RUN: usize = 256;
/// Most bundles one commit takes from apps and live links (the engine loop commits
/// earlier whenever its queue runs dry).
const COMMIT_BATCH: usize = 1024;
/// Capacity of each link writer's queue.
const LINK_QUEUE: usize = 8192;
/// Most bundles verified in one batch.
const VERIFY_BATCH: usize = 64;
/// Most deliveries queued per endpoint for apps (ids only; payloads stay in the store).
pub const MAX_QUEUED_DELIVERIES: usize = 65_536;
/// Receipts remembered for `ferry status`.
const RECENT_DELIVERED: usize = 1024;

/// The wall clock as DTN time; `None` while it is unset (before 2000).
pub fn now_dtn() -> Option<DtnTime> {
    #[allow(clippy::disallowed_methods)] // the daemon is where clocks are read
    let now = std::time::SystemTime::now();
    let unix = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    DtnTime::from_unix_secs(unix)
}

/// A monotonic clock for the engine, counting from the daemon's start.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    fn start() -> Self {
        #[allow(clippy::disallowed_methods)]
        Self(Instant::now())
    }

    /// Milliseconds since start.
    pub fn now(&self) -> Millis {
        Millis(self.0.elapsed().as_millis() as u64)
    }

    fn instant_of(&self, m: Millis) -> Instant {
        self.0 + Duration::from_millis(m.0)
    }

    /// Microseconds since start (the small-link sessions' time).
    pub fn micros(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }

    /// The instant `us` microseconds after start.
    pub fn instant_of_micros(&self, us: u64) -> Instant {
        self.0 + Duration::from_micros(us)
    }
}

/// Sequence numbers for bundles sealed by the API, reserved durably in blocks.
const API_SEQUENCE_BLOCK: u64 = 4096;

/// Why a submission failed, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The store is at its quota.
    #[error("store full")]
    StoreFull,
    /// Sealing refused the request.
    #[error("{0}")]
    Seal(#[from] ferry_core::SealError),
    /// Any other refusal.
    #[error("{0}")]
    Refused(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
}

/// Commands for the engine thread.
#[derive(Debug)]
pub enum Cmd {
    /// An engine input from a link.
    Input(Input),
    /// A link came up: its writer queue.
    LinkUp {
        /// The link.
        link: LinkId,
        /// The writer queue.
        writer: mpsc::Sender<LinkOut>,
        /// The engine input to pass on.
        input: Input,
    },
    /// An app submits a payload.
    Submit {
        /// The bundle, sealed by the API task (signing is the costly part of a
        /// small submission; it stays off the engine thread).
        bundle: Bundle,
        /// Answered once the bundle is committed (or refused).
        reply: oneshot::Sender<Result<BundleId, SubmitError>>,
    },
    /// An app took a delivery.
    AppAck {
        /// The bundle.
        id: BundleId,
    },
    /// A carrier (a drive being synced) came up: its output queue.
    CarrierUp {
        /// The link.
        link: LinkId,
        /// Where the engine's imports, exports and idle notices for it go.
        out: mpsc::Sender<CarrierOut>,
        /// The engine input to pass on ([`Input::CarrierUp`]).
        input: Input,
    },
    /// Reserve a sequence number for a bundle sealed outside the engine (a drive
    /// manifest).
    NextSequence {
        /// The number, or why none could be reserved.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// The routing policy's delivery predictabilities (PRoPHET), for the status page.
    Predictabilities {
        /// Node hashes ascending; `None` under a policy without them.
        reply: oneshot::Sender<Option<Vec<(ferry_core::NodeHash, f64)>>>,
    },
    /// Commit what is buffered and stop.
    Shutdown,
}

/// What the engine tells a carrier's driver (`drive.rs`).
#[derive(Debug)]
pub enum CarrierOut {
    /// What became of an imported bundle.
    Imported(BundleId, ImportOutcome),
    /// Write this bundle; answer `TransferDone`/`TransferFailed`.
    Export {
        /// The transfer.
        transfer: TransferId,
        /// The bundle.
        id: BundleId,
        /// Spray copies handed over with it.
        copies: u32,
        /// When it expires (DTN seconds), if known.
        expires_at: Option<u64>,
        /// The encoded bundle.
        bytes: Vec<u8>,
    },
    /// The export pass is over and nothing is outstanding.
    Idle,
}

/// What a link writer sends.
#[derive(Debug)]
pub enum LinkOut {
    /// A control frame.
    Frame(Vec<u8>),
    /// A bundle transfer.
    Bundle(TransferId, Bytes),
}

/// A delivery waiting for an app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pending {
    /// Bundle id.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Payload kind.
    pub kind: String,
    /// Sent to the whole realm.
    pub group: bool,
    /// Leased to an app until this time (monotonic ms), if leased.
    #[serde(skip)]
    pub leased_until: Option<Millis>,
    #[serde(skip)]
    pub(crate) raw_id: BundleId,
    /// For a payload that came in fragments: its fragments, in order (the first
    /// is `raw_id`).
    #[serde(skip)]
    pub(crate) parts: Option<Arc<Parts>>,
}

impl Pending {
    /// The bundles an acknowledgment of this delivery releases.
    pub fn bundles(&self) -> Vec<BundleId> {
        match &self.parts {
            Some(p) => p.ids.clone(),
            None => vec![self.raw_id],
        }
    }
}

/// Deliveries per endpoint (the default endpoint is `""`): each endpoint's ids in
/// arrival order, and the deliveries by id. Removing one (an ack, a receipt) is
/// O(1); its id leaves the order lazily, and the order is compacted once it holds
/// more dead ids than live ones.
#[derive(Debug, Default)]
pub struct Deliveries {
    queues: HashMap<String, Queue>,
    items: HashMap<BundleId, (String, Pending)>,
    /// Fragments of messages not yet complete.
    reassembly: Reassembly,
    /// Each fragment of a queued fragmented delivery: the delivery's id.
    whole_of: HashMap<BundleId, BundleId>,
}

/// What became of a fragment handed to [`Deliveries::push_fragment`].
#[derive(Debug, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// Held until the message's other fragments are in.
    Waiting,
    /// Already held or queued.
    Duplicate,
    /// The message is complete and queued under this id (its first fragment's).
    Queued(BundleId),
    /// Not held: the table or the endpoint's queue is full (it waits in the store
    /// until a restart).
    Full,
    /// Not held: it contradicts the message's other fragments.
    Conflict,
}

#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<BundleId>,
    live: usize,
}

impl Deliveries {
    /// The next delivery for `endpoint` not leased to another app; leases it.
    pub fn lease(
        &mut self,
        endpoint: &str,
        now: Millis,
        lease: Millis,
    ) -> Option<(BundleId, Pending)> {
        let q = self.queues.get_mut(endpoint)?;
        while q
            .order
            .front()
            .is_some_and(|id| !self.items.contains_key(id))
        {
            q.order.pop_front();
        }
        for id in &q.order {
            if let Some((_, p)) = self.items.get_mut(id) {
                if p.leased_until.is_none_or(|t| t <= now) {
                    p.leased_until = Some(Millis(now.0 + lease.0));
                    return Some((*id, p.clone()));
                }
            }
        }
        None
    }

    fn push(&mut self, endpoint: String, p: Pending) -> bool {
        if self.items.contains_key(&p.raw_id) {
            return true;
        }
        let q = self.queues.entry(endpoint.clone()).or_default();
        if q.live >= MAX_QUEUED_DELIVERIES {
            return false;
        }
        q.order.push_back(p.raw_id);
        q.live += 1;
        self.items.insert(p.raw_id, (endpoint, p));
        true
    }

    /// Ends the lease of a delivery an app took and did not acknowledge, so that
    /// the next `lease` offers it again.
    pub fn release(&mut self, id: &BundleId) {
        if let Some((_, p)) = self.items.get_mut(id) {
            p.leased_until = None;
        }
    }

    /// Holds a fragment of a payload for `endpoint`; queues the payload once its
    /// last fragment is in.
    pub fn push_fragment(
        &mut self,
        id: BundleId,
        source: NodeId,
        message: Message,
        fragment: Fragment,
    ) -> FragmentOutcome {
        if self.whole_of.contains_key(&id) {
            return FragmentOutcome::Duplicate;
        }
        match self.reassembly.add(id, source, message, fragment) {
            Added::Waiting => FragmentOutcome::Waiting,
            Added::Duplicate => FragmentOutcome::Duplicate,
            Added::Full => FragmentOutcome::Full,
            Added::Conflict => FragmentOutcome::Conflict,
            Added::Complete(m, parts) => {
                let first = parts.ids[0];
                let pending = Pending {
                    id: first.to_string(),
                    source: source.to_string(),
                    kind: kind_name(m.kind).to_owned(),
                    group: m.group,
                    leased_until: None,
                    raw_id: first,
                    parts: Some(Arc::new(parts)),
                };
                let ids = pending.bundles();
                if !self.push(m.endpoint, pending) {
                    return FragmentOutcome::Full;
                }
                for part in ids {
                    self.whole_of.insert(part, first);
                }
                FragmentOutcome::Queued(first)
            }
        }
    }

    /// Fragments held for payloads not yet complete, and how many payloads.
    pub fn fragments_held(&self) -> (usize, usize) {
        (self.reassembly.held(), self.reassembly.messages())
    }

    /// Drops a delivery (acknowledged, or no longer stored), or the fragment `id`
    /// of one (the payload it belonged to then leaves the queue: it can no longer
    /// be read whole); whether a queued delivery was dropped.
    pub fn remove(&mut self, id: &BundleId) -> bool {
        if let Some(first) = self.whole_of.remove(id) {
            return self.remove_item(&first);
        }
        if self.reassembly.remove(id) {
            return false;
        }
        self.remove_item(id)
    }

    fn remove_item(&mut self, id: &BundleId) -> bool {
        let Some((endpoint, pending)) = self.items.remove(id) else {
            return false;
        };
        if let Some(parts) = &pending.parts {
            for part in &parts.ids {
                self.whole_of.remove(part);
            }
        }
        if let Some(q) = self.queues.get_mut(&endpoint) {
            q.live = q.live.saturating_sub(1);
            if q.live == 0 {
                self.queues.remove(&endpoint);
            } else if q.order.len() > 2 * q.live + 64 {
                let items = &self.items;
                q.order.retain(|i| items.contains_key(i));
            }
        }
        true
    }

    /// Whether `id` is queued for an app.
    #[cfg(test)]
    pub fn contains(&self, id: &BundleId) -> bool {
        self.items.contains_key(id)
    }

    /// The bundles an acknowledgment of delivery `id` releases (`None`: not
    /// queued).
    pub fn bundles_of(&self, id: &BundleId) -> Option<Vec<BundleId>> {
        self.items.get(id).map(|(_, p)| p.bundles())
    }

    /// Number of deliveries queued, per endpoint.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.queues
            .iter()
            .map(|(k, v)| (k.clone(), v.live))
            .collect()
    }
}

/// Events for `GET /v1/events`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A payload is waiting for an app on `endpoint`.
    Delivery {
        /// Bundle id.
        id: String,
        /// Endpoint (`""`: default).
        endpoint: String,
    },
    /// A receipt proved one of this node's bundles reached its destination.
    Delivered {
        /// The bundle.
        id: String,
        /// The receipt.
        receipt: String,
    },
}

/// State shared between the engine thread, the link task and the API.
#[derive(Debug)]
pub struct Shared {
    /// Node keys.
    pub keyring: Arc<Keyring>,
    /// The custody store (read by the API; written by the engine thread).
    pub store: Arc<LmdbStore>,
    /// Configuration.
    pub config: Config,
    /// Commands to the engine thread.
    pub cmds: mpsc::Sender<Cmd>,
    /// Deliveries waiting for apps.
    pub deliveries: Mutex<Deliveries>,
    /// Sequence numbers reserved for the API's sealing, not yet used.
    pub sequences: Mutex<std::ops::Range<u64>>,
    /// Woken when a delivery is queued.
    pub delivery_ready: Notify,
    /// Events for subscribers.
    pub events: broadcast::Sender<NodeEvent>,
    /// Recent receipts for our bundles (bundle id → receipt id).
    pub delivered: Mutex<VecDeque<(BundleId, BundleId)>>,
    /// Links that are up.
    pub links: Mutex<BTreeMap<LinkId, NodeId>>,
    /// Engine counters, refreshed by the engine thread.
    pub engine_stats: Mutex<EngineStats>,
    /// Bundles refused on arrival (bad signature, foreign realm, expired...).
    pub rejected: std::sync::atomic::AtomicU64,
    /// The engine's monotonic clock.
    pub clock: Clock,
    /// The QUIC listen address actually bound.
    pub listen: SocketAddr,
    /// The node's home directory.
    pub home: PathBuf,
    /// Serial ports (cables, radios): their state and counters, by port name.
    pub serial: Mutex<BTreeMap<String, crate::serial::PortStatus>>,
}

impl Shared {
    /// The next never-used sequence number for a bundle the API seals (blocks of
    /// [`API_SEQUENCE_BLOCK`] are reserved durably in the store, apart from the
    /// engine's own).
    pub fn next_sequence(&self) -> Result<u64, ferry_storage::StoreError> {
        let mut r = self
            .sequences
            .lock()
            .map_err(|_| ferry_storage::StoreError::InvalidArgument("sequence lock poisoned"))?;
        if r.is_empty() {
            *r = ferry_storage::CustodyStore::reserve_sequence(&*self.store, API_SEQUENCE_BLOCK)?;
        }
        let s = r.start;
        r.start += 1;
        Ok(s)
    }
}

/// Runs the node until SIGTERM/SIGINT.
pub fn run(home_dir: PathBuf) -> Result<()> {
    if !home_dir.join(ferry_router::home::IDENTITY_FILE).exists() {
        // A first run: `Home::open` below initialises it.
        std::fs::create_dir_all(&home_dir)
            .with_context(|| format!("creating {}", home_dir.display()))?;
    }
    let _lock = ferry_router::home::HomeLock::try_take(&home_dir)?;
    let home = match ferry_router::home::Home::open(&home_dir) {
        Ok(h) => h,
        Err(ferry_router::home::HomeError::NotInitialised(_)) => {
            let (id, _) = ferry_router::home::Home::init(&home_dir, Default::default())?;
            eprintln_info(&format!(
                "ferry: first run: created node {} in {}",
                id.short(),
                home_dir.display()
            ));
            ferry_router::home::Home::open(&home_dir)?
        }
        Err(e) => return Err(e.into()),
    };
    let store = Arc::new(home.open_store()?);
    let (_dir, config, keyring) = home.into_parts();
    init_tracing(&config.node.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(home_dir, config, Arc::new(keyring), store))
}

fn eprintln_info(msg: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{msg}");
    }
}

/// Logs to stderr at the config's level, or as `RUST_LOG` says (`debug`,
/// `info,ferry_node=debug`: a default level and levels per module). `Targets` needs
/// no regex engine, which keeps about 0.4 MB of code and tables out of the binary
/// (and out of an idle node's memory).
fn init_tracing(level: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok());
    let filter = from_env
        .or_else(|| level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

async fn run_async(
    home_dir: PathBuf,
    config: Config,
    keyring: Arc<Keyring>,
    store: Arc<LmdbStore>,
) -> Result<()> {
    let mut qcfg = QuicConfig::default();
    qcfg.listen = config.node.listen;
    qcfg.max_bundle_bytes = config.store.max_bundle_bytes as u64;
    qcfg.discovery = if config.discovery.enabled {
        let mut d =
            DiscoveryConfig::unicast(config.discovery.listen, config.discovery.targets.clone());
        d.interval = Duration::from_secs(u64::from(config.discovery.interval_secs));
        Some(d)
    } else {
        None
    };
    let bound = QuicLink::bind(qcfg, keyring.identity(), keyring.realms())
        .await
        .context("binding the QUIC link")?;
    let quic = bound.link;
    let listen = quic.local_addr();
    let socket_path = config.api_socket_path(&home_dir);

    let core = Core::start(
        home_dir,
        config.clone(),
        keyring.clone(),
        store,
        Some(quic.clone()),
        listen,
    )?;
    let shared = core.shared.clone();
    let cmd_tx = shared.cmds.clone();

    // The API first: if its port is taken, fail before touching links.
    let api_listener = match tokio::net::TcpListener::bind(config.node.api).await {
        Ok(l) => l,
        Err(e) => {
            drop(cmd_tx);
            core.stop().await?;
            return Err(e).with_context(|| format!("binding the API on {}", config.node.api));
        }
    };
    let api_addr = api_listener.local_addr()?;
    let api_socket = match socket_path.as_deref().map(bind_api_socket).transpose() {
        Ok(s) => s,
        Err(e) => {
            drop(cmd_tx);
            core.stop().await?;
            return Err(e);
        }
    };

    for p in config.peer_addrs()? {
        quic.dial(p.id, p.addr.clone());
    }
    tokio::spawn(link_task(bound.events, shared.clone(), quic.clone()));
    if let Some(mut discovered) = bound.discovered {
        let q = quic.clone();
        tokio::spawn(async move {
            while let Some(d) = discovered.recv().await {
                tracing::debug!(peer = %d.node.short(), addr = %d.addr, "discovered");
                let q = q.clone();
                tokio::spawn(async move {
                    if let Err(e) = q.connect(d.node, d.addr).await {
                        tracing::debug!(peer = %d.node.short(), error = %e, "connect to discovered peer failed");
                    }
                });
            }
        });
    }

    tokio::spawn(crate::drive::watch(shared.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut ports = Vec::new();
    for section in &config.serial {
        let plan = crate::serial::PortPlan::new(section)?;
        tracing::info!(port = %plan.name, mode = ?section.mode, "serial port configured");
        ports.push(tokio::spawn(crate::serial::run_port(
            plan,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    let api_unix = api_socket.map(|(path, listener)| {
        let task = tokio::spawn(crate::api::serve_unix(
            listener,
            shared.clone(),
            stop_rx.clone(),
        ));
        (path, task)
    });
    let api = tokio::spawn(crate::api::serve(api_listener, shared.clone(), stop_rx));
    tracing::info!(
        node = %keyring.node_id().short(),
        quic_port = listen.port(),
        api_port = api_addr.port(),
        realms = keyring.realms().len(),
        "ferry node running"
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = api.await;
    if let Some((path, task)) = api_unix {
        let _ = task.await;
        let _ = std::fs::remove_file(path);
    }
    for p in ports {
        let _ = p.await;
    }
    drop(cmd_tx);
    let r = core.stop().await;
    quic.shutdown().await;
    r
}

/// Binds the API's Unix socket at `path`, readable and writable by this user only.
/// A socket left by an earlier run is replaced (the home lock says no other node of
/// this home runs); any other file there is an error.
fn bind_api_socket(path: &std::path::Path) -> Result<(PathBuf, tokio::net::UnixListener)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // `sun_path` holds 108 bytes with the terminating NUL.
    if path.as_os_str().len() > 107 {
        bail!(
            "the API socket path {} is longer than a Unix socket allows (107 bytes); set node.api_socket to a shorter path, or \"\" for none",
            path.display()
        );
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the old API socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket: refusing to replace it with the API socket",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to this user", path.display()))?;
    Ok((path.to_path_buf(), listener))
}

/// The engine thread and the state it shares: what `ferry run` and a standalone
/// `ferry drive sync` both need.
pub struct Core {
    /// Shared state (its `cmds` reach the engine thread).
    pub shared: Arc<Shared>,
    engine_thread: std::thread::JoinHandle<Result<()>>,
}

impl Core {
    /// Starts the engine thread over `store`.
    pub fn start(
        home: PathBuf,
        config: Config,
        keyring: Arc<Keyring>,
        store: Arc<LmdbStore>,
        quic: Option<QuicLink>,
        listen: SocketAddr,
    ) -> Result<Core> {
        let routes = config.static_routes()?;
        let mut engine_cfg = EngineConfig::from_config(&config, routes);
        // Apps fetch payloads from the store (`api.rs`); the engine need not copy them.
        engine_cfg.deliver_payload = false;
        // The engine loop commits whenever its queue runs dry (`handle_idle`), so a
        // batch grows only while commands keep arriving: up to this many bundles.
        engine_cfg.commit_batch = COMMIT_BATCH;
        let clock = Clock::start();
        let engine = Engine::new(store.clone(), keyring.clone(), engine_cfg, clock.now());
        let (cmd_tx, cmd_rx) = mpsc::channel(CMD_QUEUE);
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            keyring,
            store,
            config,
            cmds: cmd_tx,
            deliveries: Mutex::new(Deliveries::default()),
            sequences: Mutex::new(0..0),
            delivery_ready: Notify::new(),
            events,
            delivered: Mutex::new(VecDeque::new()),
            links: Mutex::new(BTreeMap::new()),
            engine_stats: Mutex::new(EngineStats::default()),
            rejected: Default::default(),
            clock,
            listen,
            home,
            serial: Mutex::new(BTreeMap::new()),
        });
        let engine_shared = shared.clone();
        let engine_thread = std::thread::Builder::new()
            .name("ferry-engine".into())
            .spawn(move || engine_main(engine, cmd_rx, engine_shared, quic))
            .context("starting the engine thread")?;
        Ok(Core {
            shared,
            engine_thread,
        })
    }

    /// Commits what the engine buffered and stops its thread.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shared.cmds.send(Cmd::Shutdown).await;
        let thread = self.engine_thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(r)) => r,
            _ => bail!("engine thread panicked"),
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Reads link events, verifies bundles in batches, feeds the engine.
async fn link_task(mut events: mpsc::Receiver<LinkEvent>, shared: Arc<Shared>, quic: QuicLink) {
    let mut held: Option<LinkEvent> = None;
    loop {
        let ev = match held.take() {
            Some(e) => e,
            None => match events.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let cmd = match ev {
            LinkEvent::Up { link, peer, caps } => {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                shared.links.lock().map(|mut l| l.insert(link, peer)).ok();
                tracing::info!(peer = %peer.short(), %link, "contact up");
                tokio::spawn(link_writer(link, rx, shared.clone(), quic.clone()));
                Cmd::LinkUp {
                    link,
                    writer: tx,
                    input: Input::ContactUp { link, peer, caps },
                }
            }
            LinkEvent::Down { link, reason } => {
                shared.links.lock().map(|mut l| l.remove(&link)).ok();
                tracing::info!(%link, ?reason, "contact down");
                Cmd::Input(Input::ContactDown { link })
            }
            LinkEvent::Frame { link, bytes } => Cmd::Input(Input::Frame { link, bytes }),
            LinkEvent::Sent { link, transfer } => {
                Cmd::Input(Input::TransferDone { link, transfer })
            }
            LinkEvent::SendFailed { link, transfer } => {
                Cmd::Input(Input::TransferFailed { link, transfer })
            }
            LinkEvent::Bundle {
                link,
                transfer,
                bytes,
            } => {
                // Gather the bundles already waiting, verify them as one batch.
                let mut batch = vec![((link, transfer), bytes)];
                while batch.len() < VERIFY_BATCH {
                    match events.try_recv() {
                        Ok(LinkEvent::Bundle {
                            link,
                            transfer,
                            bytes,
                        }) => batch.push(((link, transfer), bytes)),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let keyring = shared.keyring.clone();
                let store = shared.store.clone();
                let verified = tokio::task::spawn_blocking(move || {
                    let verified = accept_batch(&keyring, batch);
                    for b in verified.iter().filter_map(|(_, r)| r.as_ref().ok()) {
                        prepare_large(&keyring, &store, b);
                    }
                    verified
                })
                .await
                .unwrap_or_default();
                for ((link, transfer), r) in verified {
                    match r {
                        Ok(bundle) => {
                            let input = Input::Received {
                                link,
                                transfer,
                                bundle,
                            };
                            if shared.cmds.send(Cmd::Input(input)).await.is_err() {
                                return;
                            }
                        }
                        Err((e, _)) => {
                            shared
                                .rejected
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!(error = %e, "bundle refused on arrival");
                        }
                    }
                }
                continue;
            }
        };
        if shared.cmds.send(cmd).await.is_err() {
            return;
        }
    }
}

/// Does the engine's two long passes over a large received bundle here, on this
/// blocking thread and one more, side by side, instead of one after the other on the
/// engine's thread: the MAC check of a bundle addressed to this node (the keyring
/// keeps the answer for the engine's own call) and the write and sync of its payload
/// file (which the commit then takes under its record's name). Either failing only
/// leaves the work to the engine, as before.
fn prepare_large(keyring: &Keyring, store: &LmdbStore, b: &Bundle) {
    if b.encoded_len() < ferry_storage::lmdb::FILE_MIN {
        return;
    }
    std::thread::scope(|scope| {
        if keyring.is_for_us(b) {
            scope.spawn(|| {
                let _ = keyring.open_head_verified(b);
            });
        }
        crate::api::stage(store, b);
    });
}

/// Decodes, realm-checks and expiry-checks each bundle, then verifies the
/// signatures of the survivors as one batch. Each result keeps its tag.
/// A refused bundle: why, and its bytes (for a quarantine).
pub type Refusal = (OpenError, Vec<u8>);

pub fn accept_batch<T>(
    keyring: &Keyring,
    batch: Vec<(T, Vec<u8>)>,
) -> Vec<(T, Result<Bundle, Refusal>)> {
    let now = now_dtn();
    let decoded: Vec<(T, Result<Bundle, Refusal>)> = batch
        .into_iter()
        .map(|(tag, bytes)| {
            // The bytes become the bundle's own (no copy of a large bundle).
            let r = match Bundle::decode_vec(bytes, keyring.limits()) {
                Ok(b) => {
                    let checked = keyring.check_realm(&b).and_then(|()| {
                        if b.is_expired(now) {
                            Err(OpenError::Expired)
                        } else {
                            Ok(())
                        }
                    });
                    match checked {
                        Ok(()) => Ok(b),
                        // The refusal carries the bytes: decoding accepts only
                        // canonical encodings, so this gives back what arrived.
                        Err(e) => Err((e, b.encode())),
                    }
                }
                Err((e, bytes)) => Err((OpenError::from(e), bytes)),
            };
            (tag, r)
        })
        .collect();
    let ok: Vec<&Bundle> = decoded
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let mut sigs = keyring.verify_many(&ok).into_iter();
    decoded
        .into_iter()
        .map(|(tag, r)| {
            let r = match r {
                Ok(b) => match sigs.next() {
                    Some(Ok(())) => Ok(b),
                    Some(Err(e)) => {
                        let bytes = b.encode();
                        Err((e, bytes))
                    }
                    None => {
                        let bytes = b.encode();
                        Err((OpenError::BadSignature, bytes))
                    }
                },
                Err(e) => Err(e),
            };
            (tag, r)
        })
        .collect()
}

async fn link_writer(
    link: LinkId,
    mut rx: mpsc::Receiver<LinkOut>,
    shared: Arc<Shared>,
    quic: QuicLink,
) {
    while let Some(out) = rx.recv().await {
        let r = match out {
            LinkOut::Frame(f) => quic.send_frame(link, f).await,
            LinkOut::Bundle(t, b) => {
                let r = quic.send_bundle(link, t, b).await;
                if r.is_err() {
                    let _ = shared
                        .cmds
                        .send(Cmd::Input(Input::TransferFailed { link, transfer: t }))
                        .await;
                }
                r
            }
        };
        if let Err(e) = r {
            tracing::debug!(%link, error = %e, "link send failed");
        }
    }
}

struct EngineLoop {
    engine: Engine<LmdbStore>,
    shared: Arc<Shared>,
    writers: HashMap<LinkId, mpsc::Sender<LinkOut>>,
    carriers: HashMap<LinkId, mpsc::Sender<CarrierOut>>,
    submits: HashMap<BundleId, oneshot::Sender<Result<BundleId, SubmitError>>>,
    quic: Option<QuicLink>,
}

fn engine_main(
    engine: Engine<LmdbStore>,
    mut rx: mpsc::Receiver<Cmd>,
    shared: Arc<Shared>,
    quic: Option<QuicLink>,
) -> Result<()> {
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("engine runtime")?;
    let mut el = EngineLoop {
        engine,
        shared,
        writers: HashMap::new(),
        carriers: HashMap::new(),
        submits: HashMap::new(),
        quic,
    };
    local.block_on(async move {
        let clock = el.shared.clock;
        // Deliver what an earlier run left undelivered.
        el.timeout(clock.now()).await;
        loop {
            let now = clock.now();
            if el.engine.poll_timeout().is_some_and(|t| t <= now) {
                el.timeout(now).await;
                continue;
            }
            let deadline = el
                .engine
                .poll_timeout()
                .map(|t| tokio::time::Instant::from_std(clock.instant_of(t)));
            let cmd = match deadline {
                Some(d) => tokio::select! {
                    c = rx.recv() => c,
                    _ = tokio::time::sleep_until(d) => { el.timeout(clock.now()).await; continue; }
                },
                None => rx.recv().await,
            };
            match cmd {
                Some(Cmd::Shutdown) | None => break,
                Some(c) => el.command(c).await,
            }
            // Take what else is already queued (bounded) before waiting again, so
            // that bursts of acks and frames are handled back to back; the
            // engine's queued writes then go out with one commit. A due timeout
            // (a commit deadline) stops the run.
            let mut stop = false;
            let mut dry = false;
            for _ in 1..CMD_RUN {
                if el.engine.poll_timeout().is_some_and(|t| t <= clock.now()) {
                    break;
                }
                match rx.try_recv() {
                    Ok(Cmd::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Ok(c) => el.command(c).await,
                    Err(_) => {
                        dry = true;
                        break;
                    }
                }
            }
            if dry {
                // Nothing else is queued: commit now (group commit by load).
                el.idle(clock.now()).await;
            }
            if let Ok(mut s) = el.shared.engine_stats.lock() {
                *s = el.engine.stats();
            }
            if stop {
                break;
            }
        }
        el.shutdown().await;
        Ok(())
    })
}

impl EngineLoop {
    async fn timeout(&mut self, now: Millis) {
        if let Err(e) = self.engine.handle_timeout(now, now_dtn()) {
            tracing::warn!(error = %e, "engine timeout handling failed");
        }
        self.drain().await;
    }

    async fn idle(&mut self, now: Millis) {
        if let Err(e) = self.engine.handle_idle(now, now_dtn()) {
            tracing::warn!(error = %e, "engine commit failed");
        }
        self.drain().await;
    }

    async fn input(&mut self, input: Input) {
        let now = self.shared.clock.now();
        if let Err(e) = self.engine.handle_input(now, now_dtn(), input) {
            tracing::warn!(error = %e, "engine input failed");
        }
        self.drain().await;
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Input(i) => self.input(i).await,
            Cmd::LinkUp {
                link,
                writer,
                input,
            } => {
                self.writers.insert(link, writer);
                self.input(input).await;
            }
            Cmd::Submit { bundle, reply } => {
                self.submits.insert(bundle.id(), reply);
                self.input(Input::Submit { bundle }).await;
            }
            Cmd::AppAck { id } => self.input(Input::AppAck { id }).await,
            Cmd::CarrierUp { link, out, input } => {
                self.carriers.insert(link, out);
                self.input(input).await;
            }
            Cmd::NextSequence { reply } => {
                let _ = reply.send(self.engine.next_sequence().map_err(|e| e.to_string()));
            }
            Cmd::Predictabilities { reply } => {
                let _ = reply.send(self.engine.policy().predictabilities());
            }
            Cmd::Shutdown => {}
        }
    }

    async fn drain(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            self.output(out).await;
        }
    }

    async fn output(&mut self, out: Output) {
        match out {
            Output::SendFrame { link, bytes } => {
                if let Some(w) = self.writers.get(&link) {
                    if w.send(LinkOut::Frame(bytes)).await.is_err() {
                        self.writers.remove(&link);
                    }
                }
            }
            Output::SendBundle {
                link,
                transfer,
                id: _,
                bytes,
            } => {
                let failed = match self.writers.get(&link) {
                    Some(w) => w
                        .send(LinkOut::Bundle(transfer, Bytes::from(bytes)))
                        .await
                        .is_err(),
                    None => true,
                };
                if failed {
                    let now = self.shared.clock.now();
                    let _ = self.engine.handle_input(
                        now,
                        now_dtn(),
                        Input::TransferFailed { link, transfer },
                    );
                }
            }
            Output::CloseLink { link, reason } => {
                tracing::info!(%link, ?reason, "closing link");
                if let Some(q) = &self.quic {
                    q.close_link(link, "protocol error");
                }
                self.writers.remove(&link);
                self.carriers.remove(&link);
            }
            Output::Imported { link, id, outcome } => {
                self.pass_to_carrier(link, CarrierOut::Imported(id, outcome))
                    .await;
            }
            Output::Export {
                link,
                transfer,
                id,
                copies,
                expires_at,
                bytes,
            } => {
                let out = CarrierOut::Export {
                    transfer,
                    id,
                    copies,
                    expires_at,
                    bytes,
                };
                if !self.pass_to_carrier(link, out).await {
                    let now = self.shared.clock.now();
                    let _ = self.engine.handle_input(
                        now,
                        now_dtn(),
                        Input::TransferFailed { link, transfer },
                    );
                }
            }
            Output::CarrierIdle { link } => {
                self.pass_to_carrier(link, CarrierOut::Idle).await;
            }
            Output::Deliver {
                id,
                source,
                endpoint,
                kind,
                fragment: Some(fragment),
                group,
                payload: _,
            } => {
                let message = Message {
                    endpoint: endpoint.unwrap_or_default(),
                    kind,
                    group,
                    count: fragment.count,
                    total: fragment.total,
                };
                let endpoint = message.endpoint.clone();
                let outcome = self
                    .shared
                    .deliveries
                    .lock()
                    .map(|mut d| d.push_fragment(id, source, message, fragment))
                    .unwrap_or(FragmentOutcome::Full);
                match outcome {
                    FragmentOutcome::Queued(first) => {
                        tracing::info!(
                            bundle = %first.short(),
                            fragments = fragment.count,
                            "delivery waiting for app (all fragments in)"
                        );
                        self.shared.delivery_ready.notify_waiters();
                        let _ = self.shared.events.send(NodeEvent::Delivery {
                            id: first.to_string(),
                            endpoint,
                        });
                    }
                    FragmentOutcome::Waiting | FragmentOutcome::Duplicate => {
                        tracing::debug!(
                            bundle = %id.short(),
                            index = fragment.index,
                            count = fragment.count,
                            "fragment held"
                        );
                    }
                    FragmentOutcome::Full => {
                        tracing::warn!(bundle = %id.short(), "fragment table or delivery queue full; kept in store until restart");
                    }
                    FragmentOutcome::Conflict => {
                        tracing::warn!(bundle = %id.short(), "fragment contradicts its message's others; kept in store until it expires");
                    }
                }
            }
            Output::Deliver {
                id,
                source,
                endpoint,
                kind,
                fragment: None,
                group,
                payload: _,
            } => {
                let endpoint = endpoint.unwrap_or_default();
                let pending = Pending {
                    id: id.to_string(),
                    source: source.to_string(),
                    kind: kind_name(kind).to_owned(),
                    group,
                    leased_until: None,
                    raw_id: id,
                    parts: None,
                };
                let queued = self
                    .shared
                    .deliveries
                    .lock()
                    .map(|mut d| d.push(endpoint.clone(), pending))
                    .unwrap_or(false);
                if queued {
                    tracing::info!(bundle = %id.short(), "delivery waiting for app");
                    self.shared.delivery_ready.notify_waiters();
                    let _ = self.shared.events.send(NodeEvent::Delivery {
                        id: id.to_string(),
                        endpoint,
                    });
                } else {
                    tracing::warn!(bundle = %id.short(), "delivery queue full; kept in store until restart");
                }
            }
            Output::Delivered { id, receipt } => {
                tracing::info!(bundle = %id.short(), "delivered (receipt received)");
                if let Ok(mut d) = self.shared.delivered.lock() {
                    if d.len() >= RECENT_DELIVERED {
                        d.pop_front();
                    }
                    d.push_back((id, receipt));
                }
                let _ = self.shared.events.send(NodeEvent::Delivered {
                    id: id.to_string(),
                    receipt: receipt.to_string(),
                });
            }
            Output::ReceiptEmitted { receipt, ids } => {
                tracing::debug!(receipt = %receipt.short(), count = ids.len(), "receipt emitted");
            }
            Output::Stored { id, origin } => {
                if origin == Origin::Local {
                    if let Some(r) = self.submits.remove(&id) {
                        let _ = r.send(Ok(id));
                    }
                }
                tracing::debug!(bundle = %id.short(), ?origin, "stored");
            }
            Output::Refused { id, origin, reason } => {
                if origin == Origin::Local {
                    if let Some(r) = self.submits.remove(&id) {
                        let e = match reason {
                            RefuseReason::StoreFull => SubmitError::StoreFull,
                            other => SubmitError::Refused(format!("{other:?}")),
                        };
                        let _ = r.send(Err(e));
                    }
                }
                tracing::debug!(bundle = %id.short(), ?origin, ?reason, "refused");
            }
            Output::Removed { id, reason } => {
                if let Ok(mut d) = self.shared.deliveries.lock() {
                    d.remove(&id);
                }
                tracing::debug!(bundle = %id.short(), ?reason, "removed");
            }
        }
    }

    /// Passes an output to a carrier's driver; `false` if it is gone.
    async fn pass_to_carrier(&mut self, link: LinkId, out: CarrierOut) -> bool {
        let Some(tx) = self.carriers.get(&link) else {
            return false;
        };
        if tx.send(out).await.is_err() {
            self.carriers.remove(&link);
            return false;
        }
        true
    }

    async fn shutdown(&mut self) {
        // Commit whatever is buffered: the commit deadline is at most one commit
        // delay away, so run the engine's timers until nothing is due soon.
        for _ in 0..8 {
            match self.engine.poll_timeout() {
                Some(t) if t.0 <= self.shared.clock.now().0 + 1_000 => {
                    let now = Millis(t.0.max(self.shared.clock.now().0));
                    self.timeout(now).await;
                }
                _ => break,
            }
        }
        for (_, r) in self.submits.drain() {
            let _ = r.send(Err(SubmitError::ShuttingDown));
        }
        self.writers.clear();
    }
}

/// The name of a payload kind, as the API shows it.
pub fn kind_name(kind: PayloadKind) -> &'static str {
    match kind {
        PayloadKind::AppData => "app-data",
        PayloadKind::Hint => "hint",
        PayloadKind::Call => "call",
        PayloadKind::Reply => "reply",
        PayloadKind::Grant => "grant",
        PayloadKind::Revocation => "revocation",
        PayloadKind::Delta => "delta",
        PayloadKind::Receipt => "receipt",
        PayloadKind::Manifest => "manifest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: u8) -> Pending {
        Pending {
            id: n.to_string(),
            source: String::new(),
            kind: "app-data".into(),
            group: false,
            leased_until: None,
            raw_id: BundleId([n; 32]),
            parts: None,
        }
    }

    #[test]
    fn deliveries_lease_in_order_and_drop_in_constant_time() {
        let mut d = Deliveries::default();
        for n in 1..=200u8 {
            assert!(d.push(
                if n % 2 == 0 {
                    "a".into()
                } else {
                    String::new()
                },
                pending(n)
            ));
        }
        assert!(
            d.push("a".into(), pending(2)),
            "a duplicate is accepted once"
        );
        assert_eq!(d.counts().get("a"), Some(&100));
        let lease = Millis(60_000);
        let (first, _) = d.lease("a", Millis(0), lease).unwrap();
        assert_eq!(first, BundleId([2; 32]));
        // Removing ids in the middle: they are not offered again, and the order is
        // compacted as they pile up.
        for n in (4..=150u8).step_by(2) {
            assert!(d.remove(&BundleId([n; 32])));
            assert!(!d.contains(&BundleId([n; 32])));
        }
        assert!(!d.remove(&BundleId([4; 32])));
        let (next, _) = d.lease("a", Millis(0), lease).unwrap();
        assert_eq!(next, BundleId([152; 32]));
        let q = &d.queues["a"];
        assert_eq!(q.live, 26);
        assert!(q.order.len() <= 2 * q.live + 64);
        // A released lease is offered again before later ones; an expired one too.
        d.release(&BundleId([2; 32]));
        assert_eq!(d.lease("a", Millis(0), lease).unwrap().0, BundleId([2; 32]));
        assert_eq!(
            d.lease("a", Millis(0), lease).unwrap().0,
            BundleId([154; 32])
        );
        assert_eq!(
            d.lease("a", Millis(60_000), lease).unwrap().0,
            BundleId([2; 32])
        );
        // The other endpoint is untouched; an emptied endpoint disappears.
        assert_eq!(d.counts().get(""), Some(&100));
        for n in (1..=199u8).step_by(2) {
            d.remove(&BundleId([n; 32]));
        }
        assert_eq!(d.counts().get(""), None);
        assert!(d.lease("", Millis(0), lease).is_none());
    }
}
