//! The session state machine: neighbours, segmentation, selective acknowledgments,
//! retransmission, resume and priority, for one interface (a serial port or a radio)
//! that may reach several neighbours at once.
//!
//! # How a message travels
//!
//! A message (a router control frame or a bundle) goes to one or more neighbours
//! (`send` merges a bundle already queued for another neighbour into the same
//! transmission, so it goes on air once). Messages that fit one frame travel as one
//! SINGLE frame; longer ones are announced by a small INFO frame (content key, length,
//! segment size) and cut into fixed-size segments. The sender transmits a *burst* of
//! at most `window` frames, the last one carrying POLL (or a bare POLL frame when the
//! burst touched several destinations), then stays quiet until every polled
//! destination answered with an ACK (selective: a cumulative count plus a bitmap) or
//! the retransmission timeout passed. Segments the ACK does not list are sent again in
//! the next burst; a destination that answers nothing `max_retries` times in a row is
//! declared down. Receivers answer a POLL after `ack_delay`, staggered by their place
//! in the destination list so that their ACKs do not collide.
//!
//! The timeout follows the measured round trip (Jacobson/Karels: `srtt + 4·rttvar`,
//! Karn's rule, doubled on each timeout, bounded by `rto_min`/`rto_max`), so it adapts
//! to a 115200-baud cable as to an SF12 radio.
//!
//! # Resume
//!
//! Receivers keep partly received messages by content key (not by sender or message
//! number) for `partial_ttl`, within `max_reassembly_bytes` (the stalest partial is
//! evicted first). Senders remember, per neighbour and content key, which segments a
//! neighbour acknowledged before a break. When the router sends the same bundle again
//! (after the link came back, or over another link of the same interface), the INFO
//! frame names the same key: the receiver relinks its partial and the sender skips
//! what was acknowledged. Nothing that arrived is sent again.
//!
//! # Priority
//!
//! Four classes, strictly ordered: router control frames, expedited bundles (receipts
//! among them), normal, bulk. Within a class, messages take turns segment by segment,
//! so a small bundle is not stuck behind a large one.
//!
//! # Time and budget
//!
//! Time is an input (µs, monotonic, chosen by the driver). The [`Medium`] tells how
//! long a frame occupies the link and when the duty-cycle budget allows the next one;
//! the session never emits a frame before the previous one has left or before the
//! budget allows it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ferry_core::{Identity, NodeId, Realm};

use crate::frame::{
    AckEntry, Body, Frame, FrameError, Kind, Short, KEY_LEN, MAX_ACK_ENTRIES, MAX_BITMAP, MAX_DSTS,
    MAX_RESETS, MAX_SEGMENTS, MAX_SEGMENT_OVERHEAD, MIC_LEN,
};

/// Hellos that announce one contact reset (a lost hello must not leave the
/// neighbour on the old contact).
const RESET_HELLOS: u8 = 3;

/// How long frames occupy the link, and the airtime budget.
pub trait Medium {
    /// Microseconds a frame of `frame_len` bytes occupies the link.
    fn airtime_us(&self, frame_len: usize) -> u64;
    /// The earliest time ≥ `now_us` at which `airtime_us` of transmission is allowed.
    fn ready_at(&self, now_us: u64, airtime_us: u64) -> u64 {
        let _ = airtime_us;
        now_us
    }
    /// Records a transmission.
    fn spend(&mut self, now_us: u64, airtime_us: u64) {
        let _ = (now_us, airtime_us);
    }
}

/// Session parameters; [`Config::cable`] and [`Config::radio`] are starting points.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest frame on the link, check included (255 on LoRa).
    pub mtu: usize,
    /// Frames per burst before the sender polls.
    pub window: u32,
    /// Retransmission timeout before any round trip was measured.
    pub rto_initial_us: u64,
    /// Smallest retransmission timeout.
    pub rto_min_us: u64,
    /// Largest retransmission timeout.
    pub rto_max_us: u64,
    /// How long a receiver waits before answering a poll (turnaround).
    pub ack_delay_us: u64,
    /// Polls without answer before a neighbour is declared down.
    pub max_retries: u32,
    /// Most doublings of the retransmission timeout after polls went unanswered
    /// (6 on cables and radios).
    pub max_backoff: u32,
    /// How often this node announces itself.
    pub hello_interval_us: u64,
    /// Shortest gap between two hellos (answers to new neighbours included).
    pub hello_min_gap_us: u64,
    /// A neighbour not heard for this long is down.
    pub idle_timeout_us: u64,
    /// Most messages queued for sending.
    pub max_queued_messages: usize,
    /// Most bytes queued for sending.
    pub max_queued_bytes: usize,
    /// Largest message (bundle) in bytes.
    pub max_message_bytes: usize,
    /// Memory for partly received messages.
    pub max_reassembly_bytes: usize,
    /// Partly received messages (and senders' memory of them) expire after this.
    pub partial_ttl_us: u64,
    /// Most neighbours one transmission addresses (1..=3): frames keep room for
    /// this many destinations, so a bundle queued for one neighbour can take a
    /// second on the same transmission. 1 on a cable, 2 on a radio.
    pub max_dsts: usize,
}

impl Config {
    /// A point-to-point serial cable at `baud`.
    pub fn cable(baud: u32) -> Self {
        let byte_us = 10_000_000 / u64::from(baud.max(1));
        Self {
            mtu: 255,
            window: 32,
            rto_initial_us: 200_000 + 64 * byte_us,
            rto_min_us: 20_000 + 32 * byte_us,
            rto_max_us: 10_000_000,
            ack_delay_us: 0,
            max_retries: 6,
            max_backoff: 6,
            hello_interval_us: 5_000_000,
            hello_min_gap_us: 500_000,
            idle_timeout_us: 20_000_000,
            max_queued_messages: 256,
            max_queued_bytes: 8 << 20,
            max_message_bytes: 4 << 20,
            max_reassembly_bytes: 16 << 20,
            partial_ttl_us: 3_600_000_000,
            max_dsts: 1,
        }
    }

    /// A radio whose ACK frames take about `ack_airtime_us` on air.
    pub fn radio(ack_airtime_us: u64) -> Self {
        Self {
            mtu: 255,
            window: 16,
            rto_initial_us: 4 * ack_airtime_us + 500_000,
            rto_min_us: 2 * ack_airtime_us + 100_000,
            rto_max_us: 120_000_000,
            ack_delay_us: 20_000,
            max_retries: 8,
            max_backoff: 6,
            hello_interval_us: 600_000_000,
            hello_min_gap_us: 10_000_000,
            idle_timeout_us: 1_900_000_000,
            max_queued_messages: 128,
            max_queued_bytes: 1 << 20,
            max_message_bytes: 256 << 10,
            max_reassembly_bytes: 2 << 20,
            partial_ttl_us: 6 * 3_600_000_000,
            max_dsts: 2,
        }
    }

    fn dsts(&self) -> usize {
        self.max_dsts.clamp(1, MAX_DSTS)
    }

    /// Bytes each segment of a `len`-byte message carries: every frame filled to
    /// the MTU, given the room kept for destinations and the segment number's varint.
    pub fn seg_size_for(&self, len: usize) -> usize {
        let fixed = 1 + 2 + 2 * self.dsts() + 1 + MIC_LEN;
        for varint in 1..=3u32 {
            let s = self.mtu.saturating_sub(fixed + varint as usize).max(1);
            if (len.div_ceil(s) as u64) <= 1u64 << (7 * varint) {
                return s;
            }
        }
        self.mtu.saturating_sub(MAX_SEGMENT_OVERHEAD).max(1)
    }

