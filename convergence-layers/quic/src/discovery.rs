//! LAN discovery by signed, realm-scoped UDP beacons.
//!
//! Every [`DiscoveryConfig::interval`](crate::DiscoveryConfig) a node sends a beacon to
//! its targets (default the IPv4 broadcast address, port 4558):
//!
//! ```text
//! offset  size      field
//! 0       1         version = 1
//! 1       32        node id (Ed25519 public key)
//! 33      2         QUIC port, u16 LE (non-zero)
//! 35      8         timestamp: sender's Unix time in ms, u64 LE, increasing per sender
//! 43      1         n: number of realm proofs, 1..=16
//! 44      32 * n    realm proofs: Realm::link_proof("ferry beacon v1\0" | node id | port | timestamp)
//! 44+32n  64        Ed25519 signature by the node id over "ferry beacon signature v1\0" | bytes 0..44+32n
//! ```
//!
//! A receiver refuses anything that is not exactly this shape, then (cheapest first)
//! ignores its own beacons, drops beacons with no proof of one of its realms, checks
//! the signature, refuses timestamps outside the replay window
//! ([`max_age`](crate::DiscoveryConfig::max_age)) or not newer than the last one
//! accepted from that node, and reports a [`Discovered`] peer at the beacon's source IP
//! address and announced port. The proofs are keyed hashes bound to the node and the
//! timestamp, so a foreign node learns neither the realm nor anything to link two
//! beacons by, and cannot reuse a proof for another node or time. Beacons are hints,
//! not credentials: the QUIC handshake still proves the node id and the realm, so a
//! replayed or spoofed beacon can at most cause a dial that fails.
//!
//! Domain separation: the proof context is 58 bytes (link admission contexts are 97),
//! and the signed message starts with an ASCII label, which neither a bundle's signed
//! bytes (version byte first), a TLS 1.3 `CertificateVerify` (64 spaces first) nor a
//! certificate (DER `SEQUENCE` first) can.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use ferry_core::{Identity, NodeId, Realm};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::admission::{ct_eq, MAX_REALMS};
use crate::config::DiscoveryConfig;
use crate::link::Inner;
use crate::stats::bump;

/// Beacon format version.
pub const BEACON_VERSION: u8 = 1;
/// Bytes before the realm proofs.
const FIXED: usize = 1 + 32 + 2 + 8 + 1;
/// Size of a signature.
const SIG: usize = 64;
/// Largest beacon.
pub const MAX_BEACON_BYTES: usize = FIXED + 32 * MAX_REALMS + SIG;
/// Smallest beacon (one realm).
pub const MIN_BEACON_BYTES: usize = FIXED + 32 + SIG;
const PROOF_LABEL: &[u8; 16] = b"ferry beacon v1\0";
const SIG_LABEL: &[u8] = b"ferry beacon signature v1\0";
/// Nodes remembered for replay checks.
const MAX_SEEN: usize = 1024;
/// 2020-01-01 in Unix ms: a clock before this is taken as not set.
const CLOCK_SET_AFTER_MS: u64 = 1_577_836_800_000;

/// Why bytes are not a valid beacon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// Shorter than a one-realm beacon.
    #[error("beacon too short")]
    TooShort,
    /// Longer than a sixteen-realm beacon.
    #[error("beacon longer than {MAX_BEACON_BYTES} bytes")]
    TooLong,
    /// Unknown version.
    #[error("unknown beacon version {0}")]
    Version(u8),
    /// Realm count not in 1..=16.
    #[error("beacon carries {0} realm proofs (1 to 16 allowed)")]
    RealmCount(u8),
    /// The length does not match the realm count.
    #[error("beacon is {found} bytes but its realm count needs {expected}")]
    Length {
        /// Length the realm count implies.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// The node id is not a valid Ed25519 public key.
    #[error("beacon node id is not a valid key")]
    NodeId,
    /// The announced port is 0.
    #[error("beacon announces port 0")]
    Port,
    /// The signature does not verify (or the key is weak).
    #[error("bad beacon signature")]
    Signature,
}

