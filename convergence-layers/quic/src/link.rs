//! The connection engine: admission, one link per admitted connection, its tasks,
//! and the events they report.
//!
//! Per link, in this order: `Up`; then any `Frame`, `Bundle`, `Sent`, `SendFailed`;
//! then `Down`, after every task of the link has finished. Every transfer that
//! [`send_bundle`](crate::QuicLink::send_bundle) accepted gets exactly one `Sent` or
//! `SendFailed`, before the link's `Down`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ferry_cl_api::{DownReason, LinkCaps, LinkEvent, LinkId, TransferId};
use ferry_core::{NodeId, Realm};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{
    Connection, ConnectionError, Endpoint, ReadError, ReadExactError, RecvStream, SendStream,
    TransportConfig, VarInt,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::admission::{
    own_proofs, proof_context, shares_realm, Hello, HelloHeader, Role, EXPORTER_LABEL, HELLO_HEADER,
};
use crate::config::QuicConfig;
use crate::error::{ConnectError, SendError};
use crate::stats::{bump, Counters};
use crate::tls;

/// QUIC application error codes (connection close) and stream stop codes.
pub(crate) mod code {
    use quinn::VarInt;
    /// Normal close (shutdown, `close_link`).
    pub const CLOSED: VarInt = VarInt::from_u32(0);
    /// The peer shares no realm with us.
    pub const FOREIGN_REALM: VarInt = VarInt::from_u32(1);
    /// The peer broke the protocol.
    pub const PROTOCOL: VarInt = VarInt::from_u32(2);
    /// Another connection with this peer is kept.
    pub const DUPLICATE: VarInt = VarInt::from_u32(3);
    /// A control frame over the receiver's limit.
    pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(4);
    /// Stream stop: bundle over the receiver's limit.
    pub const BUNDLE_TOO_LARGE: VarInt = VarInt::from_u32(1);
    /// Stream stop: bundle stream malformed.
    pub const BUNDLE_MALFORMED: VarInt = VarInt::from_u32(2);
}

/// Queued control frames per link.
const FRAME_QUEUE: usize = 256;
/// Most frames written in one batch.
const FRAME_BATCH: usize = 64;
/// Header of a bundle stream: transfer id and length, both u64 LE.
const BUNDLE_HEADER: usize = 16;
/// How long a new link waits for the one it replaces to report `Down`.
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// Shared state of one bound endpoint.
pub(crate) struct Inner {
    pub node_id: NodeId,
    pub endpoint: Endpoint,
    pub local_addr: SocketAddr,
    pub provider: Arc<CryptoProvider>,
    pub own_cert: Arc<CertifiedKey>,
    pub client_transport: Arc<TransportConfig>,
    pub realms: Vec<Realm>,
    pub cfg: QuicConfig,
    pub events: mpsc::Sender<LinkEvent>,
    pub next_link: AtomicU64,
    pub state: Mutex<State>,
    /// Bumped after every `Down`.
    pub changed: watch::Sender<u64>,
    pub recv_budget: Arc<Semaphore>,
    pub handshakes: Arc<Semaphore>,
    /// Cancelled by shutdown (or when the last handle is dropped).
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
    pub counters: Counters,
    pub discovery_addr: Option<SocketAddr>,
}

#[derive(Default)]
pub(crate) struct State {
    pub links: HashMap<LinkId, Arc<Link>>,
    pub peers: HashMap<NodeId, LinkId>,
    pub pending: HashSet<NodeId>,
    pub dials: HashMap<NodeId, Dial>,
}

/// A dialed peer's reconnect task.
pub(crate) struct Dial {
    pub token: CancellationToken,
    pub kick: Arc<Notify>,
}

/// One admitted connection.
pub(crate) struct Link {
    pub id: LinkId,
    pub peer: NodeId,
    /// Which node dialed (the TLS client).
    pub dialer: NodeId,
    pub conn: Connection,
    pub caps: LinkCaps,
    pub frames: mpsc::Sender<Vec<u8>>,
    in_flight: Arc<Semaphore>,
    /// Bundle transfers started on this link: their order, for stream priorities.
    started: std::sync::atomic::AtomicU32,
    local_reason: Mutex<Option<DownReason>>,
    /// Stops the link's tasks.
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Cancelled once `Down` was emitted.
    pub down: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    /// Closes the connection, recording why for the `Down` event (the first reason
    /// recorded wins).
    pub(crate) fn close_with(&self, reason: DownReason, code: VarInt, msg: &[u8]) {
        lock(&self.local_reason).get_or_insert(reason);
        self.conn.close(code, msg);
    }
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn link(&self, id: LinkId) -> Option<Arc<Link>> {
        self.state().links.get(&id).cloned()
    }

    pub(crate) fn is_connected(&self, peer: &NodeId) -> bool {
        let st = self.state();
        st.peers.contains_key(peer) || st.pending.contains(peer)
    }

    /// Sends an event, waiting for room; during shutdown only if there is room.
    pub(crate) async fn emit(&self, ev: LinkEvent) {
        if self.cancel.is_cancelled() {
            let _ = self.events.try_send(ev);
            return;
        }
        tokio::select! {
            biased;
            _ = self.events.send(ev) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    fn count_failure(&self, e: &ConnectError) {
        let c = &self.counters;
        match e {
            ConnectError::ForeignRealm => bump(&c.refused_realm),
            ConnectError::Duplicate => bump(&c.refused_duplicate),
            ConnectError::Protocol(_) => bump(&c.protocol_errors),
            ConnectError::WrongPeer { .. }
            | ConnectError::Handshake(_)
            | ConnectError::TimedOut => bump(&c.handshake_failures),
            _ => {}
        }
    }
}

/// Builds the QUIC transport parameters: `bidi` incoming bidirectional streams (the
/// control stream), `max_in_flight` incoming bundle streams.
pub(crate) fn transport(cfg: &QuicConfig, bidi: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    let (stream_window, conn_window) = windows(cfg);
    // Checked by QuicConfig::check (at most one hour).
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .unwrap_or_else(|_| quinn::IdleTimeout::from(VarInt::from_u32(30_000)));
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(cfg.keep_alive))
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(cfg.max_in_flight))
        .datagram_receive_buffer_size(None)
        .stream_receive_window(VarInt::from_u32(stream_window))
        .receive_window(VarInt::from_u32(conn_window))
        .send_window(64 << 20);
    t
}

/// Flow-control windows `(per stream, per connection)`: a stream never needs more
/// than one whole bundle or frame (at least 64 KiB, at most 16 MiB); a connection
/// four streams' worth (at least 256 KiB, at most 64 MiB). This bounds what a peer
/// can make this node buffer unread.
pub(crate) fn windows(cfg: &QuicConfig) -> (u32, u32) {
    let need = (cfg.max_bundle_bytes + 16).max(u64::from(cfg.max_frame_bytes) + 4);
    let stream = need.clamp(64 << 10, 16 << 20);
    let conn = (4 * stream).clamp(256 << 10, 64 << 20);
    // Both are at most 64 MiB.
    (stream as u32, conn as u32)
}

/// Maps a connection error seen during admission.
pub(crate) fn connect_error(e: &ConnectionError) -> ConnectError {
    match e {
        ConnectionError::ApplicationClosed(ac) if ac.error_code == code::FOREIGN_REALM => {
            ConnectError::ForeignRealm
        }
        ConnectionError::ApplicationClosed(ac) if ac.error_code == code::DUPLICATE => {
            ConnectError::Duplicate
        }
        ConnectionError::ApplicationClosed(ac) => ConnectError::Closed(
            String::from_utf8_lossy(&ac.reason[..ac.reason.len().min(64)]).into(),
        ),
        ConnectionError::TimedOut => ConnectError::TimedOut,
        ConnectionError::LocallyClosed => ConnectError::ShuttingDown,
        other => ConnectError::Handshake(other.to_string()),
    }
}

/// Maps how an established connection ended.
fn down_reason(e: &ConnectionError) -> DownReason {
    match e {
        ConnectionError::ApplicationClosed(ac) => match ac.error_code {
            c if c == code::CLOSED || c == code::DUPLICATE => DownReason::Closed,
            c if c == code::FOREIGN_REALM => DownReason::Refused("foreign realm".into()),
            c if c == code::FRAME_TOO_LARGE => {
                DownReason::Error("peer refused a control frame as too large".into())
            }
            c if c == code::PROTOCOL => DownReason::Error("peer reported a protocol error".into()),
            _ => DownReason::Error(format!("closed by peer with code {}", ac.error_code)),
        },
        ConnectionError::TimedOut => DownReason::Timeout,
        ConnectionError::LocallyClosed => DownReason::Closed,
        ConnectionError::Reset => DownReason::Error("connection reset (peer restarted?)".into()),
        other => DownReason::Error(other.to_string()),
    }
}

/// The node id in the peer's (already verified) certificate.
fn peer_node_id(conn: &Connection) -> Option<NodeId> {
    let any = conn.peer_identity()?;
    let certs = any
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::node_id_of_cert(certs.first()?).ok()
}

/// A connection that passed TLS and realm admission.
pub(crate) struct Admitted {
    conn: Connection,
    peer: NodeId,
    dialer: NodeId,
    send: SendStream,
    recv: RecvStream,
    hello: Hello,
}

fn read_error(e: ReadExactError) -> ConnectError {
    match e {
        ReadExactError::FinishedEarly(_) => ConnectError::Protocol("control stream ended"),
        ReadExactError::ReadError(ReadError::ConnectionLost(c)) => connect_error(&c),
        ReadExactError::ReadError(_) => ConnectError::Protocol("control stream reset"),
    }
}

/// Realm admission on a connection whose TLS handshake completed.
async fn admit(inner: &Inner, conn: Connection, role: Role) -> Result<Admitted, ConnectError> {
    let Some(peer) = peer_node_id(&conn) else {
        conn.close(code::PROTOCOL, b"no node certificate");
        return Err(ConnectError::Handshake("no node certificate".into()));
    };
    if peer == inner.node_id {
        conn.close(code::PROTOCOL, b"connected to self");
        return Err(ConnectError::SelfDial);
    }
    let (client, server) = match role {
        Role::Client => (inner.node_id, peer),
        Role::Server => (peer, inner.node_id),
    };
    let mut exporter = [0u8; 32];
    if conn
        .export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .is_err()
    {
        conn.close(code::PROTOCOL, b"no exporter");
        return Err(ConnectError::Handshake("TLS exporter unavailable".into()));
    }
    let streams = match role {
        Role::Client => conn.open_bi().await,
        Role::Server => conn.accept_bi().await,
    };
    let (mut send, mut recv) = streams.map_err(|e| connect_error(&e))?;
    let mine = Hello {
        max_frame: inner.cfg.max_frame_bytes,
        max_bundle: inner.cfg.max_bundle_bytes,
        max_in_flight: inner.cfg.max_in_flight,
        proofs: own_proofs(
            &inner.realms,
            &proof_context(&exporter, &client, &server, role),
        ),
    };
    if let Err(e) = send.write_all(&mine.encode()).await {
        return Err(match e {
            quinn::WriteError::ConnectionLost(c) => connect_error(&c),
            _ => ConnectError::Protocol("control stream stopped"),
        });
    }
    let mut head = [0u8; HELLO_HEADER];
    recv.read_exact(&mut head).await.map_err(read_error)?;
    let header = match HelloHeader::parse(&head) {
        Ok(h) => h,
        Err(e) => {
            conn.close(code::PROTOCOL, e.as_str().as_bytes());
            return Err(ConnectError::Protocol(e.as_str()));
        }
    };
    let mut body = vec![0u8; 32 * header.proofs];
    recv.read_exact(&mut body).await.map_err(read_error)?;
    let theirs = Hello::from_parts(header, &body);
    let their_ctx = proof_context(&exporter, &client, &server, role.other());
    if !shares_realm(&inner.realms, &their_ctx, &theirs.proofs) {
        info!(peer = %peer.short(), "peer refused: foreign realm");
        conn.close(code::FOREIGN_REALM, b"foreign realm");
        return Err(ConnectError::ForeignRealm);
    }
    Ok(Admitted {
        conn,
        peer,
        dialer: client,
        send,
        recv,
        hello: theirs,
    })
}

/// Accepts incoming connections until shutdown.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            _ = inner.cancel.cancelled() => return,
        };
        let Ok(permit) = inner.handshakes.clone().try_acquire_owned() else {
            bump(&inner.counters.refused_busy);
            debug!(remote = %incoming.remote_address(), "too many pending handshakes: refused");
            incoming.refuse();
            continue;
        };
        let i = inner.clone();
        inner.tasks.spawn(handle_incoming(i, incoming, permit));
    }
}