    /// The largest message sent as a single frame.
    pub fn single_max(&self) -> usize {
        self.mtu
            .saturating_sub(1 + 2 + 2 * self.dsts() + 1 + MIC_LEN)
    }
}

/// Priority class of a message; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Router control frames (reconciliation, offers, custody acks).
    Control = 0,
    /// Expedited bundles (receipts, revocations, urgent traffic).
    Expedited = 1,
    /// Normal bundles.
    Normal = 2,
    /// Bulk bundles.
    Bulk = 3,
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A neighbour proved its node id (signed hello): a contact begins.
    NeighborUp {
        /// The neighbour.
        peer: NodeId,
    },
    /// The contact ended (silence, unanswered polls, or the neighbour restarted).
    NeighborDown {
        /// The neighbour.
        peer: NodeId,
    },
    /// A whole message arrived.
    Received {
        /// From.
        peer: NodeId,
        /// What it is.
        kind: Kind,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Every byte of a message reached this neighbour (acknowledged).
    Sent {
        /// The neighbour.
        peer: NodeId,
        /// The tag given to [`Session::send`].
        tag: u64,
    },
    /// The message will not reach this neighbour (it went down).
    Failed {
        /// The neighbour.
        peer: NodeId,
        /// The tag given to [`Session::send`].
        tag: u64,
    },
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer is not a neighbour that is up.
    #[error("not a neighbour on this link")]
    NotNeighbor,
    /// The send queue is full (messages, bytes or message numbers).
    #[error("link send queue full")]
    QueueFull,
    /// Larger than the link's largest message.
    #[error("message larger than this link allows")]
    TooLarge,
    /// Empty message.
    #[error("empty message")]
    Empty,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Frames transmitted.
    pub frames_sent: u64,
    /// Bytes transmitted (every header and check included).
    pub bytes_sent: u64,
    /// Airtime used, µs.
    pub airtime_us: u64,
    /// Segments (and single frames) transmitted for the first time.
    pub segments_sent: u64,
    /// Segments transmitted again.
    pub segments_resent: u64,
    /// ACK frames transmitted.
    pub acks_sent: u64,
    /// Bare POLL frames transmitted.
    pub polls_sent: u64,
    /// Hello frames transmitted.
    pub hellos_sent: u64,
    /// Frames received and accepted.
    pub frames_received: u64,
    /// Frames refused: check failed (corrupt, or another realm).
    pub bad_check: u64,
    /// Frames refused: malformed.
    pub malformed: u64,
    /// Frames refused: longer than the MTU.
    pub oversized: u64,
    /// Frames from senders that have not said hello.
    pub unknown_sender: u64,
    /// Frames between two other neighbours (checked by their pair key, ignored).
    pub overheard: u64,
    /// Hellos refused (bad signature, address mismatch or clash).
    pub hellos_refused: u64,
    /// Messages delivered to the driver.
    pub messages_received: u64,
    /// Messages fully acknowledged by a neighbour.
    pub messages_sent: u64,
    /// Duplicate messages dropped.
    pub duplicates: u64,
    /// Segments received for a partial that resumed after a break.
    pub resumed: u64,
    /// Partial messages evicted for lack of memory.
    pub partials_evicted: u64,
    /// Partial messages expired.
    pub partials_expired: u64,
    /// Polls that timed out.
    pub timeouts: u64,
    /// Data frames that rode in an ACK.
    pub piggybacked: u64,
    /// Contacts ended and begun again because the neighbour announced that it had
    /// ended its side (it stopped hearing this node for a while).
    pub contacts_reset: u64,
}

#[derive(Debug)]
struct Neighbor {
    id: NodeId,
    /// The pair key checking frames between this node and it.
    key: [u8; 32],
    nonce: [u8; 4],
    last_heard: u64,
    up: bool,
    retries: u32,
    /// This node ended the contact on its own (silence, unanswered polls): when the
    /// neighbour is heard again, its hellos must tell it to end its side too.
    reset_owed: bool,
    /// Contacts this node ended on its own with the neighbour (mod 256).
    epoch: u8,
    /// The last reset epoch the neighbour announced for this node.
    reset_seen: Option<u8>,
    /// Up again, but its `NeighborUp` waits until the hello announcing the reset
    /// has gone out: the router must not send on the new contact before the
    /// neighbour learns that its old one ended.
    up_deferred: bool,
}

#[derive(Debug)]
struct Dst {
    short: Short,
    tag: u64,
    acked: Vec<bool>,
    acked_count: u32,
    info_ok: bool,
    info_sent: bool,
    inflight: Vec<u32>,
}

#[derive(Debug)]
struct OutMsg {
    msg: u8,
    kind: Kind,
    class: Class,
    key: [u8; KEY_LEN],
    bytes: Vec<u8>,
    seg_size: usize,
    nseg: u32,
    single: bool,
    dsts: Vec<Dst>,
    pending: Vec<bool>,
    ever_sent: Vec<bool>,
    seq: u64,
}

impl OutMsg {
    fn segment(&self, s: u32) -> &[u8] {
        if self.single {
            return &self.bytes;
        }
        let start = s as usize * self.seg_size;
        &self.bytes[start..(start + self.seg_size).min(self.bytes.len())]
    }

    /// The next piece of work: an INFO frame or a pending segment, with its
    /// destinations (up neighbours lacking it).
    fn next_work(&self, up: &dyn Fn(&Short) -> bool) -> Option<(Work, Vec<Short>)> {
        if !self.single {
            let dsts: Vec<Short> = self
                .dsts
                .iter()
                .filter(|d| !d.info_ok && !d.info_sent && up(&d.short))
                .map(|d| d.short)
                .collect();
            if !dsts.is_empty() {
                return Some((Work::Info, dsts));
            }
        }
        let lowest = self
            .dsts
            .iter()
            .map(|d| d.acked.iter().position(|a| !a).unwrap_or(d.acked.len()))
            .min()
            .unwrap_or(0);
        // Flow limit: never run further ahead of the lowest gap than ACK bitmaps reach.
        let limit = (lowest + 8 * MAX_BITMAP).min(self.nseg as usize);
        for s in lowest..limit {
            if !self.pending[s] {
                continue;
            }
            let dsts: Vec<Short> = self
                .dsts
                .iter()
                .filter(|d| {
                    !d.acked[s] && (self.single || d.info_ok || d.info_sent) && up(&d.short)
                })
                .map(|d| d.short)
                .collect();
            if !dsts.is_empty() {
                return Some((Work::Segment(s as u32), dsts));
            }
        }
        None
    }
}

/// A data frame chosen and marked sent, not yet emitted.
#[derive(Debug)]
struct DataPlan {
    idx: usize,
    work: Work,
    dsts: Vec<Short>,
    body: Body,
    touched: BTreeSet<Short>,
    poll_here: bool,
    last: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Info,
    Segment(u32),
}

#[derive(Debug)]
struct Partial {
    kind: Kind,
    len: usize,
    seg_size: usize,
    have: Vec<bool>,
    have_count: u32,
    buf: Vec<u8>,
    touched: u64,
    links: u32,
}

impl Partial {
    fn nseg(&self) -> u32 {
        self.have.len() as u32
    }

    fn put(&mut self, seg: u32, data: &[u8]) -> bool {
        let s = seg as usize;
        if s >= self.have.len() || self.have[s] {
            return false;
        }
        let start = s * self.seg_size;
        let end = (start + self.seg_size).min(self.len);
        if data.len() != end - start {
            return false;
        }
        self.buf[start..end].copy_from_slice(data);
        self.have[s] = true;
        self.have_count += 1;
        true
    }