/// A beacon whose structure is valid but whose signature is not yet checked (so its
/// fields may be lies). Check the cheap things (realm proofs) first, then
/// [`verify`](Self::verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedBeacon {
    node: NodeId,
    port: u16,
    stamp_ms: u64,
    proofs: Vec<[u8; 32]>,
    signature: [u8; SIG],
}

/// A beacon with a valid signature by its node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon(UnverifiedBeacon);

fn proof_context(node: &NodeId, port: u16, stamp_ms: u64) -> [u8; 58] {
    let mut ctx = [0u8; 58];
    ctx[..16].copy_from_slice(PROOF_LABEL);
    ctx[16..48].copy_from_slice(node.as_bytes());
    ctx[48..50].copy_from_slice(&port.to_le_bytes());
    ctx[50..58].copy_from_slice(&stamp_ms.to_le_bytes());
    ctx
}

impl UnverifiedBeacon {
    /// Strict, bounded parse: exact length, known version, 1 to 16 proofs, a valid
    /// key, a non-zero port. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, BeaconError> {
        if bytes.len() > MAX_BEACON_BYTES {
            return Err(BeaconError::TooLong);
        }
        if bytes.len() < MIN_BEACON_BYTES {
            return Err(BeaconError::TooShort);
        }
        if bytes[0] != BEACON_VERSION {
            return Err(BeaconError::Version(bytes[0]));
        }
        let n = bytes[FIXED - 1];
        if n == 0 || usize::from(n) > MAX_REALMS {
            return Err(BeaconError::RealmCount(n));
        }
        let expected = FIXED + 32 * usize::from(n) + SIG;
        if bytes.len() != expected {
            return Err(BeaconError::Length {
                expected,
                found: bytes.len(),
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[1..33]);
        let node = NodeId::from_bytes(key).map_err(|_| BeaconError::NodeId)?;
        let port = u16::from_le_bytes([bytes[33], bytes[34]]);
        if port == 0 {
            return Err(BeaconError::Port);
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&bytes[35..43]);
        let proofs = bytes[FIXED..expected - SIG]
            .chunks_exact(32)
            .map(|c| {
                let mut p = [0u8; 32];
                p.copy_from_slice(c);
                p
            })
            .collect();
        let mut signature = [0u8; SIG];
        signature.copy_from_slice(&bytes[expected - SIG..]);
        Ok(Self {
            node,
            port,
            stamp_ms: u64::from_le_bytes(stamp),
            proofs,
            signature,
        })
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + 32 * self.proofs.len() + SIG);
        out.push(BEACON_VERSION);
        out.extend_from_slice(self.node.as_bytes());
        out.extend_from_slice(&self.port.to_le_bytes());
        out.extend_from_slice(&self.stamp_ms.to_le_bytes());
        // At most MAX_REALMS proofs (parse and sign both bound it).
        out.push(u8::try_from(self.proofs.len()).unwrap_or(u8::MAX));
        for p in &self.proofs {
            out.extend_from_slice(p);
        }
        out
    }

    fn signed_message(body: &[u8]) -> Vec<u8> {
        let mut msg = Vec::with_capacity(SIG_LABEL.len() + body.len());
        msg.extend_from_slice(SIG_LABEL);
        msg.extend_from_slice(body);
        msg
    }

    /// The claimed sender.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The claimed QUIC port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The claimed timestamp (Unix ms).
    pub fn stamp_ms(&self) -> u64 {
        self.stamp_ms
    }

    /// Whether one of the proofs is for one of `realms` (a keyed hash per realm; no
    /// signature work).
    pub fn admitted_by(&self, realms: &[Realm]) -> bool {
        let ctx = proof_context(&self.node, self.port, self.stamp_ms);
        let mut found = false;
        for r in realms {
            let mine = r.link_proof(&ctx);
            for p in &self.proofs {
                found |= ct_eq(&mine, p);
            }
        }
        found
    }

    /// Checks the Ed25519 signature (strict: canonical `S`, no weak keys).
    pub fn verify(self) -> Result<Beacon, BeaconError> {
        let vk =
            VerifyingKey::from_bytes(self.node.as_bytes()).map_err(|_| BeaconError::Signature)?;
        if vk.is_weak() {
            return Err(BeaconError::Signature);
        }
        let msg = Self::signed_message(&self.body());
        vk.verify_strict(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| BeaconError::Signature)?;
        Ok(Beacon(self))
    }
}