async fn handle_incoming(
    inner: Arc<Inner>,
    incoming: quinn::Incoming,
    permit: OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let hs = async {
        let connecting = incoming.accept().map_err(|e| connect_error(&e))?;
        let conn = connecting.await.map_err(|e| connect_error(&e))?;
        admit(&inner, conn, Role::Server).await
    };
    let result = tokio::select! {
        r = tokio::time::timeout(inner.cfg.handshake_timeout, hs) => {
            r.unwrap_or(Err(ConnectError::TimedOut))
        }
        _ = inner.cancel.cancelled() => Err(ConnectError::ShuttingDown),
    };
    drop(permit);
    match result {
        Ok(admitted) => {
            let peer = admitted.peer;
            if let Err(e) = start_link(&inner, admitted).await {
                debug!(peer = %peer.short(), error = %e, "incoming connection not kept");
            }
        }
        Err(e) => {
            inner.count_failure(&e);
            info!(error = %e, "incoming connection refused");
            debug!(%remote, error = %e, "incoming connection refused");
        }
    }
}

/// Clears a peer's pending mark when a connection attempt ends.
struct Pending<'a> {
    inner: &'a Inner,
    peer: NodeId,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.inner.state().pending.remove(&self.peer);
        // Dial tasks waiting for this attempt to end look again.
        self.inner.changed.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// One connection attempt to `peer` at `addr`: handshake, admission, link start.
