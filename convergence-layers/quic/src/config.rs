//! Configuration of the QUIC link and of LAN discovery.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::error::QuicError;

/// Default QUIC port (as `ferry.toml`'s default `listen`).
pub const DEFAULT_PORT: u16 = 4556;
/// Default UDP port of discovery beacons.
pub const DEFAULT_BEACON_PORT: u16 = 4558;

/// The QUIC link's settings. Start from [`QuicConfig::default`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuicConfig {
    /// UDP address to listen on (port 0: any free port, see
    /// [`QuicLink::local_addr`](crate::QuicLink::local_addr)). Default `0.0.0.0:4556`.
    pub listen: SocketAddr,
    /// A link with nothing heard for this long goes down with
    /// [`DownReason::Timeout`](ferry_cl_api::DownReason::Timeout). Default 30 s.
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive packets on an idle link (must be shorter than the
    /// idle timeout). Default 10 s.
    pub keep_alive: Duration,
    /// Time allowed for the QUIC/TLS handshake plus realm admission. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest control frame accepted from a peer; a larger one closes the link as a
    /// protocol error. Announced to the peer, which refuses to send larger ones.
    /// Default 1 MiB.
    pub max_frame_bytes: u32,
    /// Largest bundle accepted from a peer; larger ones are refused (the stream is
    /// stopped) and counted, the link stays up. Announced to the peer. At most 4 GiB.
    /// Default [`ferry_core::DEFAULT_MAX_BUNDLE_BYTES`].
    pub max_bundle_bytes: u64,
    /// Most bundle transfers in flight per link, each way: outgoing
    /// [`send_bundle`](crate::QuicLink::send_bundle) waits when this many are
    /// unfinished, and a peer may open at most this many bundle streams. Default 256:
    /// a transfer ends only when the peer has acknowledged every byte, so the window
    /// must cover the round trip at full rate (64 held two nodes on 127.0.0.1 to
    /// about 9,500 small bundles/s, 256 gives about 11,000; see docs/performance.md).
    /// Memory for incoming bundles is bounded by `recv_budget_bytes`, not by this.
    pub max_in_flight: u32,
    /// Memory for bundles being received, over all links: a bundle waits (and QUIC
    /// flow control holds its sender back) until its whole length fits. Raised to
    /// `max_bundle_bytes` if smaller. Default 256 MiB.
    pub recv_budget_bytes: u64,
    /// Capacity of the event channel [`QuicLink::bind`](crate::QuicLink::bind)
    /// returns. Default 1024.
    pub event_queue: usize,
    /// Reconnection of dialed peers.
    pub reconnect: Backoff,
    /// Most handshakes of incoming connections at once; more are refused. Default 64.
    pub max_pending_handshakes: usize,
    /// LAN discovery by signed UDP beacons; `None` turns it off. Default on.
    pub discovery: Option<DiscoveryConfig>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 1 << 20,
            max_bundle_bytes: ferry_core::DEFAULT_MAX_BUNDLE_BYTES as u64,
            max_in_flight: 256,
            recv_budget_bytes: 256 << 20,
            event_queue: 1024,
            reconnect: Backoff::default(),
            max_pending_handshakes: 64,
            discovery: Some(DiscoveryConfig::default()),
        }
    }
}

impl QuicConfig {
    /// A configuration for tests and examples: listen on `127.0.0.1` with any free
    /// port, discovery off, everything else default.
    pub fn localhost() -> Self {
        Self {
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            discovery: None,
            ..Self::default()
        }
    }

    pub(crate) fn check(&self) -> Result<(), QuicError> {
        let bad = |what| Err(QuicError::Config(what));
        if self.idle_timeout.is_zero() || self.idle_timeout > Duration::from_secs(3600) {
            return bad("idle_timeout must be between 1 ms and 1 hour");
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be non-zero and shorter than idle_timeout");
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout must be non-zero");
        }
        if self.max_frame_bytes < crate::admission::MIN_FRAME_LIMIT {
            return bad("max_frame_bytes must be at least 64");
        }
        if self.max_bundle_bytes == 0 || self.max_bundle_bytes > u64::from(u32::MAX) {
            return bad("max_bundle_bytes must be between 1 and 4 GiB");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000 {
            return bad("max_in_flight must be between 1 and 10000");
        }
        if self.event_queue == 0 {
            return bad("event_queue must be at least 1");
        }
        if self.max_pending_handshakes == 0 {
            return bad("max_pending_handshakes must be at least 1");
        }
        let r = &self.reconnect;
        if r.initial.is_zero() || r.max < r.initial {
            return bad("reconnect: initial must be non-zero and at most max");
        }
        if let Some(d) = &self.discovery {
            if d.interval.is_zero() || d.max_per_sec == 0 || d.queue == 0 {
                return bad("discovery: interval, max_per_sec and queue must be non-zero");
            }
        }
        Ok(())
    }

    /// The receive budget actually used.
    pub(crate) fn recv_budget(&self) -> usize {
        let b = self.recv_budget_bytes.max(self.max_bundle_bytes);
        // Tokio semaphores hold at most usize::MAX >> 3 permits.
        usize::try_from(b)
            .unwrap_or(usize::MAX)
            .min(usize::MAX >> 3)
    }
}

/// Reconnection backoff of dialed peers: after a failed attempt or a lost link, wait
/// `initial`, doubling up to `max`, each wait randomised to between half and one and a
/// half times its value; a link that stayed up for `stable_after` resets it. A
/// discovery beacon from the peer cuts the wait short (Wi-Fi came back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// First wait. Default 500 ms.
    pub initial: Duration,
    /// Longest wait. Default 60 s.
    pub max: Duration,
    /// Uptime after which a link counts as stable. Default 10 s.
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// A backoff with the given waits.
    pub fn new(initial: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
            initial,
            max,
            stable_after,
        }
    }
}

/// LAN discovery settings (see [`discovery`](crate::discovery)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// UDP address beacons are received on. Default `0.0.0.0:4558` (shared with other
    /// nodes on the same host through `SO_REUSEADDR`).
    pub bind: SocketAddr,
    /// Where beacons are sent. Default the IPv4 broadcast address
    /// `255.255.255.255:4558`; tests list `127.0.0.1:PORT` addresses.
    pub targets: Vec<SocketAddr>,
    /// Interval between beacons. Default 5 s.
    pub interval: Duration,
    /// Beacons whose timestamp differs from this node's clock by more than this are
    /// ignored (replay window). `None`: no clock check, for deployments whose clocks
    /// are not set; then only the per-node increasing-timestamp check stops replays.
    /// Default 5 minutes.
    pub max_age: Option<Duration>,
    /// Most received beacons processed per second; the rest are dropped unread.
    /// Default 100.
    pub max_per_sec: u32,
    /// A peer still heard is announced again after this long (if not connected).
    /// Default 30 s.
    pub renotify: Duration,
    /// Capacity of the discovery channel. Default 64.
    pub queue: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                DEFAULT_BEACON_PORT,
            )),
            targets: vec![SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::BROADCAST,
                DEFAULT_BEACON_PORT,
            ))],
            interval: Duration::from_secs(5),
            max_age: Some(Duration::from_secs(300)),
            max_per_sec: 100,
            renotify: Duration::from_secs(30),
            queue: 64,
        }
    }
}

impl DiscoveryConfig {
    /// Discovery for tests: receive on `bind`, send to `targets` only.
    pub fn unicast(bind: SocketAddr, targets: Vec<SocketAddr>) -> Self {
        Self {
            bind,
            targets,
            ..Self::default()
        }
    }
}