impl Beacon {
    /// A signed beacon for `identity` in `realms` (the first 16), announcing
    /// `port`, stamped `stamp_ms`.
    pub fn sign(identity: &Identity, realms: &[Realm], port: u16, stamp_ms: u64) -> Self {
        let node = identity.node_id();
        let ctx = proof_context(&node, port, stamp_ms);
        let proofs = realms
            .iter()
            .take(MAX_REALMS)
            .map(|r| r.link_proof(&ctx))
            .collect();
        let mut b = UnverifiedBeacon {
            node,
            port,
            stamp_ms,
            proofs,
            signature: [0; SIG],
        };
        b.signature = identity.sign(&UnverifiedBeacon::signed_message(&b.body()));
        Self(b)
    }

    /// Parses and verifies a beacon: [`UnverifiedBeacon::parse`], then
    /// [`UnverifiedBeacon::verify`]. Never panics. (Fuzz target: `beacon_decode`.)
    pub fn decode(bytes: &[u8]) -> Result<Self, BeaconError> {
        UnverifiedBeacon::parse(bytes)?.verify()
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.0.body();
        out.extend_from_slice(&self.0.signature);
        out
    }

    /// The sender (authenticated).
    pub fn node(&self) -> NodeId {
        self.0.node
    }

    /// The sender's QUIC port.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// The sender's timestamp (Unix ms).
    pub fn stamp_ms(&self) -> u64 {
        self.0.stamp_ms
    }

    /// Whether the sender proves membership of one of `realms`.
    pub fn admitted_by(&self, realms: &[Realm]) -> bool {
        self.0.admitted_by(realms)
    }
}

/// A peer heard on the LAN: a node of one of our realms, reachable (probably) at
/// `addr`. Pass it to [`QuicLink::connect`](crate::QuicLink::connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovered {
    /// The node (its beacon was signed by this key).
    pub node: NodeId,
    /// The beacon's source IP address with the QUIC port it announced.
    pub addr: SocketAddr,
}

/// What happened to one received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Our own beacon.
    Own,
    /// Ignored, with why.
    Rejected(&'static str),
    /// A valid beacon; `fresh` if the peer should be announced (new, moved, or not
    /// announced for `renotify`).
    Accepted { peer: Discovered, fresh: bool },
}

struct Seen {
    stamp_ms: u64,
    /// Tick of the last accepted beacon.
    tick: u64,
    addr: SocketAddr,
    /// Tick of the last announcement.
    notified: Option<u64>,
}

/// Receive-side checks, separated from the socket so tests drive them directly.
pub(crate) struct Receiver {
    own: NodeId,
    realms: Vec<Realm>,
    max_age_ms: Option<u64>,
    forget_ticks: u64,
    renotify_ticks: u64,
    seen: HashMap<NodeId, Seen>,
}

impl Receiver {
    /// Ticks are seconds.
    pub(crate) fn new(own: NodeId, realms: Vec<Realm>, cfg: &DiscoveryConfig) -> Self {
        let secs = |d: Duration| d.as_secs().max(1);
        Self {
            own,
            realms,
            max_age_ms: cfg
                .max_age
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            forget_ticks: (3 * secs(cfg.interval)).max(30),
            renotify_ticks: secs(cfg.renotify),
            seen: HashMap::new(),
        }
    }