/// Returns the existing link if the peer is already connected.
pub(crate) async fn connect_once(
    inner: &Arc<Inner>,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<Arc<Link>, ConnectError> {
    if peer == inner.node_id {
        return Err(ConnectError::SelfDial);
    }
    if inner.cancel.is_cancelled() {
        return Err(ConnectError::ShuttingDown);
    }
    let _pending = {
        let mut st = inner.state();
        if let Some(link) = st.peers.get(&peer).and_then(|id| st.links.get(id)) {
            return Ok(link.clone());
        }
        if !st.pending.insert(peer) {
            return Err(ConnectError::Duplicate);
        }
        Pending { inner, peer }
    };
    let result = attempt(inner, peer, addr).await;
    match result {
        Ok(admitted) => start_link(inner, admitted).await,
        Err(e) => {
            inner.count_failure(&e);
            Err(e)
        }
    }
}

async fn attempt(
    inner: &Arc<Inner>,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<Admitted, ConnectError> {
    let (tls, presented) = tls::client_config(inner.provider.clone(), inner.own_cert.clone(), peer)
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let quic_tls =
        QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic_tls));
    client.transport_config(inner.client_transport.clone());
    let connecting = inner
        .endpoint
        .connect_with(client, addr, "ferry")
        .map_err(|e| {
            // (quinn's message may contain the address: not for info-level logs.)
            ConnectError::Address(match e {
                quinn::ConnectError::InvalidRemoteAddress(_) => {
                    "address not reachable from the listen socket".into()
                }
                quinn::ConnectError::EndpointStopping => "endpoint stopping".into(),
                other => other.to_string(),
            })
        })?;
    let hs = async {
        let conn = connecting
            .await
            .map_err(|e| match lock(&presented).take() {
                Some(p) => ConnectError::WrongPeer {
                    expected: peer,
                    presented: p,
                },
                None => connect_error(&e),
            })?;
        admit(inner, conn, Role::Client).await
    };
    tokio::select! {
        r = tokio::time::timeout(inner.cfg.handshake_timeout, hs) => {
            r.unwrap_or(Err(ConnectError::TimedOut))
        }
        _ = inner.cancel.cancelled() => Err(ConnectError::ShuttingDown),
    }
}