    fn entry(&self, msg: u8) -> AckEntry {
        let cum = self.have.iter().position(|h| !h).unwrap_or(self.have.len());
        let mut bitmap = Vec::new();
        let last = self.have.iter().rposition(|h| *h).unwrap_or(0);
        if last > cum {
            let bits = (last - cum).min(MAX_BITMAP * 8);
            bitmap = vec![0u8; bits.div_ceil(8)];
            for i in 0..bits {
                if self.have[cum + 1 + i] {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
        }
        AckEntry {
            msg,
            cum: cum as u32,
            bitmap,
        }
    }
}

#[derive(Debug)]
struct RxMsg {
    key: Option<[u8; KEY_LEN]>,
    early: Vec<(u32, Vec<u8>)>,
    touched: u64,
}

#[derive(Debug, Default)]
struct RxPeer {
    msgs: BTreeMap<u8, RxMsg>,
    /// Recently completed: (msg, content key, cum to report, reports left).
    done: VecDeque<(u8, [u8; KEY_LEN], u32, u8)>,
}

const DONE_RING: usize = 64;
const EARLY_MAX: usize = 64;

#[derive(Debug)]
struct Awaiting {
    dsts: BTreeSet<Short>,
    deadline: u64,
    polled_at: u64,
    retransmitted: bool,
}

/// The session layer of one interface. See the module docs.
#[derive(Debug)]
pub struct Session<M: Medium> {
    cfg: Config,
    medium: M,
    key: [u8; 32],
    hello_ctx: [u8; 32],
    realm: Realm,
    identity: Identity,
    me: Short,
    my_id: NodeId,
    nonce: [u8; 4],
    sig: [u8; 64],
    neighbors: BTreeMap<Short, Neighbor>,
    out: Vec<OutMsg>,
    next_msg: u8,
    next_seq: u64,
    last_served: [u64; 4],
    queued_bytes: usize,
    awaiting: Option<Awaiting>,
    burst: u32,
    touched: BTreeSet<Short>,
    poll_owed: bool,
    busy_until: u64,
    blocked_until: u64,
    rx: BTreeMap<Short, RxPeer>,
    partials: BTreeMap<[u8; KEY_LEN], Partial>,
    partial_bytes: usize,
    memory: BTreeMap<(Short, [u8; KEY_LEN]), (Vec<bool>, u64)>,
    acks_due: BTreeMap<Short, u64>,
    next_hello: u64,
    hello_wanted: Option<u64>,
    last_hello: Option<u64>,
    hello_answer: bool,
    /// Gap before the next hello while this node knows no neighbour: doubles from
    /// `hello_min_gap_us` with each such hello, up to `hello_interval_us`.
    lonely_gap: u64,
    /// Contact resets the next hellos announce: neighbour → (epoch, hellos left).
    resets: BTreeMap<Short, (u8, u8)>,
    srtt: Option<(u64, u64)>,
    backoff: u32,
    rng: u64,
    events: VecDeque<Event>,
    stats: Stats,
}

/// The short link address of a node.
pub fn short_of(id: &NodeId) -> Short {
    let h = id.hash();
    [h.0[0], h.0[1]]
}

fn content_key(bytes: &[u8]) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&blake3::hash(bytes).as_bytes()[..KEY_LEN]);
    k
}

fn hello_message(ctx: &[u8; 32], id: &NodeId, nonce: &[u8; 4], resets: &[(Short, u8)]) -> Vec<u8> {
    let mut m = Vec::with_capacity(14 + 32 + 32 + 4 + 1 + 3 * resets.len());
    m.extend_from_slice(b"ferry/hello/v1");
    m.extend_from_slice(ctx);
    m.extend_from_slice(id.as_bytes());
    m.extend_from_slice(nonce);
    if !resets.is_empty() {
        m.push(resets.len() as u8);
        for (dst, epoch) in resets {
            m.extend_from_slice(dst);
            m.push(*epoch);
        }
    }
    m
}

/// The key checking frames between `identity` and `peer` in `realm` (frames to one
/// neighbour): only the two of them can compute it.
pub fn pair_key(identity: &Identity, peer: &NodeId, realm: &Realm) -> Option<[u8; 32]> {
    identity.link_key(peer, &realm.link_proof(b"ferry/small-link/pair-key/v1"))
}

/// The integrity-check key of small-link frames in `realm` (hellos, frames to several
/// neighbours).
pub fn frame_key(realm: &Realm) -> [u8; 32] {
    realm.link_proof(b"ferry/small-link/frame-key/v1")
}