    /// Checks a datagram from `src`. `now_ms` is this node's Unix time, `None` if its
    /// clock is not set.
    pub(crate) fn handle(
        &mut self,
        bytes: &[u8],
        src: SocketAddr,
        now_ms: Option<u64>,
        tick: u64,
    ) -> Verdict {
        let b = match UnverifiedBeacon::parse(bytes) {
            Ok(b) => b,
            Err(_) => return Verdict::Rejected("malformed"),
        };
        if b.node == self.own {
            return Verdict::Own;
        }
        if !b.admitted_by(&self.realms) {
            return Verdict::Rejected("no realm in common");
        }
        let b = match b.verify() {
            Ok(b) => b,
            Err(_) => return Verdict::Rejected("bad signature"),
        };
        if let (Some(max), Some(now)) = (self.max_age_ms, now_ms) {
            if now.abs_diff(b.stamp_ms()) > max {
                return Verdict::Rejected("timestamp outside the replay window");
            }
        }
        let addr = SocketAddr::new(src.ip(), b.port());
        let peer = Discovered {
            node: b.node(),
            addr,
        };
        if let Some(s) = self.seen.get_mut(&b.node()) {
            if b.stamp_ms() <= s.stamp_ms {
                return Verdict::Rejected("replayed or reordered");
            }
            let fresh = s.addr != addr
                || s.notified
                    .is_none_or(|t| tick.saturating_sub(t) >= self.renotify_ticks);
            s.stamp_ms = b.stamp_ms();
            s.tick = tick;
            s.addr = addr;
            return Verdict::Accepted { peer, fresh };
        }
        if self.seen.len() >= MAX_SEEN {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.tick)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            b.node(),
            Seen {
                stamp_ms: b.stamp_ms(),
                tick,
                addr,
                notified: None,
            },
        );
        Verdict::Accepted { peer, fresh: true }
    }

    /// Records that `node` was announced at `tick`.
    pub(crate) fn notified(&mut self, node: &NodeId, tick: u64) {
        if let Some(s) = self.seen.get_mut(node) {
            s.notified = Some(tick);
        }
    }

    /// Forgets nodes not heard (validly) for a while, so a node whose clock went
    /// backwards (restart without a real-time clock) is heard again.
    pub(crate) fn expire(&mut self, tick: u64) {
        let f = self.forget_ticks;
        self.seen.retain(|_, s| tick.saturating_sub(s.tick) <= f);
    }
}

/// This node's Unix time in ms, `None` if the clock is not set (before 2020).
fn unix_millis() -> Option<u64> {
    // The one wall-clock read of this crate: beacon timestamps must be comparable
    // between nodes, which only the wall clock gives (a node without a set clock
    // still works: see `DiscoveryConfig::max_age`).
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let ms = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms >= CLOCK_SET_AFTER_MS)
}

