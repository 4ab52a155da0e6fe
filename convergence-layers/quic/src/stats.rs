//! Counters of what the link refused or dropped (nothing else reports these).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the link's counters since [`bind`](crate::QuicLink::bind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Links that came up.
    pub links_up: u64,
    /// QUIC/TLS handshakes that failed: bad or missing certificate, wrong node id,
    /// bad handshake signature, timeouts.
    pub handshake_failures: u64,
    /// Connections refused because the peer shares no realm (by either side).
    pub refused_realm: u64,
    /// Connections closed because another one with the same peer is kept.
    pub refused_duplicate: u64,
    /// Incoming connections refused because too many handshakes were pending.
    pub refused_busy: u64,
    /// Protocol errors: bad hello, oversized frame, control stream ended.
    pub protocol_errors: u64,
    /// Incoming bundles refused for being over `max_bundle_bytes`.
    pub bundles_refused: u64,
    /// Incoming bundle streams that were truncated, too long or reset.
    pub bundles_malformed: u64,
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Valid beacons of a realm of ours from other nodes.
    pub beacons_accepted: u64,
    /// Beacons ignored: malformed, foreign realm, bad signature, stale or replayed.
    pub beacons_rejected: u64,
    /// Beacons dropped unread by the rate limit.
    pub beacons_rate_limited: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub links_up: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub refused_realm: AtomicU64,
    pub refused_duplicate: AtomicU64,
    pub refused_busy: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub bundles_refused: AtomicU64,
    pub bundles_malformed: AtomicU64,
    pub beacons_sent: AtomicU64,
    pub beacons_accepted: AtomicU64,
    pub beacons_rejected: AtomicU64,
    pub beacons_rate_limited: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            links_up: g(&self.links_up),
            handshake_failures: g(&self.handshake_failures),
            refused_realm: g(&self.refused_realm),
            refused_duplicate: g(&self.refused_duplicate),
            refused_busy: g(&self.refused_busy),
            protocol_errors: g(&self.protocol_errors),
            bundles_refused: g(&self.bundles_refused),
            bundles_malformed: g(&self.bundles_malformed),
            beacons_sent: g(&self.beacons_sent),
            beacons_accepted: g(&self.beacons_accepted),
            beacons_rejected: g(&self.beacons_rejected),
            beacons_rate_limited: g(&self.beacons_rate_limited),
        }
    }
}