impl<M: Medium> Session<M> {
    /// A session for `identity` in `realm`. `nonce` must change at every start (the
    /// driver draws it at random): neighbours then know this node restarted and
    /// reset what they hold for it.
    pub fn new(
        identity: &Identity,
        realm: &Realm,
        nonce: [u8; 4],
        cfg: Config,
        medium: M,
        now: u64,
    ) -> Self {
        let my_id = identity.node_id();
        let hello_ctx = realm.link_proof(b"ferry/small-link/hello/v1");
        let sig = identity.sign(&hello_message(&hello_ctx, &my_id, &nonce, &[]));
        Self {
            key: frame_key(realm),
            hello_ctx,
            realm: realm.clone(),
            identity: identity.clone(),
            me: short_of(&my_id),
            my_id,
            nonce,
            sig,
            neighbors: BTreeMap::new(),
            out: Vec::new(),
            next_msg: 0,
            next_seq: 0,
            last_served: [0; 4],
            queued_bytes: 0,
            awaiting: None,
            burst: 0,
            touched: BTreeSet::new(),
            poll_owed: false,
            busy_until: now,
            blocked_until: 0,
            rx: BTreeMap::new(),
            partials: BTreeMap::new(),
            partial_bytes: 0,
            memory: BTreeMap::new(),
            acks_due: BTreeMap::new(),
            next_hello: now + cfg.hello_interval_us,
            hello_wanted: Some(now + u64::from(nonce[0]) % 16 * (cfg.hello_min_gap_us / 64)),
            last_hello: None,
            hello_answer: true,
            lonely_gap: cfg.hello_min_gap_us,
            resets: BTreeMap::new(),
            srtt: None,
            backoff: 0,
            rng: u64::from(u32::from_le_bytes(nonce)) << 16
                | u64::from(u16::from_le_bytes(short_of(&my_id)))
                | 1,
            events: VecDeque::new(),
            stats: Stats::default(),
            cfg,
            medium,
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The medium (e.g. to read its budget).
    pub fn medium(&self) -> &M {
        &self.medium
    }

    /// Neighbours that are up.
    pub fn neighbors(&self) -> Vec<NodeId> {
        self.neighbors
            .values()
            .filter(|n| n.up && !n.up_deferred)
            .map(|n| n.id)
            .collect()
    }

    /// Bytes waiting to be sent (not yet acknowledged by every destination).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Queues a message for `peer`. `tag` comes back in [`Event::Sent`] or
    /// [`Event::Failed`]. A bundle already queued for other neighbours gains this
    /// destination instead of a second copy on air.
    pub fn send(
        &mut self,
        peer: &NodeId,
        kind: Kind,
        class: Class,
        tag: u64,
        bytes: Vec<u8>,
    ) -> Result<(), SendError> {
        if bytes.is_empty() {
            return Err(SendError::Empty);
        }
        if bytes.len() > self.cfg.max_message_bytes
            || bytes.len().div_ceil(self.cfg.seg_size_for(bytes.len())) as u64
                > u64::from(MAX_SEGMENTS)
        {
            return Err(SendError::TooLarge);
        }
        let short = short_of(peer);
        match self.neighbors.get(&short) {
            Some(n) if n.up && n.id == *peer => {}
            _ => return Err(SendError::NotNeighbor),
        }
        let key = content_key(&bytes);
        if kind == Kind::Bundle {
            if let Some(m) = self.out.iter_mut().find(|m| {
                m.kind == Kind::Bundle
                    && m.key == key
                    && m.dsts.len() < self.cfg.max_dsts.clamp(1, MAX_DSTS)
                    && m.dsts.iter().all(|d| d.short != short)
            }) {
                let acked = self
                    .memory
                    .remove(&(short, key))
                    .map(|(a, _)| a)
                    .filter(|a| a.len() == m.nseg as usize)
                    .unwrap_or_else(|| vec![false; m.nseg as usize]);
                for (s, a) in acked.iter().enumerate() {
                    if !a {
                        m.pending[s] = true;
                    }
                }
                m.dsts.push(Dst {
                    short,
                    tag,
                    acked_count: acked.iter().filter(|a| **a).count() as u32,
                    acked,
                    info_ok: false,
                    info_sent: false,
                    inflight: Vec::new(),
                });
                return Ok(());
            }
        }
        if self.out.len() >= self.cfg.max_queued_messages
            || self.queued_bytes + bytes.len() > self.cfg.max_queued_bytes
        {
            return Err(SendError::QueueFull);
        }
        let msg = self.alloc_msg().ok_or(SendError::QueueFull)?;
        let single = bytes.len() <= self.cfg.single_max();
        let seg_size = if single {
            bytes.len()
        } else {
            self.cfg.seg_size_for(bytes.len())
        };
        let nseg = if single {
            1
        } else {
            bytes.len().div_ceil(seg_size) as u32
        };
        let acked = if single {
            vec![false]
        } else {
            self.memory
                .remove(&(short, key))
                .map(|(a, _)| a)
                .filter(|a| a.len() == nseg as usize)
                .unwrap_or_else(|| vec![false; nseg as usize])
        };
        let pending: Vec<bool> = acked.iter().map(|a| !a).collect();
        self.queued_bytes += bytes.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out.push(OutMsg {
            msg,
            kind,
            class,
            key,
            seg_size,
            nseg,
            single,
            dsts: vec![Dst {
                short,
                tag,
                acked_count: acked.iter().filter(|a| **a).count() as u32,
                acked,
                info_ok: false,
                info_sent: false,
                inflight: Vec::new(),
            }],
            pending,
            ever_sent: vec![false; nseg as usize],
            bytes,
            seq,
        });
        Ok(())
    }

    fn alloc_msg(&mut self) -> Option<u8> {
        for _ in 0..256 {
            let m = self.next_msg;
            self.next_msg = self.next_msg.wrapping_add(1);
            if self.out.iter().all(|o| o.msg != m) {
                return Some(m);
            }
        }
        None
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] wants to run (or the next frame may go).
    pub fn poll_timeout(&self) -> Option<u64> {
        let tx_ready = self.busy_until.max(self.blocked_until);
        let hello = self
            .hello_wanted
            .map_or(self.next_hello, |w| w.min(self.next_hello));
        let mut t = hello.max(tx_ready);
        if let Some(a) = self.acks_due.values().min() {
            t = t.min((*a).max(tx_ready));
        }
        if let Some(a) = &self.awaiting {
            t = t.min(a.deadline);
        } else if self.poll_owed || !self.out.is_empty() {
            t = t.min(tx_ready);
        }
        if let Some(n) = self
            .neighbors
            .values()
            .filter(|n| n.up)
            .map(|n| n.last_heard + self.cfg.idle_timeout_us)
            .min()
        {
            t = t.min(n);
        }
        if let Some(p) = self.partials.values().map(|p| p.touched).min() {
            t = t.min(p + self.cfg.partial_ttl_us);
        }
        Some(t)
    }

    /// Runs timers: poll timeouts, neighbour silence, expiry of partial messages.
    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(a) = &self.awaiting {
            if now >= a.deadline {
                let a = self.awaiting.take().expect("checked");
                self.stats.timeouts += 1;
                self.backoff = (self.backoff + 1).min(self.cfg.max_backoff);
                self.burst = 0;
                self.touched.clear();
                for d in a.dsts {
                    let failed = match self.neighbors.get_mut(&d) {
                        Some(n) => {
                            n.retries += 1;
                            n.retries >= self.cfg.max_retries
                        }
                        None => false,
                    };
                    if failed {
                        self.end_contact(&d, now);
                    } else {
                        self.touched.insert(d);
                        self.poll_owed = true;
                    }
                }
            }
        }
        let silent: Vec<Short> = self
            .neighbors
            .iter()
            .filter(|(_, n)| n.up && now >= n.last_heard + self.cfg.idle_timeout_us)
            .map(|(s, _)| *s)
            .collect();
        for s in silent {
            self.end_contact(&s, now);
        }
        let ttl = self.cfg.partial_ttl_us;
        let stale: Vec<[u8; KEY_LEN]> = self
            .partials
            .iter()
            .filter(|(_, p)| now >= p.touched + ttl)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.drop_partial(&k);
            self.stats.partials_expired += 1;
        }
        self.memory.retain(|_, (_, at)| now < *at + ttl);
        for peer in self.rx.values_mut() {
            peer.msgs
                .retain(|_, m| m.key.is_some() || now < m.touched + ttl);
        }
    }

    fn drop_partial(&mut self, key: &[u8; KEY_LEN]) {
        if let Some(p) = self.partials.remove(key) {
            self.partial_bytes -= p.len;
        }
        for peer in self.rx.values_mut() {
            peer.msgs.retain(|_, m| m.key.as_ref() != Some(key));
        }
    }

    /// This node ends a contact on its own (the neighbour fell silent or stopped
    /// answering); the neighbour may still hold its side, so the hellos that follow
    /// its return say so.
    fn end_contact(&mut self, short: &Short, now: u64) {
        self.neighbor_down(short, now);
        if let Some(n) = self.neighbors.get_mut(short) {
            n.reset_owed = true;
        }
    }

    /// A neighbour is gone: its messages fail (progress is remembered for a resume),
    /// what it sent is kept as partials.
    fn neighbor_down(&mut self, short: &Short, now: u64) {
        let Some(n) = self.neighbors.get_mut(short) else {
            return;
        };
        let was_up = n.up && !n.up_deferred;
        n.up = false;
        n.up_deferred = false;
        n.retries = 0;
        let peer = n.id;
        // A reset not yet announced is announced again at the next return, with
        // the next epoch.
        self.resets.remove(short);
        let mut failed = Vec::new();
        for m in &mut self.out {
            if let Some(i) = m.dsts.iter().position(|d| d.short == *short) {
                let d = m.dsts.remove(i);
                if !m.single && d.acked_count > 0 {
                    self.memory.insert((*short, m.key), (d.acked, now));
                }
                failed.push(d.tag);
            }
        }
        self.remove_finished();
        self.acks_due.remove(short);
        self.touched.remove(short);
        if let Some(a) = &mut self.awaiting {
            a.dsts.remove(short);
            if a.dsts.is_empty() {
                self.awaiting = None;
                self.burst = 0;
                self.touched.clear();
            }
        }
        for tag in failed {
            self.events.push_back(Event::Failed { peer, tag });
        }
        if was_up {
            self.events.push_back(Event::NeighborDown { peer });
        }
    }