/// Registers an admitted connection (one per peer pair), reports `Up` and starts the
/// link's tasks.
async fn start_link(inner: &Arc<Inner>, a: Admitted) -> Result<Arc<Link>, ConnectError> {
    let own = &inner.cfg;
    let caps = LinkCaps {
        mtu: Some(a.hello.max_frame.min(own.max_frame_bytes)),
        reliable: true,
        bitrate_bps: None,
        duty_cycle: None,
        broadcast: false,
        medium: None,
        max_bundle_bytes: a.hello.max_bundle,
        max_in_flight: a.hello.max_in_flight.min(own.max_in_flight),
    };
    let (frames, frames_rx) = mpsc::channel(FRAME_QUEUE);
    let (link, replaced) = {
        let mut st = inner.state();
        if inner.cancel.is_cancelled() {
            drop(st);
            a.conn.close(code::CLOSED, b"shutdown");
            return Err(ConnectError::ShuttingDown);
        }
        let existing = st
            .peers
            .get(&a.peer)
            .and_then(|id| st.links.get(id))
            .cloned();
        if let Some(e) = &existing {
            // One connection per pair, decided the same way on both ends: a newer
            // connection from the same dialer replaces the old one (the dialer only
            // dials when it has lost it); between the two directions, the one dialed
            // by the lower node id is kept.
            // (`==`: same dialer, newer wins; `<`: lower dialer wins.)
            let new_wins = a.dialer <= e.dialer;
            if !new_wins {
                drop(st);
                a.conn.close(code::DUPLICATE, b"duplicate connection");
                bump(&inner.counters.refused_duplicate);
                return Err(ConnectError::Duplicate);
            }
        }
        let id = LinkId(inner.next_link.fetch_add(1, Ordering::Relaxed));
        let link = Arc::new(Link {
            id,
            peer: a.peer,
            dialer: a.dialer,
            conn: a.conn,
            caps,
            frames,
            in_flight: Arc::new(Semaphore::new(caps.max_in_flight as usize)),
            started: std::sync::atomic::AtomicU32::new(0),
            local_reason: Mutex::new(None),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            down: CancellationToken::new(),
        });
        st.links.insert(id, link.clone());
        st.peers.insert(a.peer, id);
        (link, existing)
    };
    if let Some(old) = replaced {
        debug!(old = %old.id, new = %link.id, peer = %link.peer.short(), "replacing link");
        old.close_with(DownReason::Closed, code::DUPLICATE, b"replaced");
        bump(&inner.counters.refused_duplicate);
        let _ = tokio::time::timeout(REPLACE_WAIT, old.down.cancelled()).await;
    }
    let span = tracing::info_span!("link", link = %link.id, peer = %link.peer.short());
    info!(parent: &span, dialed_by_us = (link.dialer == inner.node_id), "link up");
    debug!(parent: &span, remote = %link.conn.remote_address(), "link up");
    bump(&inner.counters.links_up);
    inner
        .emit(LinkEvent::Up {
            link: link.id,
            peer: link.peer,
            caps,
        })
        .await;
    let t = &link.tasks;
    t.spawn(read_frames(inner.clone(), link.clone(), a.recv).instrument(span.clone()));
    t.spawn(write_frames(inner.clone(), link.clone(), a.send, frames_rx).instrument(span.clone()));
    t.spawn(accept_bundles(inner.clone(), link.clone()).instrument(span.clone()));
    inner
        .tasks
        .spawn(supervise(inner.clone(), link.clone()).instrument(span));
    Ok(link)
}