/// The discovery socket: `SO_REUSEADDR` (several nodes on one host can listen for
/// broadcasts) and `SO_BROADCAST`.
pub(crate) fn bind_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv4() {
        s.set_broadcast(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sends beacons and processes received ones until shutdown.
pub(crate) async fn run(
    inner: Arc<Inner>,
    socket: UdpSocket,
    cfg: DiscoveryConfig,
    identity: Identity,
    tx: mpsc::Sender<Discovered>,
) {
    let mut receiver = Receiver::new(inner.node_id, inner.realms.clone(), &cfg);
    let port = inner.local_addr.port();
    let mut send_timer = tokio::time::interval(cfg.interval);
    send_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    let mut budget = cfg.max_per_sec;
    let mut last_stamp = 0u64;
    let mut buf = vec![0u8; MAX_BEACON_BYTES + 1];
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = send_timer.tick() => {
                // Strictly increasing, even if the clock is unset or steps back.
                let stamp = unix_millis().unwrap_or(0).max(last_stamp + 1);
                last_stamp = stamp;
                let beacon = Beacon::sign(&identity, &inner.realms, port, stamp).encode();
                for t in &cfg.targets {
                    if let Err(e) = socket.send_to(&beacon, t).await {
                        debug!(target = %t, error = %e, "beacon not sent");
                    }
                }
                bump(&inner.counters.beacons_sent);
            }
            _ = second.tick() => {
                tick += 1;
                budget = cfg.max_per_sec;
                receiver.expire(tick);
            }
            r = socket.recv_from(&mut buf) => {
                let (n, src) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "discovery receive error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if budget == 0 {
                    bump(&inner.counters.beacons_rate_limited);
                    continue;
                }
                budget -= 1;
                match receiver.handle(&buf[..n], src, unix_millis(), tick) {
                    Verdict::Own => {}
                    Verdict::Rejected(why) => {
                        bump(&inner.counters.beacons_rejected);
                        debug!(%src, why, "beacon ignored");
                    }
                    Verdict::Accepted { peer, fresh } => {
                        bump(&inner.counters.beacons_accepted);
                        if inner.is_connected(&peer.node) {
                            continue;
                        }
                        crate::dial::kick(&inner, &peer.node);
                        if fresh && tx.try_send(peer).is_ok() {
                            receiver.notified(&peer.node, tick);
                            info!(peer = %peer.node.short(), "peer discovered");
                            debug!(peer = %peer.node.short(), addr = %peer.addr, "peer discovered");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn realm(n: u8) -> Realm {
        Realm::new("valley", [n; 32]).unwrap()
    }

    fn src() -> SocketAddr {
        "192.0.2.7:4558".parse().unwrap()
    }

    const NOW: u64 = 1_700_000_000_000;

    fn receiver(own: u8, realms: Vec<Realm>) -> Receiver {
        Receiver::new(
            Identity::from_seed([own; 32]).node_id(),
            realms,
            &DiscoveryConfig::default(),
        )
    }

    #[test]
    fn sign_encode_decode() {
        let id = Identity::from_seed([1; 32]);
        let b = Beacon::sign(&id, &[realm(1), realm(2)], 4556, NOW);
        let enc = b.encode();
        assert_eq!(enc.len(), FIXED + 64 + SIG);
        let d = Beacon::decode(&enc).unwrap();
        assert_eq!(d, b);
        assert_eq!(d.node(), id.node_id());
        assert_eq!(d.port(), 4556);
        assert_eq!(d.stamp_ms(), NOW);
        assert!(d.admitted_by(&[realm(2)]));
        assert!(!d.admitted_by(&[realm(3)]));
    }

    #[test]
    fn typed_errors() {
        let id = Identity::from_seed([1; 32]);
        let enc = Beacon::sign(&id, &[realm(1)], 4556, NOW).encode();
        assert_eq!(Beacon::decode(&[]), Err(BeaconError::TooShort));
        assert_eq!(
            Beacon::decode(&vec![1; MAX_BEACON_BYTES + 1]),
            Err(BeaconError::TooLong)
        );
        let mut v = enc.clone();
        v[0] = 9;
        assert_eq!(Beacon::decode(&v), Err(BeaconError::Version(9)));
        let mut v = enc.clone();
        v[FIXED - 1] = 0;
        assert_eq!(Beacon::decode(&v), Err(BeaconError::RealmCount(0)));
        let mut v = enc.clone();
        v[FIXED - 1] = 2;
        assert!(matches!(
            Beacon::decode(&v),
            Err(BeaconError::Length { .. })
        ));
        let mut v = enc.clone();
        v[33] = 0;
        v[34] = 0;
        assert_eq!(Beacon::decode(&v), Err(BeaconError::Port));
        let mut v = enc.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(Beacon::decode(&v), Err(BeaconError::Signature));
    }

    #[test]
    fn receiver_checks_realm_signature_window_and_replay() {
        let a = Identity::from_seed([1; 32]);
        let mut r = receiver(2, vec![realm(1)]);
        let b1 = Beacon::sign(&a, &[realm(1)], 4556, NOW).encode();
        let v = r.handle(&b1, src(), Some(NOW), 0);
        let Verdict::Accepted { peer, fresh: true } = v else {
            panic!("{v:?}")
        };
        assert_eq!(peer.node, a.node_id());
        assert_eq!(peer.addr, "192.0.2.7:4556".parse().unwrap());
        r.notified(&peer.node, 0);
        // Exact replay, and an older beacon: refused.
        assert!(matches!(
            r.handle(&b1, src(), Some(NOW), 1),
            Verdict::Rejected(_)
        ));
        let old = Beacon::sign(&a, &[realm(1)], 4556, NOW - 1).encode();
        assert!(matches!(
            r.handle(&old, src(), Some(NOW), 1),
            Verdict::Rejected(_)
        ));
        // A newer one is accepted, not fresh (already announced, same address).
        let b2 = Beacon::sign(&a, &[realm(1)], 4556, NOW + 1).encode();
        assert_eq!(
            r.handle(&b2, src(), Some(NOW), 2),
            Verdict::Accepted { peer, fresh: false }
        );
        // Outside the window (either way): refused; without a clock: window not checked.
        let stale = Beacon::sign(&a, &[realm(1)], 4556, NOW + 1_000_000).encode();
        assert!(matches!(
            r.handle(&stale, src(), Some(NOW), 3),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            r.handle(&stale, src(), None, 3),
            Verdict::Accepted { .. }
        ));
        // Foreign realm; bad signature; own beacon; garbage.
        let foreign = Beacon::sign(&a, &[realm(9)], 4556, NOW + 2_000_000).encode();
        assert_eq!(
            r.handle(&foreign, src(), None, 4),
            Verdict::Rejected("no realm in common")
        );
        let mut forged = Beacon::sign(&a, &[realm(1)], 4556, NOW + 3_000_000).encode();
        let n = forged.len();
        forged[n - 10] ^= 0x20;
        assert_eq!(
            r.handle(&forged, src(), None, 4),
            Verdict::Rejected("bad signature")
        );
        let own = Beacon::sign(&Identity::from_seed([2; 32]), &[realm(1)], 1, NOW).encode();
        assert_eq!(r.handle(&own, src(), None, 4), Verdict::Own);
        assert_eq!(
            r.handle(b"hi", src(), None, 4),
            Verdict::Rejected("malformed")
        );
    }

    #[test]
    fn moved_or_quiet_peers_are_announced_again_and_forgotten() {
        let a = Identity::from_seed([1; 32]);
        let mut r = receiver(2, vec![realm(1)]);
        let b = |t| Beacon::sign(&a, &[realm(1)], 4556, NOW + t).encode();
        assert!(matches!(
            r.handle(&b(0), src(), Some(NOW), 0),
            Verdict::Accepted { fresh: true, .. }
        ));
        r.notified(&a.node_id(), 0);
        let moved: SocketAddr = "192.0.2.8:1".parse().unwrap();
        assert!(matches!(
            r.handle(&b(1), moved, Some(NOW), 1),
            Verdict::Accepted { fresh: true, .. }
        ));
        r.notified(&a.node_id(), 1);
        assert!(matches!(
            r.handle(&b(2), moved, Some(NOW), 2),
            Verdict::Accepted { fresh: false, .. }
        ));
        assert!(matches!(
            r.handle(&b(3), moved, Some(NOW), 40),
            Verdict::Accepted { fresh: true, .. }
        ));
        // A restarted node whose clock went back is heard again once forgotten.
        assert!(matches!(
            r.handle(&b(0), moved, None, 41),
            Verdict::Rejected(_)
        ));
        r.expire(41 + 31);
        assert!(matches!(
            r.handle(&b(0), moved, None, 72),
            Verdict::Accepted { fresh: true, .. }
        ));
    }

    proptest! {
        #[test]
        fn round_trip(seed in any::<[u8; 32]>(), nrealms in 1usize..=16, port in 1u16.., stamp in any::<u64>()) {
            let id = Identity::from_seed(seed);
            let realms: Vec<Realm> = (0..nrealms).map(|i| realm(i as u8)).collect();
            let b = Beacon::sign(&id, &realms, port, stamp);
            let enc = b.encode();
            let d = Beacon::decode(&enc).unwrap();
            prop_assert_eq!(&d, &b);
            prop_assert_eq!(d.encode(), enc);
            prop_assert!(d.admitted_by(&realms[nrealms - 1..]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(u) = UnverifiedBeacon::parse(&bytes) {
                let _ = u.admitted_by(&[realm(1)]);
                if let Ok(b) = u.verify() {
                    prop_assert_eq!(b.encode(), bytes);
                }
            }
        }

        #[test]
        fn every_bit_flip_is_refused(pos in 0usize..(FIXED + 32 + SIG), bit in 0u8..8) {
            let id = Identity::from_seed([3; 32]);
            let mut enc = Beacon::sign(&id, &[realm(1)], 4556, NOW).encode();
            enc[pos] ^= 1 << bit;
            // Either the structure, the realm proof or the signature catches it.
            let refused = match UnverifiedBeacon::parse(&enc) {
                Err(_) => true,
                Ok(u) => !u.admitted_by(&[realm(1)]) || u.verify().is_err(),
            };
            prop_assert!(refused);
        }
    }
}