    fn remove_finished(&mut self) {
        let mut freed = 0;
        self.out.retain(|m| {
            let keep = !m.dsts.is_empty();
            if !keep {
                freed += m.bytes.len();
            }
            keep
        });
        self.queued_bytes -= freed;
    }

    /// Handles one frame from the link (a radio packet or a KISS frame's data).
    pub fn handle_frame(&mut self, now: u64, bytes: &[u8]) {
        let (me, realm_key) = (self.me, self.key);
        let neighbors = &self.neighbors;
        let mut for_others = false;
        let decoded = Frame::decode_with(bytes, self.cfg.mtu, |f| match f.unicast_to() {
            None => Some(realm_key),
            Some(dst) if dst == me => neighbors.get(&f.src).map(|n| n.key),
            Some(_) => {
                for_others = true;
                None
            }
        });
        let frame = match decoded {
            Ok(f) => f,
            Err(FrameError::BadCheck) => {
                self.stats.bad_check += 1;
                return;
            }
            Err(FrameError::Oversized) => {
                self.stats.oversized += 1;
                return;
            }
            Err(FrameError::NoKey) if for_others => {
                // Between two other neighbours: not ours to check or read. A sender we
                // have no hello of is a neighbour we do not know yet: ask for hellos.
                self.stats.overheard += 1;
                if !bytes
                    .get(1..3)
                    .is_some_and(|s| self.neighbors.get(s).is_some_and(|n| n.up))
                {
                    self.want_hello(now, true);
                }
                return;
            }
            Err(FrameError::NoKey) => {
                // For us, from a sender we have no hello of yet: ask for one.
                self.stats.unknown_sender += 1;
                self.want_hello(now, true);
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if frame.src == self.me {
            return;
        }
        self.stats.frames_received += 1;
        let src = frame.src;
        if let Body::Hello {
            answer,
            node_id,
            nonce,
            sig,
            resets,
        } = frame.body
        {
            self.handle_hello(now, src, answer, node_id, nonce, sig, &resets);
            return;
        }
        match self.neighbors.get_mut(&src) {
            Some(n) if n.up => n.last_heard = now,
            _ => {
                self.stats.unknown_sender += 1;
                self.want_hello(now, true);
                return;
            }
        }
        self.handle_body(now, src, frame.body);
    }

    fn handle_body(&mut self, now: u64, src: Short, body: Body) {
        // DATA and POLL bodies: only for us if we are among their destinations; a
        // poll asks for an ACK once the body is handled.
        let addressed = match &body {
            Body::Single { dsts, poll, .. }
            | Body::Info { dsts, poll, .. }
            | Body::Segment { dsts, poll, .. } => {
                Some((dsts.iter().position(|d| *d == self.me), *poll))
            }
            Body::Poll { dsts } => Some((dsts.iter().position(|d| *d == self.me), true)),
            Body::Hello { .. } | Body::Ack { .. } => None,
        };
        if let Some((None, _)) = addressed {
            return;
        }
        match body {
            Body::Hello { .. } | Body::Poll { .. } => {}
            Body::Single {
                kind, msg, payload, ..
            } => self.handle_single(src, kind, msg, payload),
            Body::Info {
                kind,
                msg,
                key,
                len,
                seg_size,
                ..
            } => self.handle_info(now, src, kind, msg, key, len as usize, seg_size as usize),
            Body::Segment {
                msg, seg, payload, ..
            } => self.handle_segment(now, src, msg, seg, payload),
            Body::Ack { dst, entries, then } => {
                if dst == self.me {
                    self.handle_ack(now, src, entries);
                }
                if let Some(t) = then {
                    self.handle_body(now, src, *t);
                }
            }
        }
        if let Some((Some(pos), true)) = addressed {
            self.schedule_ack(now, src, pos);
        }
    }

    fn handle_single(&mut self, src: Short, kind: Kind, msg: u8, payload: Vec<u8>) {
        let key = content_key(&payload);
        let peer = self.rx.entry(src).or_default();
        if let Some(d) = peer.done.iter_mut().find(|d| d.0 == msg && d.1 == key) {
            d.3 = d.3.max(1);
            self.stats.duplicates += 1;
            return;
        }
        if peer.done.len() >= DONE_RING {
            peer.done.pop_front();
        }
        peer.done.push_back((msg, key, 1, 2));
        peer.msgs.remove(&msg);
        let id = self.neighbors[&src].id;
        self.stats.messages_received += 1;
        self.events.push_back(Event::Received {
            peer: id,
            kind,
            bytes: payload,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_hello(
        &mut self,
        now: u64,
        src: Short,
        answer: bool,
        node_id: [u8; 32],
        nonce: [u8; 4],
        sig: [u8; 64],
        resets: &[(Short, u8)],
    ) {
        let Ok(id) = NodeId::from_bytes(node_id) else {
            self.stats.hellos_refused += 1;
            return;
        };
        let valid = short_of(&id) == src && {
            let msg = hello_message(&self.hello_ctx, &id, &nonce, resets);
            ed25519_dalek::VerifyingKey::from_bytes(&node_id)
                .map(|vk| {
                    vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                        .is_ok()
                })
                .unwrap_or(false)
        };
        if !valid {
            self.stats.hellos_refused += 1;
            return;
        }
        // A reset this hello announces for us: the neighbour ended the contact on
        // its side and began a new one.
        let reset = resets.iter().find(|(d, _)| *d == self.me).map(|(_, e)| *e);
        let mut came_up = false;
        match self.neighbors.get_mut(&src) {
            Some(n) if n.id != id => {
                // Two neighbours share a short address: keep the first.
                self.stats.hellos_refused += 1;
                return;
            }
            Some(n) if n.nonce != nonce => {
                // It restarted: what it held for us and we for it is gone.
                let was_up = n.up;
                n.nonce = nonce;
                if was_up {
                    self.neighbor_down(&src, now);
                }
                self.rx.remove(&src);
                self.resets.remove(&src);
                let n = self.neighbors.get_mut(&src).expect("present");
                n.up = true;
                n.up_deferred = false;
                n.last_heard = now;
                n.reset_owed = false;
                n.reset_seen = reset;
                came_up = true;
            }
            Some(n) => {
                n.last_heard = now;
                // Newer than the last one seen (serial-number order, so a replayed
                // older announcement is ignored).
                let fresh_reset = match (reset, n.reset_seen) {
                    (Some(e), Some(seen)) => (e.wrapping_sub(seen) as i8) > 0,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if fresh_reset {
                    n.reset_seen = reset;
                    // Its side of the contact is new already: nothing to announce.
                    n.reset_owed = false;
                }
                // It ended our contact while we kept ours: end ours too, so both
                // sides (and their routers) begin the same new contact. If we are
                // announcing a reset to it as well, both contacts are new already.
                if n.up && fresh_reset && !self.resets.contains_key(&src) {
                    self.neighbor_down(&src, now);
                    self.stats.contacts_reset += 1;
                }
                let n = self.neighbors.get_mut(&src).expect("present");
                if !n.up {
                    n.up = true;
                    n.retries = 0;
                    if n.reset_owed {
                        // Announce at once, and tell the router of the contact only
                        // once that hello is on its way.
                        n.reset_owed = false;
                        n.up_deferred = true;
                        n.epoch = n.epoch.wrapping_add(1);
                        self.resets.insert(src, (n.epoch, RESET_HELLOS));
                        self.hello_wanted = Some(now);
                    } else {
                        came_up = true;
                    }
                }
            }
            None => {
                let Some(key) = pair_key(&self.identity, &id, &self.realm) else {
                    self.stats.hellos_refused += 1;
                    return;
                };
                self.neighbors.insert(
                    src,
                    Neighbor {
                        id,
                        key,
                        nonce,
                        last_heard: now,
                        up: true,
                        retries: 0,
                        reset_owed: false,
                        epoch: 0,
                        reset_seen: reset,
                        up_deferred: false,
                    },
                );
                came_up = true;
            }
        }
        if came_up {
            self.events.push_back(Event::NeighborUp { peer: id });
        }
        if answer {
            self.want_hello(now, false);
        }
    }

    /// Brings the next hello forward (rate-limited), asking for answers if `answer`.
    fn want_hello(&mut self, now: u64, answer: bool) {
        let earliest = self
            .last_hello
            .map_or(now, |t| (t + self.cfg.hello_min_gap_us).max(now));
        // Spread the answers of several neighbours.
        let jitter = self.jitter(self.cfg.hello_min_gap_us / 4);
        let at = earliest + jitter;
        self.hello_wanted = Some(self.hello_wanted.map_or(at, |w| w.min(at)));
        self.hello_answer |= answer;
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_info(
        &mut self,
        now: u64,
        src: Short,
        kind: Kind,
        msg: u8,
        key: [u8; KEY_LEN],
        len: usize,
        seg_size: usize,
    ) {
        let peer = self.rx.entry(src).or_default();
        if let Some(d) = peer.done.iter_mut().find(|d| d.1 == key) {
            // Complete already: the sender missed our ACK.
            d.0 = msg;
            d.3 = d.3.max(1);
            self.stats.duplicates += 1;
            peer.msgs.remove(&msg);
            return;
        }
        if let Some(m) = peer.msgs.get(&msg) {
            if m.key == Some(key) {
                return;
            }
        }
        if len > self.cfg.max_message_bytes || len > self.cfg.max_reassembly_bytes {
            return;
        }
        let early = peer.msgs.remove(&msg).map(|m| m.early).unwrap_or_default();
        let fits = match self.partials.get(&key) {
            Some(p) => p.len == len && p.seg_size == seg_size,
            None => false,
        };
        if !fits {
            if self.partials.contains_key(&key) {
                self.drop_partial(&key);
            }
            while self.partial_bytes + len > self.cfg.max_reassembly_bytes {
                let Some(stalest) = self
                    .partials
                    .iter()
                    .min_by_key(|(_, p)| p.touched)
                    .map(|(k, _)| *k)
                else {
                    return;
                };
                self.drop_partial(&stalest);
                self.stats.partials_evicted += 1;
            }
            let nseg = len.div_ceil(seg_size);
            self.partials.insert(
                key,
                Partial {
                    kind,
                    len,
                    seg_size,
                    have: vec![false; nseg],
                    have_count: 0,
                    buf: vec![0; len],
                    touched: now,
                    links: 0,
                },
            );
            self.partial_bytes += len;
        } else {
            self.stats.resumed += 1;
        }
        let p = self.partials.get_mut(&key).expect("inserted");
        p.links += 1;
        p.touched = now;
        self.rx.entry(src).or_default().msgs.insert(
            msg,
            RxMsg {
                key: Some(key),
                early: Vec::new(),
                touched: now,
            },
        );
        for (seg, data) in early {
            self.handle_segment(now, src, msg, seg, data);
        }
    }

    fn handle_segment(&mut self, now: u64, src: Short, msg: u8, seg: u32, data: Vec<u8>) {
        let peer = self.rx.entry(src).or_default();
        if !peer.msgs.contains_key(&msg) {
            if let Some(d) = peer.done.iter_mut().find(|d| d.0 == msg) {
                // A segment of a message completed lately: the sender missed our ACK.
                d.3 = d.3.max(1);
                self.stats.duplicates += 1;
                return;
            }
        }
        let m = peer.msgs.entry(msg).or_insert_with(|| RxMsg {
            key: None,
            early: Vec::new(),
            touched: now,
        });
        m.touched = now;
        let Some(key) = m.key else {
            if m.early.len() < EARLY_MAX && m.early.iter().all(|(s, _)| *s != seg) {
                m.early.push((seg, data));
            }
            return;
        };
        let Some(p) = self.partials.get_mut(&key) else {
            peer.msgs.remove(&msg);
            return;
        };
        p.touched = now;
        if !p.put(seg, &data) {
            self.stats.duplicates += 1;
            return;
        }
        if p.have_count == p.nseg() {
            let p = self.partials.remove(&key).expect("present");
            self.partial_bytes -= p.len;
            let nseg = p.nseg();
            for peer in self.rx.values_mut() {
                peer.msgs.retain(|_, m| m.key != Some(key));
            }
            let peer = self.rx.entry(src).or_default();
            if peer.done.len() >= DONE_RING {
                peer.done.pop_front();
            }
            peer.done.push_back((msg, key, nseg, 2));
            let id = self.neighbors[&src].id;
            self.stats.messages_received += 1;
            self.events.push_back(Event::Received {
                peer: id,
                kind: p.kind,
                bytes: p.buf,
            });
        }
    }

    fn schedule_ack(&mut self, now: u64, src: Short, pos: usize) {
        let slot = self.cfg.ack_delay_us + self.medium.airtime_us(24);
        let due = now + self.cfg.ack_delay_us + pos as u64 * slot;
        let e = self.acks_due.entry(src).or_insert(due);
        *e = (*e).min(due);
    }

    fn build_ack(&mut self, src: Short) -> Option<Frame> {
        let peer = self.rx.entry(src).or_default();
        let mut entries = Vec::new();
        let mut size = 1 + 2 + 2 + MIC_LEN;
        for (msg, m) in &peer.msgs {
            let e = match m.key.and_then(|k| self.partials.get(&k)) {
                Some(p) => p.entry(*msg),
                None => AckEntry {
                    msg: *msg,
                    cum: 0,
                    bitmap: Vec::new(),
                },
            };
            let sz = 1
                + 4
                + if e.bitmap.is_empty() {
                    0
                } else {
                    1 + e.bitmap.len()
                };
            if entries.len() >= MAX_ACK_ENTRIES || size + sz > self.cfg.mtu {
                break;
            }
            size += sz;
            entries.push(e);
        }
        for d in peer.done.iter_mut().rev() {
            if d.3 == 0 {
                continue;
            }
            if entries.len() >= MAX_ACK_ENTRIES
                || size + 5 > self.cfg.mtu
                || entries.iter().any(|e: &AckEntry| e.msg == d.0)
            {
                continue;
            }
            d.3 -= 1;
            size += 5;
            entries.push(AckEntry {
                msg: d.0,
                cum: d.2,
                bitmap: Vec::new(),
            });
        }
        if entries.is_empty() {
            // An ACK names at least one message. Knowing nothing of this sender, say
            // so of the message number it used last: "nothing of it arrived", which is
            // also what the sender concludes of every message left out.
            entries.push(AckEntry {
                msg: peer.done.back().map_or(0, |d| d.0.wrapping_add(1)),
                cum: 0,
                bitmap: Vec::new(),
            });
        }
        Some(Frame {
            src: self.me,
            body: Body::Ack {
                dst: src,
                entries,
                then: None,
            },
        })
    }

    fn handle_ack(&mut self, now: u64, src: Short, entries: Vec<AckEntry>) {
        if let Some(n) = self.neighbors.get_mut(&src) {
            n.retries = 0;
        }
        let peer = self.neighbors[&src].id;
        let mut done_tags = Vec::new();
        for m in &mut self.out {
            let Some(d) = m.dsts.iter_mut().find(|d| d.short == src) else {
                continue;
            };
            let entry = entries.iter().find(|e| e.msg == m.msg);
            if let Some(e) = entry {
                let mark = |s: usize, d: &mut Dst| {
                    if s < d.acked.len() && !d.acked[s] {
                        d.acked[s] = true;
                        d.acked_count += 1;
                    }
                };
                for s in 0..(e.cum as usize).min(d.acked.len()) {
                    mark(s, d);
                }
                for (i, byte) in e.bitmap.iter().enumerate() {
                    for b in 0..8 {
                        if byte & (1 << b) != 0 {
                            mark(e.cum as usize + 1 + i * 8 + b, d);
                        }
                    }
                }
                if e.cum == 0 && e.bitmap.is_empty() {
                    d.info_ok = false;
                    d.info_sent = false;
                } else {
                    d.info_ok = true;
                }
            } else if !d.inflight.is_empty() || d.info_sent {
                // It heard nothing of this message.
                d.info_ok = false;
                d.info_sent = false;
            }
            for s in d.inflight.drain(..) {
                if !d.acked[s as usize] {
                    m.pending[s as usize] = true;
                }
            }
            if !d.info_ok && !d.info_sent && !m.single {
                // Everything it was sent must go again once it knows the message.
                for (s, a) in d.acked.iter().enumerate() {
                    if !a && m.ever_sent[s] {
                        m.pending[s] = true;
                    }
                }
            }
            if d.acked_count == m.nseg {
                done_tags.push(d.tag);
            }
        }
        for m in &mut self.out {
            m.dsts
                .retain(|d| !(d.short == src && d.acked_count == m.nseg));
        }
        self.remove_finished();
        for tag in done_tags {
            self.stats.messages_sent += 1;
            self.events.push_back(Event::Sent { peer, tag });
        }
        if let Some(a) = &mut self.awaiting {
            if a.dsts.remove(&src) && a.dsts.is_empty() {
                let a = self.awaiting.take().expect("present");
                if !a.retransmitted {
                    let sample = now.saturating_sub(a.polled_at);
                    self.srtt = Some(match self.srtt {
                        None => (sample, sample / 2),
                        Some((s, v)) => {
                            let dev = s.abs_diff(sample);
                            ((7 * s + sample) / 8, (3 * v + dev) / 4)
                        }
                    });
                }
                self.backoff = 0;
                self.burst = 0;
                self.touched.clear();
            }
        }
    }

    /// A pseudo-random delay below `max` (xorshift, seeded by the start nonce), so
    /// that nodes started together do not keep colliding.
    fn jitter(&mut self, max: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if max == 0 {
            0
        } else {
            self.rng % max
        }
    }

    /// The timeout plus a random part after a timeout (senders that collided must
    /// not retry in step), as Ethernet's and LoRaWAN's backoffs do.
    fn rto_jittered(&mut self, ndst: usize) -> u64 {
        let rto = self.rto(ndst);
        if self.backoff > 0 {
            rto + self.jitter(rto)
        } else {
            rto
        }
    }

    fn rto(&self, ndst: usize) -> u64 {
        let base = match self.srtt {
            Some((s, v)) => s + 4 * v,
            None => self.cfg.rto_initial_us,
        };
        let stagger =
            (ndst.saturating_sub(1)) as u64 * (self.cfg.ack_delay_us + self.medium.airtime_us(24));
        ((base + stagger) << self.backoff).clamp(self.cfg.rto_min_us, self.cfg.rto_max_us)
    }

    /// The next frame to transmit now, if any. Call again until `None`, then wait
    /// for `poll_timeout` or the next input.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Vec<u8>> {
        if now < self.busy_until {
            return None;
        }
        // 1. ACKs that are due.
        if let Some((&src, _)) = self.acks_due.iter().find(|(_, due)| **due <= now) {
            let mut frame = self.build_ack(src)?;
            // An answer waiting for the same neighbour rides along (a Want after an
            // Offer, a custody Ack after a bundle): one packet instead of two.
            let mut plan = None;
            if self.awaiting.is_none() && !self.poll_owed && self.touched.iter().all(|t| *t == src)
            {
                if let Some(p) = self.plan_data() {
                    let mut joined = frame.clone();
                    if let Body::Ack { then, .. } = &mut joined.body {
                        *then = Some(Box::new(p.body.clone()));
                    }
                    if p.dsts == [src] && joined.encoded_len() <= self.cfg.mtu {
                        frame = joined;
                        plan = Some(p);
                    } else {
                        self.unmark_sent(p.idx, p.work, &p.dsts);
                    }
                }
                self.poll_owed = false;
            }
            let Some(bytes) = self.emit(now, &frame) else {
                if let Some(p) = plan {
                    self.unmark_sent(p.idx, p.work, &p.dsts);
                }
                return None;
            };
            self.acks_due.remove(&src);
            self.stats.acks_sent += 1;
            if let Some(p) = plan {
                self.stats.piggybacked += 1;
                self.finish_data(p);
            }
            return Some(bytes);
        }
        // 2. Hello.
        if now >= self.next_hello || self.hello_wanted.is_some_and(|w| now >= w) {
            let resets: Vec<(Short, u8)> = self
                .resets
                .iter()
                .take(MAX_RESETS)
                .map(|(s, (e, _))| (*s, *e))
                .collect();
            let sig = if resets.is_empty() {
                self.sig
            } else {
                self.identity.sign(&hello_message(
                    &self.hello_ctx,
                    &self.my_id,
                    &self.nonce,
                    &resets,
                ))
            };
            let frame = Frame {
                src: self.me,
                body: Body::Hello {
                    // A node that knows no neighbour keeps asking for answers.
                    answer: self.hello_answer || !self.neighbors.values().any(|n| n.up),
                    node_id: *self.my_id.as_bytes(),
                    nonce: self.nonce,
                    sig,
                    resets,
                },
            };
            let bytes = self.emit(now, &frame)?;
            self.hello_answer = false;
            self.last_hello = Some(now);
            self.hello_wanted = None;
            // Alone, a node looks for neighbours again soon, then less and less
            // often: its first hellos, or the answers to them, may have been lost
            // (two hidden neighbours answering at once collide), and a node that
            // heard nothing has nothing else to wait for. At most 1% of the air on
            // these extra hellos: never sooner than 100 of their airtimes.
            let interval = if self.neighbors.values().any(|n| n.up) {
                self.lonely_gap = self.cfg.hello_min_gap_us;
                self.cfg.hello_interval_us
            } else {
                let floor = self.medium.airtime_us(bytes.len()).saturating_mul(100);
                let gap = self.lonely_gap.max(floor).min(self.cfg.hello_interval_us);
                self.lonely_gap = self.lonely_gap.saturating_mul(2);
                gap
            };
            self.next_hello = now + interval - self.jitter(interval / 8);
            self.stats.hellos_sent += 1;
            if let Body::Hello { resets, .. } = &frame.body {
                for (s, _) in resets {
                    if let Some((_, left)) = self.resets.get_mut(s) {
                        *left = left.saturating_sub(1);
                    }
                    if let Some(n) = self.neighbors.get_mut(s) {
                        if n.up_deferred {
                            n.up_deferred = false;
                            self.events.push_back(Event::NeighborUp { peer: n.id });
                        }
                    }
                }
            }
            self.resets.retain(|_, (_, left)| *left > 0);
            if !self.resets.is_empty() {
                // Announce again soon: one lost hello must not leave it unknown.
                self.want_hello(now, false);
            }
            return Some(bytes);
        }
        if self.awaiting.is_some() {
            return None;
        }
        // 3. A poll owed from the last burst.
        if self.poll_owed {
            let dsts: Vec<Short> = self
                .touched
                .iter()
                .filter(|s| self.neighbors.get(*s).is_some_and(|n| n.up))
                .copied()
                .collect();
            self.poll_owed = false;
            if dsts.is_empty() {
                self.touched.clear();
            } else {
                let chunk: Vec<Short> = dsts.iter().take(MAX_DSTS).copied().collect();
                let frame = Frame {
                    src: self.me,
                    body: Body::Poll {
                        dsts: chunk.clone(),
                    },
                };
                let Some(bytes) = self.emit(now, &frame) else {
                    self.poll_owed = true;
                    return None;
                };
                self.stats.polls_sent += 1;
                let retransmitted = self.backoff > 0;
                self.awaiting = Some(Awaiting {
                    deadline: self.busy_until + self.rto_jittered(chunk.len()),
                    dsts: chunk.into_iter().collect(),
                    polled_at: self.busy_until,
                    retransmitted,
                });
                return Some(bytes);
            }
        }
        // 4. Data, by class, round-robin within a class. Data for a neighbour we
        // owe an ACK waits for it, to ride in the same packet.
        if let Some((_, _, dsts)) = self.pick() {
            if dsts.len() == 1 && self.acks_due.contains_key(&dsts[0]) {
                return None;
            }
        }
        let owed = self.poll_owed;
        let Some(plan) = self.plan_data() else {
            // A burst that would reach too many neighbours ends with its poll first.
            return if !owed && self.poll_owed {
                self.poll_transmit(now)
            } else {
                None
            };
        };
        let frame = Frame {
            src: self.me,
            body: plan.body.clone(),
        };
        let Some(bytes) = self.emit(now, &frame) else {
            self.unmark_sent(plan.idx, plan.work, &plan.dsts);
            return None;
        };
        self.finish_data(plan);
        Some(bytes)
    }

    /// Chooses the next data frame, marks it sent and decides whether it polls.
    fn plan_data(&mut self) -> Option<DataPlan> {
        let (idx, work, dsts) = self.pick()?;
        let mut touched = self.touched.clone();
        touched.extend(dsts.iter().copied());
        if touched.len() > MAX_DSTS {
            // A burst polls at most MAX_DSTS neighbours: end this one first.
            self.poll_owed = true;
            return None;
        }
        let m = &self.out[idx];
        let mut body = match work {
            Work::Info => Body::Info {
                dsts: dsts.clone(),
                poll: false,
                kind: m.kind,
                msg: m.msg,
                key: m.key,
                len: m.bytes.len() as u32,
                seg_size: m.seg_size as u32,
            },
            Work::Segment(_) if m.single => Body::Single {
                dsts: dsts.clone(),
                poll: false,
                kind: m.kind,
                msg: m.msg,
                payload: m.bytes.clone(),
            },
            Work::Segment(s) => Body::Segment {
                dsts: dsts.clone(),
                poll: false,
                kind: m.kind,
                msg: m.msg,
                seg: s,
                payload: m.segment(s).to_vec(),
            },
        };
        // Would this be the last frame of the burst?
        self.mark_sent(idx, work, &dsts);
        let last = self.burst + 1 >= self.cfg.window || self.pick().is_none();
        let poll_here = last && touched.iter().all(|t| dsts.contains(t));
        if poll_here {
            match &mut body {
                Body::Info { poll, .. }
                | Body::Single { poll, .. }
                | Body::Segment { poll, .. } => *poll = true,
                _ => {}
            }
        }
        Some(DataPlan {
            idx,
            work,
            dsts,
            body,
            touched,
            poll_here,
            last,
        })
    }

    /// Burst bookkeeping once a planned data frame went out.
    fn finish_data(&mut self, plan: DataPlan) {
        self.last_served[self.out[plan.idx].class as usize] = self.out[plan.idx].seq;
        self.touched = plan.touched;
        self.burst += 1;
        if plan.poll_here {
            let retransmitted = self.backoff > 0;
            self.awaiting = Some(Awaiting {
                deadline: self.busy_until + self.rto_jittered(plan.dsts.len()),
                dsts: self.touched.clone(),
                polled_at: self.busy_until,
                retransmitted,
            });
        } else if plan.last {
            self.poll_owed = true;
        }
    }

    fn pick(&self) -> Option<(usize, Work, Vec<Short>)> {
        let up = |s: &Short| self.neighbors.get(s).is_some_and(|n| n.up);
        for class in [Class::Control, Class::Expedited, Class::Normal, Class::Bulk] {
            let last = self.last_served[class as usize];
            let mut best: Option<(bool, u64, usize, Work, Vec<Short>)> = None;
            for (i, m) in self.out.iter().enumerate() {
                if m.class != class {
                    continue;
                }
                // Round-robin: the first message after the last one served, by seq.
                let after = m.seq > last;
                let better = match &best {
                    None => true,
                    Some((b_after, b_seq, ..)) => {
                        (after, std::cmp::Reverse(m.seq)) > (*b_after, std::cmp::Reverse(*b_seq))
                    }
                };
                if !better {
                    continue;
                }
                if let Some((w, d)) = m.next_work(&up) {
                    best = Some((after, m.seq, i, w, d));
                }
            }
            if let Some((_, _, i, w, d)) = best {
                return Some((i, w, d));
            }
        }
        None
    }

    fn mark_sent(&mut self, idx: usize, work: Work, dsts: &[Short]) {
        self.set_sent(idx, work, dsts, true);
    }

    fn unmark_sent(&mut self, idx: usize, work: Work, dsts: &[Short]) {
        self.set_sent(idx, work, dsts, false);
    }

    /// Records (or takes back) that `work` went to `dsts`.
    fn set_sent(&mut self, idx: usize, work: Work, dsts: &[Short], sent: bool) {
        let m = &mut self.out[idx];
        if let Work::Segment(s) = work {
            m.pending[s as usize] = !sent;
        }
        for d in m.dsts.iter_mut().filter(|d| dsts.contains(&d.short)) {
            match work {
                Work::Info => d.info_sent = sent,
                Work::Segment(s) if sent => d.inflight.push(s),
                Work::Segment(s) => d.inflight.retain(|x| *x != s),
            }
        }
    }

    /// Encodes, checks the budget, accounts; `None` if the budget is not there yet.
    fn emit(&mut self, now: u64, frame: &Frame) -> Option<Vec<u8>> {
        let key = frame
            .unicast_to()
            .and_then(|d| self.neighbors.get(&d))
            .map_or(self.key, |n| n.key);
        let bytes = frame.encode(&key);
        let air = self.medium.airtime_us(bytes.len());
        let ready = self.medium.ready_at(now, air);
        if ready > now {
            self.blocked_until = ready;
            return None;
        }
        self.medium.spend(now, air);
        self.busy_until = now + air;
        // Any frame tells the neighbours we are here: the periodic hello is for
        // silent times only (answers to new neighbours still go at once).
        self.next_hello = self.next_hello.max(now + self.cfg.hello_interval_us);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.stats.airtime_us += air;
        let data = match &frame.body {
            Body::Ack { then: Some(t), .. } => t.as_ref(),
            b => b,
        };
        if let Body::Single { msg, .. } | Body::Segment { msg, .. } = data {
            let seg = match data {
                Body::Segment { seg, .. } => *seg as usize,
                _ => 0,
            };
            if let Some(m) = self.out.iter_mut().find(|m| m.msg == *msg) {
                if m.ever_sent[seg] {
                    self.stats.segments_resent += 1;
                } else {
                    m.ever_sent[seg] = true;
                    self.stats.segments_sent += 1;
                }
            }
        }
        Some(bytes)
    }
}