/// Waits for the connection to end, then reports `Down` after the link's tasks.
async fn supervise(inner: Arc<Inner>, link: Arc<Link>) {
    tokio::select! {
        _ = link.conn.closed() => {}
        _ = inner.cancel.cancelled() => {
            link.close_with(DownReason::Closed, code::CLOSED, b"shutdown");
        }
    }
    let err = link.conn.closed().await;
    let reason = lock(&link.local_reason)
        .take()
        .unwrap_or_else(|| down_reason(&err));
    link.stop.cancel();
    link.in_flight.close();
    {
        let mut st = inner.state();
        st.links.remove(&link.id);
        if st.peers.get(&link.peer) == Some(&link.id) {
            st.peers.remove(&link.peer);
        }
    }
    link.tasks.close();
    link.tasks.wait().await;
    info!(?reason, "link down");
    inner
        .emit(LinkEvent::Down {
            link: link.id,
            reason,
        })
        .await;
    link.down.cancel();
    inner.changed.send_modify(|g| *g = g.wrapping_add(1));
}

fn protocol_error(inner: &Inner, link: &Link, what: &'static str) {
    bump(&inner.counters.protocol_errors);
    warn!(what, "protocol error: closing link");
    link.close_with(
        DownReason::Error(what.into()),
        code::PROTOCOL,
        what.as_bytes(),
    );
}

