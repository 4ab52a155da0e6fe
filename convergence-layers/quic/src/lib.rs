//! # ferry-cl-quic
//!
//! Ferry's QUIC link ([quinn] over rustls with the *ring* provider): connections
//! between nodes that prove their node ids and their realm, carrying the router's
//! control frames and whole bundles, kept up across Wi-Fi that comes and goes, with
//! peers found on the LAN by signed beacons.
//!
//! ## Authentication: the node id is the TLS key
//! Each node presents a self-signed Ed25519 certificate whose key *is* its identity
//! key (made with `rcgen` from [`Identity::seed`]). The only certificate either side
//! accepts is a self-signed Ed25519 certificate; TLS 1.3 only, Ed25519 handshake
//! signatures only, ALPN `ferry/1`. The dialer names the node it wants
//! ([`QuicLink::dial`], [`QuicLink::connect`]) and refuses any other key
//! ([`ConnectError::WrongPeer`]); since TLS checks the handshake signature against the
//! certificate key, presenting node X's id needs X's secret: no node can pose as
//! another. The listener requires a client certificate and learns the client's id
//! from it. There are no CAs, names or validity dates (nodes may have no clock).
//!
//! ## Realm admission
//! Right after the handshake, before any [`LinkEvent::Up`], each side sends on the
//! control stream one proof per realm, `Realm::link_proof(exporter | client id |
//! server id | role)`, where `exporter` is TLS exporter keying material of this
//! session: the proofs cannot be replayed on another connection, reflected, or read
//! by an outsider (at most [`MAX_REALMS`] per node). A peer with no proof for one of
//! our realms is closed with the application error "foreign realm". Connections
//! refused during setup (bad certificate, wrong node, foreign realm) never produce
//! an event: the router never saw a link. They return a [`ConnectError`] to
//! [`QuicLink::connect`], are counted in [`QuicLink::stats`] and logged. If a peer
//! refuses *after* this node admitted it, the link reports
//! `Down { reason: Refused("foreign realm") }`.
//!
//! ## Framing
//! - One bidirectional **control stream** per connection (opened by the dialer)
//!   carries the admission hello, then length-prefixed frames (`u32` LE length, then
//!   the bytes, opaque to this crate). A frame over the receiver's
//!   [`max_frame_bytes`](QuicConfig::max_frame_bytes) closes the link as a protocol
//!   error; each side announces its limit in the hello, the link's
//!   [`LinkCaps::mtu`](ferry_cl_api::LinkCaps) is the smaller of the two, and
//!   [`QuicLink::send_frame`] refuses larger frames with [`SendError::TooLarge`]
//!   instead of sending them.
//! - Each **bundle** travels on its own unidirectional stream: transfer id (`u64`
//!   LE), length (`u64` LE), then the bytes. A receiver stops streams over its
//!   [`max_bundle_bytes`](QuicConfig::max_bundle_bytes) (counted and logged; the link
//!   stays up) and reports [`LinkEvent::Bundle`] only for complete, exact-length ones.
//!   The peer's limit is announced too (`LinkCaps::max_bundle_bytes` in `Up`), and
//!   `send_bundle` refuses larger bundles locally.
//! - Stream **priorities**: the control stream keeps quinn's default (0), bundles of
//!   at most 64 KiB share the level below it, and larger bundles come after, the
//!   first started first. Quinn otherwise shares the connection round-robin between
//!   open streams, and a run of large bundles (the fragments of a large payload) would
//!   all finish together at the end instead of one after another.
//!
//! ## Backpressure
//! QUIC flow control per stream and connection, plus at most
//! [`max_in_flight`](QuicConfig::max_in_flight) bundle transfers per link:
//! [`QuicLink::send_bundle`] waits (asynchronously) for a free slot; a slot frees
//! when the peer's QUIC stack acknowledged the whole bundle ([`LinkEvent::Sent`]) or
//! the transfer failed ([`LinkEvent::SendFailed`]). Received bundles are bounded by a
//! memory budget ([`recv_budget_bytes`](QuicConfig::recv_budget_bytes)), and the
//! event channel is bounded: a router that stops reading events stops its peers'
//! senders through flow control. Drain events in a task that does not itself wait on
//! `send_*`, or the two can wait on each other.
//!
//! ## Events and ordering
//! One [`LinkId`] per connection (increasing, never reused). Per link: `Up` first,
//! then `Frame`/`Bundle`/`Sent`/`SendFailed`, then `Down` last; every transfer that
//! `send_bundle` accepted gets exactly one `Sent` or `SendFailed` before `Down`.
//!
//! ## Keep-alive, idle timeout, reconnection
//! QUIC keep-alives every [`keep_alive`](QuicConfig::keep_alive) (default 10 s); a
//! link silent for [`idle_timeout`](QuicConfig::idle_timeout) (default 30 s) goes
//! `Down { reason: Timeout }`. [`QuicLink::dial`] keeps a connection to a static peer
//! (`NODE_ID@host:port`, the host resolved at each attempt): after a failure or a lost
//! link it retries with exponential backoff ([`Backoff`]: 0.5 s doubling to 60 s,
//! randomised; reset once a link stayed up 10 s), and a discovery beacon from the
//! peer cuts the wait short. One connection is kept per pair of nodes: if both dial
//! each other, the connection dialed by the lower node id wins, on both ends; a new
//! connection from the same dialer replaces its old one. The QUIC stateless-reset
//! and connection-id keys derive from the node identity, so a node that crashed and
//! restarted on the same address resets its peers' stale connections at their next
//! packet instead of leaving them to the idle timeout.
//!
//! ## LAN discovery
//! With [`QuicConfig::discovery`] set, the node broadcasts a signed UDP beacon
//! every few seconds and reports nodes of its realms it hears as [`Discovered`]
//! (node id and address) on the channel in [`Bound::discovered`]; the node decides
//! whether to [`connect`](QuicLink::connect). See [`discovery`] for the format and
//! the checks (realm proof, signature, replay window, rate limit).
//!
//! ## Example
//! ```no_run
//! use ferry_cl_api::{LinkEvent, TransferId};
//! use ferry_cl_quic::{Bound, QuicConfig, QuicLink};
//! use ferry_core::{Identity, Realm};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::generate(&mut ferry_core::rand_core::OsRng);
//! let realm = Realm::new("valley", [7; 32])?;
//! let Bound { link, mut events, discovered, .. } =
//!     QuicLink::bind(QuicConfig::default(), &identity, &[realm]).await?;
//! // A static peer from ferry.toml: kept connected.
//! let peer = "aaaa...".parse()?;
//! link.dial(peer, "base.example.org:4556".to_string());
//! // Peers heard on the LAN: connect once.
//! if let Some(mut discovered) = discovered {
//!     let l = link.clone();
//!     tokio::spawn(async move {
//!         while let Some(d) = discovered.recv().await {
//!             let _ = l.connect(d.node, d.addr).await;
//!         }
//!     });
//! }
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         LinkEvent::Up { link: id, .. } => {
//!             link.send_frame(id, b"hello router".to_vec()).await?;
//!             link.send_bundle(id, TransferId(1), vec![0u8; 100].into()).await?;
//!         }
//!         LinkEvent::Bundle { bytes, .. } => { /* accept and store */ }
//!         LinkEvent::Down { .. } => { /* contact ended */ }
//!         _ => {}
//!     }
//! }
//! link.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod admission;
mod config;
mod dial;
pub mod discovery;
mod error;
mod link;
mod stats;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_cl_api::{LinkEvent, LinkId, TransferId};
use ferry_core::{Identity, NodeId, Realm};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::sign::CertifiedKey;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

pub use admission::MAX_REALMS;
pub use config::{Backoff, DiscoveryConfig, QuicConfig, DEFAULT_BEACON_PORT, DEFAULT_PORT};
pub use discovery::Discovered;
pub use error::{ConnectError, QuicError, SendError};
pub use stats::Stats;
pub use tls::ALPN;

use link::Inner;

/// How long [`QuicLink::shutdown`] waits for closing connections to drain.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// What [`QuicLink::bind`] returns.
#[derive(Debug)]
#[non_exhaustive]
pub struct Bound {
    /// The link handle.
    pub link: QuicLink,
    /// Link events for the router (bounded: keep reading).
    pub events: mpsc::Receiver<LinkEvent>,
    /// Peers heard on the LAN, if discovery is on (bounded; when full, announcements
    /// are dropped and repeated later).
    pub discovered: Option<mpsc::Receiver<Discovered>>,
}

/// A bound QUIC endpoint: listens, dials, and carries frames and bundles on its links.
/// Cheap to clone; when the last clone is dropped everything stops (call
/// [`shutdown`](Self::shutdown) for a graceful close).
#[derive(Clone)]
pub struct QuicLink {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for QuicLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicLink")
            .field("node_id", &self.inner.node_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl QuicLink {
    /// Binds the endpoint, starts accepting connections (and discovery, if
    /// configured). `realms` (1 to [`MAX_REALMS`]) decide which peers are admitted.
    pub async fn bind(
        cfg: QuicConfig,
        identity: &Identity,
        realms: &[Realm],
    ) -> Result<Bound, QuicError> {
        Self::bind_inner(cfg, identity, realms, None).await
    }

    async fn bind_inner(
        cfg: QuicConfig,
        identity: &Identity,
        realms: &[Realm],
        cert: Option<Arc<CertifiedKey>>,
    ) -> Result<Bound, QuicError> {
        cfg.check()?;
        if realms.is_empty() || realms.len() > MAX_REALMS {
            return Err(QuicError::Realms(realms.len()));
        }
        let provider = tls::provider();
        let own_cert = match cert {
            Some(c) => c,
            None => tls::certified_key(identity)?,
        };
        let server_tls = tls::server_config(provider.clone(), own_cert.clone())?;
        let quic_tls =
            QuicServerConfig::try_from(server_tls).map_err(|e| QuicError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
        server.transport_config(Arc::new(link::transport(&cfg, 1)));
        let bind_err = |source| QuicError::Bind {
            addr: cfg.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(cfg.listen).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_err(std::io::Error::other("no tokio runtime")))?;
        let endpoint = quinn::Endpoint::new(
            tls::endpoint_config(identity),
            Some(server),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        let discovery = match &cfg.discovery {
            Some(d) => {
                let err = |source| QuicError::Discovery {
                    addr: d.bind,
                    source,
                };
                let std_sock = discovery::bind_socket(d.bind).map_err(err)?;
                let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(err)?;
                Some((sock, d.clone()))
            }
            None => None,
        };
        let discovery_addr = match &discovery {
            Some((s, d)) => Some(s.local_addr().map_err(|source| QuicError::Discovery {
                addr: d.bind,
                source,
            })?),
            None => None,
        };
        let (events_tx, events) = mpsc::channel(cfg.event_queue);
        let cancel = CancellationToken::new();
        let inner = Arc::new(Inner {
            node_id: identity.node_id(),
            endpoint,
            local_addr,
            provider,
            own_cert,
            client_transport: Arc::new(link::transport(&cfg, 0)),
            realms: realms.to_vec(),
            events: events_tx,
            next_link: AtomicU64::new(1),
            state: Mutex::new(link::State::default()),
            changed: watch::Sender::new(0),
            recv_budget: Arc::new(Semaphore::new(cfg.recv_budget())),
            handshakes: Arc::new(Semaphore::new(cfg.max_pending_handshakes)),
            cancel: cancel.clone(),
            tasks: TaskTracker::new(),
            counters: Default::default(),
            discovery_addr,
            cfg,
        });
        inner.tasks.spawn(link::accept_loop(inner.clone()));
        let discovered = match discovery {
            Some((sock, d)) => {
                let (tx, rx) = mpsc::channel(d.queue);
                inner
                    .tasks
                    .spawn(discovery::run(inner.clone(), sock, d, identity.clone(), tx));
                Some(rx)
            }
            None => None,
        };
        tracing::info!(node = %inner.node_id.short(), port = local_addr.port(), "QUIC link bound");
        Ok(Bound {
            link: QuicLink {
                inner,
                _guard: Arc::new(cancel.drop_guard()),
            },
            events,
            discovered,
        })
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The UDP address discovery listens on, if discovery is on.
    pub fn discovery_addr(&self) -> Option<SocketAddr> {
        self.inner.discovery_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Keeps a connection to `peer` at `addr` (`host:port`, resolved at each
    /// attempt) up until [`undial`](Self::undial) or shutdown: reconnects with
    /// backoff after failures and losses. Dialing a peer again replaces its address.
    /// Outcomes show as `Up`/`Down` events; failed attempts are logged and counted.
    pub fn dial(&self, peer: NodeId, addr: String) {
        dial::dial(&self.inner, peer, addr);
    }

    /// Stops keeping `peer` connected; a current link stays up until it ends.
    pub fn undial(&self, peer: &NodeId) {
        dial::undial(&self.inner, peer);
    }

    /// One connection attempt to `peer` at `addr` (e.g. a [`Discovered`] peer). On
    /// success the link's `Up` event has been queued and its id is returned; if a link
    /// with the peer already exists, its id is returned.
    pub async fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<LinkId, ConnectError> {
        // Run the attempt as a task of the endpoint, so that a caller giving up
        // neither leaks a half-admitted connection nor escapes shutdown.
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        if self.inner.tasks.is_closed() {
            return Err(ConnectError::ShuttingDown);
        }
        self.inner.tasks.spawn(async move {
            let r = link::connect_once(&inner, peer, addr).await.map(|l| l.id);
            let _ = tx.send(r);
        });
        rx.await.unwrap_or(Err(ConnectError::ShuttingDown))
    }

    /// Queues a control frame on `link`. Waits while the link's frame queue is full;
    /// `Ok` means queued (frames are delivered in order while the link is up).
    pub async fn send_frame(&self, link: LinkId, frame: Vec<u8>) -> Result<(), SendError> {
        link::send_frame(&self.inner, link, frame).await
    }

    /// Starts sending a bundle on `link` as transfer `transfer`; waits while
    /// `max_in_flight` transfers are unfinished. The outcome arrives as
    /// [`LinkEvent::Sent`] or [`LinkEvent::SendFailed`].
    pub async fn send_bundle(
        &self,
        link: LinkId,
        transfer: TransferId,
        bundle: Bytes,
    ) -> Result<(), SendError> {
        link::send_bundle(&self.inner, link, transfer, bundle).await
    }

    /// Closes `link` (it reports `Down { reason: Closed }`); `reason` (at most 64
    /// bytes are sent) is for the peer's logs.
    pub fn close_link(&self, link: LinkId, reason: &str) {
        link::close_link(&self.inner, link, reason);
    }

    /// The links that are up, with their peers.
    pub fn links(&self) -> Vec<(LinkId, NodeId)> {
        let st = self.inner.state();
        let mut v: Vec<_> = st.links.values().map(|l| (l.id, l.peer)).collect();
        v.sort();
        v
    }

    /// Counters of refusals and drops since bind.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Closes every link (each reports `Down` if the event queue has room), stops
    /// dialing, discovery and accepting, and waits for the tasks to end. The UDP
    /// ports are released when the last clone of this handle is dropped.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.cancel.cancel();
        let links: Vec<_> = inner.state().links.values().cloned().collect();
        for l in links {
            l.close_with(
                ferry_cl_api::DownReason::Closed,
                link::code::CLOSED,
                b"shutdown",
            );
        }
        inner.endpoint.close(link::code::CLOSED, b"shutdown");
        inner.tasks.close();
        inner.tasks.wait().await;
        let _ = tokio::time::timeout(DRAIN_WAIT, inner.endpoint.wait_idle()).await;
    }

    /// Binds with a given certificate and key (tests: mismatched keys).
    #[cfg(test)]
    pub(crate) async fn bind_with_cert(
        cfg: QuicConfig,
        identity: &Identity,
        realms: &[Realm],
        cert: Arc<CertifiedKey>,
    ) -> Result<Bound, QuicError> {
        Self::bind_inner(cfg, identity, realms, Some(cert)).await
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

#[cfg(test)]
mod tests;