/// Reads length-prefixed control frames.
async fn read_frames(inner: Arc<Inner>, link: Arc<Link>, mut recv: RecvStream) {
    let max = inner.cfg.max_frame_bytes;
    loop {
        let mut len = [0u8; 4];
        let r = tokio::select! {
            r = recv.read_exact(&mut len) => r,
            _ = link.stop.cancelled() => return,
        };
        if let Err(e) = r {
            control_ended(&inner, &link, e);
            return;
        }
        let n = u32::from_le_bytes(len);
        if n > max {
            bump(&inner.counters.protocol_errors);
            warn!(len = n, max, "control frame too large: closing link");
            link.close_with(
                DownReason::Error(format!("peer sent a {n}-byte control frame (max {max})")),
                code::FRAME_TOO_LARGE,
                b"frame too large",
            );
            return;
        }
        let mut buf = vec![0u8; n as usize];
        let r = tokio::select! {
            r = recv.read_exact(&mut buf) => r,
            _ = link.stop.cancelled() => return,
        };
        if let Err(e) = r {
            control_ended(&inner, &link, e);
            return;
        }
        inner
            .emit(LinkEvent::Frame {
                link: link.id,
                bytes: buf,
            })
            .await;
    }
}

fn control_ended(inner: &Inner, link: &Link, e: ReadExactError) {
    match e {
        ReadExactError::ReadError(ReadError::ConnectionLost(_)) => {}
        _ => protocol_error(inner, link, "control stream ended"),
    }
}

/// Writes queued control frames, batching what is queued.
async fn write_frames(
    inner: Arc<Inner>,
    link: Arc<Link>,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    // Frames go before bundle data when both wait for the congestion window.
    let _ = send.set_priority(1);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * FRAME_BATCH);
    loop {
        let first = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
            _ = link.stop.cancelled() => return,
        };
        chunks.clear();
        let mut push = |f: Vec<u8>| {
            // send_frame checked the length against the (u32) limits.
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            chunks.push(Bytes::copy_from_slice(&len.to_le_bytes()));
            chunks.push(Bytes::from(f));
        };
        push(first);
        for _ in 1..FRAME_BATCH {
            match rx.try_recv() {
                Ok(f) => push(f),
                Err(_) => break,
            }
        }
        let r = tokio::select! {
            r = send.write_all_chunks(&mut chunks) => r,
            _ = link.stop.cancelled() => return,
        };
        match r {
            Ok(()) => {}
            Err(quinn::WriteError::ConnectionLost(_)) => return,
            Err(_) => {
                protocol_error(&inner, &link, "control stream stopped by peer");
                return;
            }
        }
    }
}

/// Accepts the peer's bundle streams.
async fn accept_bundles(inner: Arc<Inner>, link: Arc<Link>) {
    loop {
        let recv = tokio::select! {
            r = link.conn.accept_uni() => match r {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = link.stop.cancelled() => return,
        };
        link.tasks
            .spawn(read_bundle(inner.clone(), link.clone(), recv).in_current_span());
    }
}

/// Reads one bundle stream: header, then exactly `length` bytes.
async fn read_bundle(inner: Arc<Inner>, link: Arc<Link>, mut recv: RecvStream) {
    let mut head = [0u8; BUNDLE_HEADER];
    let r = tokio::select! {
        r = recv.read_exact(&mut head) => r,
        _ = link.stop.cancelled() => return,
    };
    if let Err(e) = r {
        if !matches!(e, ReadExactError::ReadError(ReadError::ConnectionLost(_))) {
            bump(&inner.counters.bundles_malformed);
            debug!("bundle stream ended inside its header");
        }
        return;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&head[..8]);
    let transfer = TransferId(u64::from_le_bytes(t));
    t.copy_from_slice(&head[8..]);
    let len = u64::from_le_bytes(t);
    let max = inner.cfg.max_bundle_bytes;
    if len > max {
        bump(&inner.counters.bundles_refused);
        let _ = recv.stop(code::BUNDLE_TOO_LARGE);
        info!(
            transfer = transfer.0,
            len, max, "refused a bundle over the size limit"
        );
        return;
    }
    // len <= max_bundle_bytes <= u32::MAX (checked at bind).
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    let len = len32 as usize;
    let permit = tokio::select! {
        p = inner.recv_budget.clone().acquire_many_owned(len32) => match p {
            Ok(p) => p,
            Err(_) => return,
        },
        _ = link.stop.cancelled() => return,
    };
    let mut buf = Vec::with_capacity(len);
    loop {
        let chunk = tokio::select! {
            c = recv.read_chunk(usize::MAX, true) => c,
            _ = link.stop.cancelled() => return,
        };
        match chunk {
            Ok(Some(c)) => {
                if c.bytes.len() > len - buf.len() {
                    bump(&inner.counters.bundles_malformed);
                    let _ = recv.stop(code::BUNDLE_MALFORMED);
                    debug!(
                        transfer = transfer.0,
                        "bundle stream longer than its header says"
                    );
                    return;
                }
                buf.extend_from_slice(&c.bytes);
            }
            Ok(None) => break,
            Err(ReadError::ConnectionLost(_)) => return,
            Err(_) => {
                bump(&inner.counters.bundles_malformed);
                debug!(transfer = transfer.0, "bundle stream reset");
                return;
            }
        }
    }
    if buf.len() != len {
        bump(&inner.counters.bundles_malformed);
        debug!(
            transfer = transfer.0,
            "bundle stream shorter than its header says"
        );
        return;
    }
    inner
        .emit(LinkEvent::Bundle {
            link: link.id,
            transfer,
            bytes: buf,
        })
        .await;
    drop(permit);
}

/// Queues a control frame.
pub(crate) async fn send_frame(inner: &Inner, id: LinkId, frame: Vec<u8>) -> Result<(), SendError> {
    let link = inner.link(id).ok_or(SendError::UnknownLink(id))?;
    let max = link.caps.mtu.unwrap_or(inner.cfg.max_frame_bytes);
    if frame.len() as u64 > u64::from(max) {
        return Err(SendError::TooLarge {
            len: frame.len() as u64,
            max: u64::from(max),
        });
    }
    tokio::select! {
        r = link.frames.send(frame) => r.map_err(|_| SendError::UnknownLink(id)),
        _ = link.stop.cancelled() => Err(SendError::UnknownLink(id)),
    }
}

/// Starts a bundle transfer once an in-flight slot is free.
pub(crate) async fn send_bundle(
    inner: &Arc<Inner>,
    id: LinkId,
    transfer: TransferId,
    bundle: Bytes,
) -> Result<(), SendError> {
    let link = inner.link(id).ok_or(SendError::UnknownLink(id))?;
    let max = link.caps.max_bundle_bytes;
    if bundle.len() as u64 > max {
        return Err(SendError::TooLarge {
            len: bundle.len() as u64,
            max,
        });
    }
    let permit = tokio::select! {
        p = link.in_flight.clone().acquire_owned() => p.map_err(|_| SendError::UnknownLink(id))?,
        _ = link.stop.cancelled() => return Err(SendError::UnknownLink(id)),
    };
    let order = link
        .started
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let priority = stream_priority(order, bundle.len());
    let inner = inner.clone();
    let l = link.clone();
    link.tasks.spawn(
        async move {
            let result = write_bundle(&l.conn, transfer, bundle, priority).await;
            // Free the slot before reporting: the router may be waiting for a slot
            // in the same task that drains events.
            drop(permit);
            let ev = match result {
                Ok(()) => LinkEvent::Sent {
                    link: l.id,
                    transfer,
                },
                Err(why) => {
                    debug!(transfer = transfer.0, why, "bundle transfer failed");
                    LinkEvent::SendFailed {
                        link: l.id,
                        transfer,
                    }
                }
            };
            inner.emit(ev).await;
        }
        .in_current_span(),
    );
    Ok(())
}

/// Bundles up to this size go before larger ones ([`stream_priority`]).
const SMALL_BUNDLE: usize = 64 << 10;

/// The QUIC send priority of the `order`-th bundle transfer of a link, of `len`
/// bytes. Control frames keep quinn's default 0, above every bundle; small bundles
/// (at most [`SMALL_BUNDLE`]) share one level below them, round-robin; large ones
/// come after, first started, first sent. Without it quinn shares the link
/// round-robin between every open stream, so the fragments of a large payload (or
/// any run of large bundles) all finish together at the end instead of one after
/// another, and the next hop can forward (or deliver) none of them until then.
/// (Each level costs quinn some work per packet, so the many small bundles of a
/// busy link share one.)
fn stream_priority(order: u32, len: usize) -> i32 {
    const CLASS: i32 = 1 << 29;
    if len <= SMALL_BUNDLE {
        -1
    } else {
        -2 - (order % CLASS as u32) as i32
    }
}

async fn write_bundle(
    conn: &Connection,
    transfer: TransferId,
    bundle: Bytes,
    priority: i32,
) -> Result<(), &'static str> {
    let mut s = conn.open_uni().await.map_err(|_| "connection lost")?;
    s.set_priority(priority).map_err(|_| "stream closed")?;
    let mut head = [0u8; BUNDLE_HEADER];
    head[..8].copy_from_slice(&transfer.0.to_le_bytes());
    head[8..].copy_from_slice(&(bundle.len() as u64).to_le_bytes());
    let mut chunks = [Bytes::copy_from_slice(&head), bundle];
    s.write_all_chunks(&mut chunks)
        .await
        .map_err(|_| "stream write failed")?;
    s.finish().map_err(|_| "stream closed")?;
    match s.stopped().await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("refused by the peer"),
        Err(_) => Err("connection lost"),
    }
}

/// Closes one link.
pub(crate) fn close_link(inner: &Inner, id: LinkId, reason: &str) {
    if let Some(link) = inner.link(id) {
        let msg = reason.as_bytes();
        link.close_with(DownReason::Closed, code::CLOSED, &msg[..msg.len().min(64)]);
    }
}

#[cfg(test)]
mod priority_tests {
    use super::{stream_priority, SMALL_BUNDLE};

    /// Control frames (0) outrank every bundle; small bundles, all on one level,
    /// outrank large ones whatever their order; the first large one started goes
    /// first.
    #[test]
    fn small_before_large_and_first_started_first() {
        let small = |o| stream_priority(o, SMALL_BUNDLE);
        let large = |o| stream_priority(o, SMALL_BUNDLE + 1);
        for o in [0, 1, 1000, u32::MAX] {
            assert!(small(o) < 0 && large(o) < 0);
            assert!(small(o) > large(0));
            assert_eq!(small(o), small(0));
        }
        assert!(large(0) > large(1) && large(1) > large(1000));
        assert!(large((1 << 29) - 1) > i32::MIN);
    }
}
