//! The sans-IO routing engine: a deterministic state machine that decides what a
//! node stores, forwards, delivers and acknowledges. It does no I/O, reads no clock
//! and spawns nothing; the daemon drives it with tokio, the simulator with a
//! discrete-event loop, tests with a few lines.
//!
//! # Contract
//!
//! The vocabulary is quinn-proto's, the contract str0m's: feed one event with
//! [`Engine::handle_input`] (or [`Engine::handle_timeout`] when the time returned by
//! [`Engine::poll_timeout`] has come), then drain [`Engine::poll_output`] until it
//! returns `None`, then wait until the next input or `poll_timeout`. Time is an
//! input: `now` is a monotonic [`Millis`] chosen by the driver, `wall` the node's
//! wall clock as a [`DtnTime`] when it is set (`None` on a node without a real-time
//! clock). Same inputs, same outputs: iteration is over ordered maps only and no
//! randomness is drawn.
//!
//! The engine owns an `Arc` of the custody store and calls it synchronously (an LMDB
//! commit takes milliseconds): drive it from a thread that may block (a dedicated
//! thread or `spawn_blocking`), not from an async task.
//!
//! The engine trusts [`Input::Received`] bundles to be decoded, realm-checked,
//! signature-verified and not expired on arrival: the driver runs
//! [`Keyring::accept`] (or [`Keyring::verify_many`] on a batch) first and drops what
//! fails (the sender keeps custody since nothing acknowledges it).
//!
//! ```
//! use std::sync::Arc;
//! use ferry_cl_api::{LinkCaps, LinkId};
//! use ferry_core::{DtnTime, Identity, Keyring, PayloadKind, Priority, Realm, Recipient, SealParams};
//! use ferry_router::engine::{Engine, EngineConfig, Input, Millis, Output};
//! use ferry_storage::MemStore;
//!
//! let realm = Realm::new("valley", [7; 32]).unwrap();
//! let node = |seed| Arc::new(Keyring::new(Identity::from_seed([seed; 32]), vec![realm.clone()]));
//! let (ka, kb) = (node(1), node(2));
//! let mut a = Engine::new(Arc::new(MemStore::default()), ka.clone(), EngineConfig::default(), Millis(0));
//! let wall = Some(DtnTime(800_000_000));
//!
//! // An app on A submits a bundle for B.
//! let params = SealParams {
//!     recipient: Recipient::Node { id: kb.node_id(), endpoint: None },
//!     realm: "valley".into(),
//!     created: wall,
//!     sequence: a.next_sequence().unwrap(),
//!     lifetime: 3600,
//!     priority: Priority::Normal,
//!     hop_limit: 8,
//!     kind: PayloadKind::AppData,
//!     ephemeral: false,
//!     fragment: None,
//! };
//! let bundle = ka.seal(&params, b"hello", &mut ferry_core::rand_core::OsRng).unwrap();
//! a.handle_input(Millis(0), wall, Input::Submit { bundle }).unwrap();
//! // The driver loop: drain outputs, sleep until `poll_timeout`, handle the timeout.
//! // Submissions are group-committed, so `Stored` comes at the commit deadline.
//! let mut stored = false;
//! while !stored {
//!     while let Some(out) = a.poll_output() {
//!         stored |= matches!(out, Output::Stored { .. });
//!     }
//!     let Some(at) = a.poll_timeout() else { break };
//!     a.handle_timeout(at, wall).unwrap();
//! }
//! assert!(stored);
//!
//! // B comes into contact: A (the node with the smaller id starts) reconciles, offers,
//! // and transmits when B wants it. Moving outputs to the peer's inputs is the
//! // driver's job; `router/tests/engine_*.rs` have a tiny deterministic network.
//! a.handle_input(Millis(10), wall, Input::ContactUp {
//!     link: LinkId(1), peer: kb.node_id(), caps: LinkCaps::ip_stream(),
//! }).unwrap();
//! while let Some(out) = a.poll_output() {
//!     if let Output::SendFrame { link, bytes } = out {
//!         assert_eq!(link, LinkId(1));
//!         assert!(ferry_router::engine::decode_frame(&bytes).is_ok());
//!     }
//! }
//! ```
//!
//! # Inputs and outputs
//!
//! Inputs: [`Input::ContactUp`]/[`Input::ContactDown`] with the link's
//! [`LinkCaps`], [`Input::Frame`] (a control frame from the peer),
//! [`Input::Received`] (a bundle from the peer), [`Input::Submit`] (a bundle sealed
//! by a local app), [`Input::TransferDone`]/[`Input::TransferFailed`] (what the link
//! reported of a bundle it was given), [`Input::AppAck`] (the app took a delivery).
//!
//! Outputs: [`Output::SendFrame`], [`Output::SendBundle`] (with a [`TransferId`] the
//! link echoes), [`Output::CloseLink`], [`Output::Deliver`] (payload for a local
//! app), [`Output::Delivered`] (a receipt proved delivery of one of our bundles),
//! [`Output::ReceiptEmitted`], and notices [`Output::Stored`], [`Output::Refused`],
//! [`Output::Removed`] for logs and status.
//!
//! # Link protocol
//!
//! Control frames are described with their byte layout in [`frame`]: every frame is
//! `version:u8 type:u8 body`, at most [`MAX_FRAME_BYTES`] (and within the link's
//! budget: its MTU, at least 128 bytes, or 16 KiB on streams), decoded strictly by
//! [`decode_frame`]. A frame that does not decode makes the engine emit
//! [`Output::CloseLink`] and ignore that link until it goes down; the sender's
//! bundles stay in its store.
//!
//! A contact goes:
//!
//! 1. `ContactUp` on both sides. Under PRoPHET each side sends `Predictability`
//!    (its delivery predictabilities, after its encounter update).
//! 2. The node with the smaller node id starts a reconciliation session
//!    (`ReconRequest`/`ReconReply` rounds, see [`recon`]). On a broadcast link the
//!    other node may be the only one that knows of the contact (the first node
//!    missed its hello answer): when nothing has come from its peer within
//!    16 frame airtimes (2 to 60 s), it starts a session itself, and drops that
//!    session, unanswered, should the peer's own request arrive. Whichever side receives
//!    the peer's full id list for a range settles it: it queues the bundles only it
//!    holds there for offering, and sends the keys only the peer holds as `Missing`
//!    (so the peer offers those).
//! 3. Each side offers (`Offer`: full ids, so the receiver can check its seen-set,
//!    and spray copies) the bundles the peer lacks that its policy hands over (on a
//!    link with an MTU, a bundle that fits it and hands over no spray copies is sent
//!    at once instead, as if wanted: [`EngineStats::pushed`]); the
//!    peer answers every offer with exactly one `Want` listing the keys not in its
//!    seen-set, not in its commit buffer and not already being fetched from another
//!    link; the rest of that offer is declined.
//! 4. Wanted bundles are transmitted (expedited before normal before bulk, oldest
//!    first; round-robin between links; at most `max_in_flight` per link and
//!    [`EngineConfig::max_in_flight_bytes`] in all). The receiver commits them to its
//!    store and only then answers `Ack` (custody). `Refuse` tells the sender to keep
//!    custody: store full (no new offers to that peer for
//!    [`EngineConfig::peer_backoff`]), hop limit, not accepted; from the sender it
//!    cancels a want: gone (expired or purged meanwhile), cancelled (the transfer
//!    failed [`EngineConfig::max_send_retries`] times; the link then stays quiet for
//!    `peer_backoff`).
//! 5. Bundles stored later during the contact are offered at once. Whatever was
//!    dropped for lack of room, and whatever the peer left unanswered for
//!    [`EngineConfig::answer_timeout`] (a round, an offer, an `Ack`, a wanted
//!    bundle), is found again by a new session once the link is idle.
//!
//! A bundle is never sent twice to the same peer, on one or several links, unless
//! the transfer failed; once the peer acknowledges custody it is recorded in the
//! bundle's `holders` and never offered to that peer again.
//!
//! # Group commit and custody
//!
//! Received and submitted bundles are buffered and written with one `insert_batch`
//! (one LMDB commit) when [`EngineConfig::commit_batch`] bundles or
//! [`EngineConfig::commit_batch_bytes`] bytes are waiting, or
//! [`EngineConfig::commit_delay`] after the first one (the time `poll_timeout`
//! returns), or when the driver reports that its input queue ran dry
//! ([`Engine::handle_idle`]; the daemon does, so its batches follow the load). `Ack`
//! frames are emitted only after the insert returned `Ok`. A
//! [`StoreError::StoreFull`] batch is retried bundle by bundle; what still does not
//! fit is refused with `Refuse(store full)`, never acknowledged. A bundle that
//! arrives again once committed (or after delivery and release) is acknowledged at
//! once from the seen-set.
//!
//! After an acknowledgment the sender records the peer as a holder and, for a
//! spray split, deducts the copies it handed over. Relays drop their copy when
//! custody reached the destination or, under single-copy policies (static routes),
//! the next hop; the source keeps its copy until a receipt arrives.
//!
//! The other store writes (removals after a hand-over, an [`Input::AppAck`] or a
//! receipt; routing edits such as a new holder or spent spray copies; seen marks
//! from receipts) are *queued*, not committed one by one: they are applied in the
//! same transaction as the next commit of the buffer (one
//! [`CustodyStore::apply_batch`]), or alone [`EngineConfig::commit_delay`] after
//! the first was queued (or once [`MAX_QUEUED_WRITES`] wait), whichever comes
//! first. The engine reads through them (a bundle whose removal is queued is gone
//! for it). A crash loses at most the writes of the last commit delay, and each of
//! those only releases or annotates a copy this node still holds: after a restart
//! a bundle is offered again (the peer declines it from its seen-set) or delivered
//! again (deliveries are at-least-once; apps dedup by bundle id); custody is never
//! lost and nothing unstored is ever acknowledged. A bundle for a local app is
//! stored already marked delivered (in the insert's commit), so a crash after its
//! `Ack` still redelivers it.
//!
//! # Delivery and receipts
//!
//! A stored bundle addressed to this node, or to a realm group of this node, is
//! opened (before its commit, so that it is stored with custody `Delivered`): app
//! data becomes [`Output::Deliver`] (with the payload unless
//! [`EngineConfig::deliver_payload`] is off) and stays stored until
//! [`Input::AppAck`]; after a restart, unacknowledged ones are delivered again
//! (at-least-once; apps dedup by bundle id). On `AppAck` for a node
//! bundle the engine removes it (its id stays in the seen-set) and emits a receipt: a
//! bundle sealed by this node for the realm group ([`receipt`] has its payload),
//! kind `Receipt`, expedited, listing up to [`receipt::MAX_RECEIPT_IDS`]
//! acknowledged ids (acks within one commit delay share a receipt), living as long
//! as the longest remaining lifetime among them. Sequence numbers are reserved
//! [`SEQUENCE_BLOCK`] at a time. Every node that learns a receipt removes its copies
//! of the listed bundles whose destination is the receipt's signer (others are
//! counted in [`EngineStats::receipt_mismatches`] and kept), marks the ids it does
//! not hold as seen until the receipt expires, and carries the receipt on like any
//! group bundle; the source emits [`Output::Delivered`]. Group bundles get no
//! receipts (every member would send one); acknowledging one only ends its
//! `Delivered` state.
//!
//! # Routing policies
//!
//! One trait, [`RoutingPolicy`], chosen by [`PolicyConfig`]: epidemic, binary
//! spray-and-wait, PRoPHET ([`prophet`]), direct delivery, static routes. The rules
//! every policy shares (hop limit, holders, group bundles, the destination) are in
//! [`policy`].
//!
//! # Carriers
//!
//! A USB drive carried between sites is a contact with a store rather than a live
//! peer: [`Input::CarrierUp`] (with the drive's readers as its *reach*),
//! [`Input::Holders`] (what the drive and its readers' signed manifests say they
//! hold), [`Input::Carried`] for each bundle imported from it (answered by
//! [`Output::Imported`] once committed), [`Input::CarrierExport`] for an export pass
//! ([`Output::Export`] per bundle the common rules and the policy hand to some
//! known reader or to the carrier itself as an unknown peer; then
//! [`Output::CarrierIdle`]), and [`Input::ContactDown`] when it is removed. Writing
//! to a carrier never releases custody: only a receipt does. The `carrier` module
//! source has the details.
//!
//! # Expiry and hop limit
//!
//! The engine purges every [`EngineConfig::purge_interval`] while carriers are up
//! (or without a wall clock), otherwise at the earliest expiry among its stored
//! bundles or the earliest time an answer a link awaits can pass
//! [`EngineConfig::answer_timeout`], and at least every
//! [`EngineConfig::purge_max_interval`]. A purge
//! removes bundles whose `expires_at` has passed on the wall clock (DTN seconds; for bundles without a
//! creation time it is computed on arrival as `wall + lifetime − age`) and, on a node
//! without a wall clock, bundles without a creation time whose age plus the time held
//! here (monotonic) reached their lifetime. Forwarding adds one hop and, for bundles
//! without a creation time, the seconds held here (rounded up) to their age. A bundle
//! at its hop limit is never forwarded (a group bundle that arrives at it is stored
//! with `copies_left = 0`); one a hop below it goes only to its destination.
//!
//! # Bounds
//!
//! Per link: offered, queued, in-flight and unacknowledged bundles together at most
//! [`EngineConfig::link_queue`], wanted bundles at most `link_queue`; have-scans at
//! most [`MAX_LINK_SCANS`] ranges (each with at most one frame's keys; the next round
//! waits while more than [`MAX_HAVE_SCANS`] are queued); one held reconciliation
//! message; one offer batch of one frame. Engine: at most [`EngineConfig::max_links`]
//! links; the commit buffer as above; [`receipt::MAX_RECEIPT_IDS`] pending receipt
//! ids per realm before a receipt is sealed; the clockless age table
//! [`EngineConfig::max_aging`] (an age-based bundle that would overflow it is
//! refused); spray reservations and per-peer dedup entries at most one per outbound
//! bundle; PRoPHET's tables [`ProphetParams::max_entries`]. Per event, a have-scan
//! examines at most 4096 ids per link, a purge removes at most 4096 bundles; the rest
//! continues at the next `handle_timeout` (`poll_timeout` then returns `now`), as
//! does optional work (transmissions, offers from scans, redelivery) paused while
//! more than [`OUTPUT_SOFT_CAP`] outputs wait for the driver. With the defaults
//! (1024 × 64 links) the per-link state stays under ~15 MB in the worst case.
//!
//! No per-bundle state is kept in RAM except the clockless age table (~100 bytes an
//! entry): held ids are walked in the store, in id order ([`CustodyStore::ids_after`]),
//! not mirrored, so a million stored bundles cost no engine memory. The cost moves to
//! CPU and I/O: the first reconciliation round of a contact reads every held id once
//! (one ordered index scan; later rounds only the mismatching ranges).

mod carrier;
pub mod envelope;
pub mod frame;
mod link;
pub mod policy;
pub mod prophet;
pub mod receipt;
pub mod recon;
mod time;

mod custody;
mod transfer;
mod writes;

use std::collections::{BTreeMap, VecDeque};

/// Hash maps of the engine's lookup-only sets (ids and keys, never iterated in an
/// order that matters): a fast hasher with a per-process random seed, so keys a
/// peer chooses (offered keys) cannot be aimed at one bucket. The ordered maps
/// stay B-trees.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::ops::Range as SeqRange;
use std::sync::Arc;

pub use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_core::{
    Bundle, BundleId, DtnTime, Fragment, Keyring, NodeHash, NodeId, PayloadKind, RealmTag,
};
use ferry_storage::{CustodyStore, StoreError};

pub use carrier::{ImportOutcome, MAX_CARRIER_REACH};
pub use frame::{decode_frame, Frame, FrameError, RefuseReason, MAX_FRAME_BYTES};
pub use policy::{Candidate, PolicyConfig, RoutingPolicy, StateError, Verdict};
pub use prophet::ProphetParams;
pub use time::Millis;
pub use writes::MAX_QUEUED_WRITES;

use custody::{AgeTable, Pending, Redeliver};
use frame::Key;
use link::Link;

/// Outputs waiting above which optional work pauses until the driver drains them.
pub const OUTPUT_SOFT_CAP: usize = 1024;
/// Have-scans a link may hold before its next reconciliation round is sent.
pub const MAX_HAVE_SCANS: usize = 4;
/// Have-scans a link may hold in all (a responder cannot pause the peer's session:
/// past this it drops the rest and reconciles again once idle).
pub const MAX_LINK_SCANS: usize = 256;
/// Sequence numbers reserved from the store at a time.
pub const SEQUENCE_BLOCK: u64 = 64;

/// Engine settings. [`EngineConfig::from_config`] maps `ferry.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The routing policy.
    pub policy: PolicyConfig,
    /// Hop limit of receipts this node creates.
    pub hop_limit: u8,
    /// Lifetime (seconds) of a receipt when the acknowledged bundle's remaining
    /// lifetime is unknown (a creation time but no wall clock here).
    pub receipt_lifetime: u32,
    /// Bundles buffered before a commit is forced (default 64).
    pub commit_batch: usize,
    /// Bytes buffered before a commit is forced (default 8 MiB; a larger bundle is
    /// committed alone, at once).
    pub commit_batch_bytes: u64,
    /// Longest a bundle waits in the commit buffer (default 5 ms). Zero commits at
    /// the end of every input instead (no group commit, no commit timer): for stores
    /// whose commits cost nothing, such as the simulator's in-memory one.
    pub commit_delay: Millis,
    /// Time between purges (expired bundles, answer timeouts, old seen-set entries)
    /// while carriers are up, on a node without a wall clock, or with clockless
    /// bundles in the age table (default 5 s).
    pub purge_interval: Millis,
    /// Otherwise the next purge comes at the earliest expiry among stored bundles or
    /// when an answer a link awaits times out, and at the latest this long after the
    /// last (default 5 min): a node does not wake up every few seconds for nothing (a
    /// Pi on a battery; thousands of nodes in the simulator).
    pub purge_max_interval: Millis,
    /// Per-link cap on outstanding bundles each way (default 1024).
    pub link_queue: usize,
    /// Most links at once (default 64).
    pub max_links: usize,
    /// Bundle bytes handed to links and not yet reported done, over all links
    /// (default 64 MiB; one bundle is always allowed when none is in flight).
    pub max_in_flight_bytes: u64,
    /// No new offers to a peer that refused for a full store, or on a link where a
    /// bundle failed [`EngineConfig::max_send_retries`] times, for this long
    /// (default 30 s).
    pub peer_backoff: Millis,
    /// Age-based bundles tracked on a node without a wall clock (default 65,536).
    pub max_aging: usize,
    /// Transmissions of one bundle on one link after failures (default 3).
    pub max_send_retries: u8,
    /// How long a reconciliation round, an offer, a custody acknowledgment or a
    /// wanted bundle may wait for the peer before it is given up (and found again by
    /// a new reconciliation); divided by the link's duty cycle when it has one,
    /// checked at each purge (default 60 s).
    pub answer_timeout: Millis,
    /// Bundles imported from carriers (drives) buffered before a commit is forced,
    /// while nothing else waits in the buffer (default 4096): a drive sync is a bulk
    /// load, so it commits less often than live links.
    pub carrier_commit_batch: usize,
    /// Longest a bundle from a carrier waits in the commit buffer while nothing else
    /// does (default 100 ms).
    pub carrier_commit_delay: Millis,
    /// Whether [`Output::Deliver`] carries the payload (default `true`). A driver
    /// that reads delivered payloads back from the store (the daemon does, when an
    /// app asks) sets it to `false`: the payload is then authenticated and only
    /// its kind and endpoint decrypted ([`ferry_core::Keyring::open_head_verified`]),
    /// so a large payload is neither decrypted nor held in memory here (bundles of
    /// at most 4 KiB of ciphertext are opened whole: one pass costs less there).
    pub deliver_payload: bool,
    /// Whether the routing policy's state (PRoPHET's table) is kept in the store
    /// across restarts (default `true`): saved with the next commit after each
    /// change, restored by the first `handle_input` or `handle_timeout`.
    pub persist_routing: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policy: PolicyConfig::SprayAndWait { copies: 8 },
            hop_limit: ferry_core::DEFAULT_HOP_LIMIT,
            receipt_lifetime: 86_400,
            commit_batch: 64,
            commit_batch_bytes: 8 << 20,
            commit_delay: Millis(5),
            purge_interval: Millis(5_000),
            purge_max_interval: Millis(300_000),
            link_queue: 1024,
            max_links: 64,
            max_in_flight_bytes: 64 << 20,
            peer_backoff: Millis(30_000),
            max_aging: 65_536,
            max_send_retries: 3,
            answer_timeout: Millis(60_000),
            carrier_commit_batch: 4096,
            carrier_commit_delay: Millis(100),
            deliver_payload: true,
            persist_routing: true,
        }
    }
}

impl EngineConfig {
    /// The engine settings of a node configuration: policy, `spray_copies` (L) and
    /// `hop_limit` from `[routing]`; PRoPHET with RFC 6693's defaults; for the
    /// `static` policy, `static_routes` (destination node → next-hop node, e.g. the
    /// parsed `[routes]` table).
    pub fn from_config(
        cfg: &crate::config::Config,
        static_routes: BTreeMap<NodeId, NodeId>,
    ) -> Self {
        use crate::config::Policy;
        let policy = match cfg.routing.policy {
            Policy::Epidemic => PolicyConfig::Epidemic,
            Policy::SprayAndWait => PolicyConfig::SprayAndWait {
                copies: cfg.routing.spray_copies,
            },
            Policy::Prophet => PolicyConfig::Prophet(ProphetParams::default()),
            Policy::Direct => PolicyConfig::Direct,
            Policy::Static => PolicyConfig::Static {
                routes: static_routes,
            },
        };
        Self {
            policy,
            hop_limit: cfg.routing.hop_limit,
            ..Self::default()
        }
    }
}

/// An event for the engine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A contact began with an authenticated peer.
    ContactUp {
        /// The link.
        link: LinkId,
        /// The peer (authenticated by the link).
        peer: NodeId,
        /// What the link can do.
        caps: LinkCaps,
    },
    /// The contact ended.
    ContactDown {
        /// The link.
        link: LinkId,
    },
    /// A control frame from the peer.
    Frame {
        /// The link.
        link: LinkId,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// A bundle from the peer, already accepted by the driver (decoded, realm and
    /// signature checked, not expired).
    Received {
        /// The link.
        link: LinkId,
        /// The sender's transfer id.
        transfer: TransferId,
        /// The bundle.
        bundle: Bundle,
    },
    /// A bundle sealed by a local app (its source must be this node).
    Submit {
        /// The bundle.
        bundle: Bundle,
    },
    /// The link finished sending a bundle (custody follows as an `Ack` frame).
    TransferDone {
        /// The link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
    },
    /// The link could not send a bundle.
    TransferFailed {
        /// The link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
    },
    /// The local app took a delivered bundle: release it (and send a receipt).
    AppAck {
        /// The bundle.
        id: BundleId,
    },
    /// A carrier contact began: a link whose other end is a store (a USB drive),
    /// see the module docs' *Carriers*. It ends with [`Input::ContactDown`].
    CarrierUp {
        /// The link.
        link: LinkId,
        /// The carrier's pseudo-peer hash (derived from the drive's id): recorded as
        /// a holder of what is written to it.
        carrier: NodeHash,
        /// What the link can do (`max_in_flight` bounds the writes at once).
        caps: LinkCaps,
        /// Nodes known to read the carrier (at most [`MAX_CARRIER_REACH`]).
        reach: Vec<NodeHash>,
    },
    /// `peer` is known to hold these bundles (a node's signed manifest, or a
    /// carrier's inventory): recorded as routing metadata, never as a release.
    Holders {
        /// The node or carrier.
        peer: NodeHash,
        /// The bundles.
        ids: Vec<BundleId>,
    },
    /// A bundle read from a carrier, already accepted by the driver (decoded, realm
    /// and signature checked, not expired); answered by [`Output::Imported`].
    Carried {
        /// The carrier link.
        link: LinkId,
        /// The bundle.
        bundle: Bundle,
        /// Spray copies written beside it.
        copies: u32,
    },
    /// Start an export pass on a carrier: [`Output::Export`] for every bundle to
    /// write, then [`Output::CarrierIdle`].
    CarrierExport {
        /// The carrier link.
        link: LinkId,
    },
}

/// Where a stored bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Submitted by a local app.
    Local,
    /// Received from a peer.
    Peer {
        /// The link.
        link: LinkId,
        /// The peer.
        peer: NodeHash,
    },
    /// A receipt this node created.
    Receipt,
}

/// Why a stored bundle was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoveReason {
    /// Its lifetime is over.
    Expired,
    /// The local app acknowledged its delivery.
    AppAcked,
    /// A receipt proved its delivery.
    Receipt {
        /// The receipt.
        receipt: BundleId,
    },
    /// Custody moved to `peer` (its destination, or the next hop of a
    /// single-copy policy).
    HandedOver {
        /// The peer.
        peer: NodeHash,
    },
    /// Addressed here but it does not open, or its stored bytes are unreadable.
    Unreadable,
}

/// Why the engine asks the driver to close a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a frame that does not decode.
    BadFrame(FrameError),
    /// Already [`EngineConfig::max_links`] links.
    TooManyLinks,
    /// The peer is this node, or the link id is already in use.
    BadContact,
}

/// Something for the driver to do or know.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a control frame on a link.
    SendFrame {
        /// The link.
        link: LinkId,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// Send a bundle on a link and report [`Input::TransferDone`] or
    /// [`Input::TransferFailed`] with this transfer id.
    SendBundle {
        /// The link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
        /// The bundle.
        id: BundleId,
        /// The encoded bundle with its forwarding envelope (one more hop, age
        /// updated).
        bytes: Vec<u8>,
    },
    /// Close a link (the driver reports [`Input::ContactDown`] afterwards).
    CloseLink {
        /// The link.
        link: LinkId,
        /// Why.
        reason: CloseReason,
    },
    /// A payload for a local app; answer with [`Input::AppAck`] once it is safe.
    Deliver {
        /// The bundle.
        id: BundleId,
        /// Its source node.
        source: NodeId,
        /// Service endpoint (`None`: default).
        endpoint: Option<String>,
        /// Payload kind.
        kind: PayloadKind,
        /// The piece of a larger payload this bundle carries, if fragmented: the
        /// driver delivers the payload once it holds every piece.
        fragment: Option<Fragment>,
        /// Sent to the realm group rather than to this node alone.
        group: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A receipt proved that a bundle this node sent reached its destination.
    Delivered {
        /// Our bundle.
        id: BundleId,
        /// The receipt.
        receipt: BundleId,
    },
    /// This node created a receipt for bundles its apps acknowledged.
    ReceiptEmitted {
        /// The receipt bundle.
        receipt: BundleId,
        /// The bundles it lists.
        ids: Vec<BundleId>,
    },
    /// A bundle was committed to the store.
    Stored {
        /// The bundle.
        id: BundleId,
        /// Where it came from.
        origin: Origin,
    },
    /// A bundle was not stored; a peer was told with a `Refuse` frame.
    Refused {
        /// The bundle.
        id: BundleId,
        /// Where it came from.
        origin: Origin,
        /// Why.
        reason: RefuseReason,
    },
    /// A bundle left the store.
    Removed {
        /// The bundle.
        id: BundleId,
        /// Why.
        reason: RemoveReason,
    },
    /// What became of an [`Input::Carried`] bundle.
    Imported {
        /// The carrier link.
        link: LinkId,
        /// The bundle.
        id: BundleId,
        /// Stored, duplicate or refused.
        outcome: ImportOutcome,
    },
    /// Write a bundle to a carrier, then report [`Input::TransferDone`] once the
    /// write is durable or [`Input::TransferFailed`].
    Export {
        /// The carrier link.
        link: LinkId,
        /// The transfer.
        transfer: TransferId,
        /// The bundle.
        id: BundleId,
        /// Spray copies handed over with it (1 when not a split).
        copies: u32,
        /// When it expires (DTN seconds), if known.
        expires_at: Option<u64>,
        /// The encoded bundle with its forwarding envelope.
        bytes: Vec<u8>,
    },
    /// A carrier's export pass is over and none of its writes is outstanding.
    CarrierIdle {
        /// The carrier link.
        link: LinkId,
    },
}

/// What the engine can fail with. After an error the engine stays usable; the
/// operation that failed left custody where it was (nothing unstored was
/// acknowledged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The custody store failed.
    #[error("custody store: {0}")]
    Store(#[from] StoreError),
    /// [`Input::Submit`] with a bundle from another node.
    #[error("submitted bundle's source is not this node")]
    NotLocal,
    /// [`Input::Submit`] with a bundle of a realm this node is not in.
    #[error("submitted bundle belongs to a foreign realm")]
    ForeignRealm,
}

/// Counters for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Frames that did not decode.
    pub bad_frames: u64,
    /// Frames that decoded but made no sense here (unknown keys, stale replies).
    pub ignored_frames: u64,
    /// Control-frame bytes emitted.
    pub frame_bytes_sent: u64,
    /// Reconciliation-frame bytes emitted (requests and replies).
    pub recon_bytes_sent: u64,
    /// Bundles emitted on links.
    pub bundles_sent: u64,
    /// Bundle bytes emitted on links.
    pub bundle_bytes_sent: u64,
    /// Commits (store transactions: insert batches, with or without queued
    /// writes, and batches of queued writes alone) made.
    pub commits: u64,
    /// Commits of queued writes alone (no bundle to insert at the time).
    pub write_batches: u64,
    /// Receipts that do not decode, and listed bundles whose destination is not the
    /// receipt's signer (those are kept).
    pub receipt_mismatches: u64,
    /// Reconciliation sessions started.
    pub sessions: u64,
    /// Bundles sent without an offer (one frame on a small-MTU link).
    pub pushed: u64,
    /// Saved routing states that did not decode at start (dropped; the policy
    /// started empty).
    pub routing_state_dropped: u64,
}

/// The routing engine of one node.
pub struct Engine<S: CustodyStore> {
    store: Arc<S>,
    keyring: Arc<Keyring>,
    own_hash: NodeHash,
    config: EngineConfig,
    policy: Box<dyn RoutingPolicy>,
    now: Millis,
    wall: Option<DtnTime>,
    links: BTreeMap<LinkId, Link>,
    /// Carrier contacts (USB drives).
    carriers: BTreeMap<LinkId, carrier::Carrier>,
    /// Links per peer (a peer may be reachable on several).
    peer_links: BTreeMap<NodeHash, u32>,
    outputs: VecDeque<Output>,
    next_transfer: u64,
    pending: Vec<Pending>,
    /// Entries of `pending` not imported from a carrier.
    pending_live: usize,
    /// Ids in `pending`.
    pending_ids: FastSet<BundleId>,
    pending_bytes: u64,
    pending_since: Option<Millis>,
    /// Acknowledged bundles awaiting their receipt, per realm: (id, remaining
    /// lifetime in seconds).
    receipts: BTreeMap<RealmTag, Vec<(BundleId, u32)>>,
    receipts_since: Option<Millis>,
    /// What a receipt needs of a bundle delivered here and not yet acknowledged
    /// (bounded by [`custody::MAX_DELIVERED_HEADS`]): the app's ack then builds the
    /// receipt without reading the whole bundle back from the store.
    delivered_heads: FastMap<BundleId, custody::DeliveredHead>,
    sequences: SeqRange<u64>,
    aging: AgeTable,
    /// Spray copies promised in outstanding offers.
    reserved: FastMap<BundleId, u32>,
    /// Bundles outstanding to a peer on some link.
    outgoing: FastSet<(BundleId, NodeHash)>,
    /// Keys being fetched, and from which link.
    fetching: FastMap<Key, LinkId>,
    in_flight_bytes: u64,
    next_purge: Millis,
    /// The earliest time an answer a link awaits can go stale (a purge finds it).
    answer_due: Option<Millis>,
    redeliver: Redeliver,
    /// Round-robin position among links.
    rr_after: Option<LinkId>,
    /// A record's metadata, reused by reconciliation scans (its holder list's
    /// allocation survives from one record to the next).
    info_scratch: Option<Box<ferry_storage::RecordInfo>>,
    /// Optional work stopped early (output cap or per-call budget).
    deferred: bool,
    /// When the earliest bundle held for a shared medium may go (see
    /// `transfer::patience`).
    medium_hold_until: Option<Millis>,
    seal_counter: u64,
    /// The policy's saved state was looked for (see [`EngineConfig::persist_routing`]).
    routing_restored: bool,
    /// Removes, routing edits and seen marks waiting for the next commit.
    writes: writes::Writes,
    stats: EngineStats,
}

impl<S: CustodyStore> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.keyring.node_id())
            .field("policy", &self.policy.name())
            .field("links", &self.links.len())
            .field("pending", &self.pending.len())
            .field("queued_writes", &self.writes.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl<S: CustodyStore> Engine<S> {
    /// An engine over `store` for the node of `keyring`. Bundles left delivered but
    /// unacknowledged in the store by an earlier run are delivered again, a page at a
    /// time, from the first `handle_timeout` on.
    pub fn new(store: Arc<S>, keyring: Arc<Keyring>, config: EngineConfig, now: Millis) -> Self {
        let own_hash = keyring.node_id().hash();
        let policy = config.policy.build(own_hash);
        Self {
            store,
            keyring,
            own_hash,
            policy,
            now,
            wall: None,
            links: BTreeMap::new(),
            carriers: BTreeMap::new(),
            peer_links: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_transfer: 1,
            pending: Vec::new(),
            pending_live: 0,
            pending_ids: FastSet::default(),
            pending_bytes: 0,
            pending_since: None,
            receipts: BTreeMap::new(),
            receipts_since: None,
            delivered_heads: FastMap::default(),
            sequences: 0..0,
            aging: AgeTable::default(),
            reserved: FastMap::default(),
            outgoing: FastSet::default(),
            fetching: FastMap::default(),
            in_flight_bytes: 0,
            next_purge: now,
            answer_due: None,
            redeliver: Redeliver::start(),
            rr_after: None,
            deferred: false,
            info_scratch: None,
            medium_hold_until: None,
            seal_counter: 0,
            routing_restored: false,
            writes: writes::Writes::default(),
            stats: EngineStats::default(),
            config,
        }
    }

    /// Feeds one event. Drain [`Engine::poll_output`] afterwards.
    pub fn handle_input(
        &mut self,
        now: Millis,
        wall: Option<DtnTime>,
        input: Input,
    ) -> Result<(), EngineError> {
        self.set_time(now, wall);
        self.restore_routing()?;
        match input {
            Input::ContactUp { link, peer, caps } => self.contact_up(link, peer, caps)?,
            Input::ContactDown { link } => {
                if !self.carrier_down(link) {
                    self.contact_down(link)
                }
            }
            Input::Frame { link, bytes } => self.on_frame(link, &bytes)?,
            Input::Received {
                link,
                transfer: _,
                bundle,
            } => self.on_received(link, bundle)?,
            Input::Submit { bundle } => self.on_submit(bundle)?,
            Input::TransferDone { link, transfer } => {
                if !self.carrier_transfer_done(link, transfer) {
                    self.on_transfer_done(link, transfer)
                }
            }
            Input::TransferFailed { link, transfer } => {
                if !self.carrier_transfer_failed(link, transfer) {
                    self.on_transfer_failed(link, transfer)
                }
            }
            Input::AppAck { id } => self.on_app_ack(&id)?,
            Input::CarrierUp {
                link,
                carrier,
                caps,
                reach,
            } => self.carrier_up(link, carrier, caps, reach),
            Input::Holders { peer, ids } => self.on_holders(peer, &ids)?,
            Input::Carried {
                link,
                bundle,
                copies,
            } => self.on_carried(link, bundle, copies)?,
            Input::CarrierExport { link } => self.carrier_export(link),
        }
        if !self.carriers.is_empty() {
            self.next_purge = self.next_purge.min(self.now + self.config.purge_interval);
        }
        if let Some(due) = self.answer_due {
            // Answer timeouts are checked at a purge.
            self.next_purge = self.next_purge.min(due.max(self.now));
        }
        self.service()
    }

    /// Runs what is due at `now`: commits, receipts, expiry, deferred work. Call it
    /// when [`Engine::poll_timeout`]'s time has come (calling it early is harmless).
    pub fn handle_timeout(
        &mut self,
        now: Millis,
        wall: Option<DtnTime>,
    ) -> Result<(), EngineError> {
        self.set_time(now, wall);
        self.restore_routing()?;
        let delay = self.config.commit_delay;
        let due = |since: Option<Millis>| since.is_some_and(|t| now >= t + delay);
        if due(self.receipts_since) {
            self.flush_receipts()?;
        }
        let pending_due = self
            .pending_since
            .is_some_and(|t| now >= t + self.pending_delay());
        if pending_due || due(self.writes.since()) {
            self.flush()?;
        }
        if now >= self.next_purge {
            self.purge()?;
        }
        self.redeliver_step()?;
        self.service()
    }

    /// The driver has no other input queued: commits what live links and apps left
    /// in the commit buffer (with the queued writes) now instead of at the commit
    /// delay (a drive's bulk load keeps its own batching). A driver that calls this
    /// whenever its input queue runs dry gets group commits whose size follows the
    /// load: one bundle at light load (no commit delay), large batches under a
    /// flood (few fsyncs), with [`EngineConfig::commit_batch`] as the upper bound.
    pub fn handle_idle(&mut self, now: Millis, wall: Option<DtnTime>) -> Result<(), EngineError> {
        self.set_time(now, wall);
        self.restore_routing()?;
        if self.pending_live == 0 {
            // Nothing waits for a commit that an ack hangs on: queued writes keep
            // their delay, and no extra pass over the links is made (an idle pass
            // re-ran link work that small-MTU links pay for in airtime).
            return Ok(());
        }
        self.flush()?;
        self.service()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should run next (`None`: only on input).
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut at = |x: Millis| t = Some(t.map_or(x, |y| y.min(x)));
        if self.deferred || !self.redeliver.done() {
            at(self.now);
        }
        if let Some(s) = self.pending_since {
            at(s + self.pending_delay());
        }
        if let Some(s) = self.receipts_since {
            at(s + self.config.commit_delay);
        }
        if let Some(s) = self.writes.since() {
            at(s + self.config.commit_delay);
        }
        at(self.next_purge);
        if let Some(u) = self.medium_hold_until {
            if u > self.now {
                at(u);
            }
        }
        for l in self.links.values() {
            if let Some(u) = l.quiet_until {
                if u > self.now {
                    at(u);
                }
            }
            if let Some(p) = l.prompt_at {
                at(p.max(self.now));
            }
        }
        t
    }

    /// Reserves the next never-used sequence number for a bundle sealed here
    /// (blocks of [`SEQUENCE_BLOCK`] are reserved durably in the store).
    pub fn next_sequence(&mut self) -> Result<u64, EngineError> {
        if self.sequences.is_empty() {
            self.sequences = self.store.reserve_sequence(SEQUENCE_BLOCK)?;
        }
        let s = self.sequences.start;
        self.sequences.start += 1;
        Ok(s)
    }

    /// The custody store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// This node's keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The routing policy (e.g. to read PRoPHET's table in a status page).
    pub fn policy(&self) -> &dyn RoutingPolicy {
        self.policy.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Links up now, ascending.
    pub fn links(&self) -> impl Iterator<Item = (LinkId, NodeId)> + '_ {
        self.links.iter().map(|(id, l)| (*id, l.peer))
    }

    fn set_time(&mut self, now: Millis, wall: Option<DtnTime>) {
        // A monotonic clock never goes back; a driver bug must not make it.
        self.now = self.now.max(now);
        self.wall = wall;
    }

    fn wall_secs(&self) -> Option<u64> {
        self.wall.map(|w| u64::from(w.0))
    }

    fn emit(&mut self, o: Output) {
        if let Output::Removed { id, .. } = &o {
            if !self.delivered_heads.is_empty() {
                self.delivered_heads.remove(id);
            }
        }
        self.outputs.push_back(o);
    }

    fn send_frame(&mut self, link: LinkId, frame: &Frame) {
        let bytes = frame.encode();
        self.stats.frame_bytes_sent += bytes.len() as u64;
        if matches!(frame, Frame::ReconRequest(_) | Frame::ReconReply(_)) {
            self.stats.recon_bytes_sent += bytes.len() as u64;
        }
        self.emit(Output::SendFrame { link, bytes });
    }

    fn room(&self) -> bool {
        self.outputs.len() < OUTPUT_SOFT_CAP
    }

    /// Work that follows every event: reconciliation and offers, transmissions.
    fn service(&mut self) -> Result<(), EngineError> {
        self.deferred = false;
        let at_once = self.config.commit_delay == Millis(0)
            && (self.pending_live > 0 || self.writes.len() > 0);
        if at_once || self.pending_full() || self.writes.len() >= MAX_QUEUED_WRITES {
            self.flush()?;
        }
        self.drive_links()?;
        self.pump_sends()?;
        self.drive_carriers()?;
        if self.config.commit_delay == Millis(0) && self.writes.len() > 0 {
            self.flush_writes()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>() {}

    /// A bundle from `from` to node `to`, created at `created`, living an hour.
    fn sealed(from: &Keyring, to: NodeId, sequence: u64, created: Option<DtnTime>) -> Bundle {
        use ferry_core::{PayloadKind, Priority, Recipient, SealParams};
        let params = SealParams {
            recipient: Recipient::Node {
                id: to,
                endpoint: None,
            },
            realm: "valley".into(),
            created,
            sequence,
            lifetime: 3600,
            priority: Priority::Normal,
            hop_limit: 8,
            kind: PayloadKind::AppData,
            ephemeral: false,
            fragment: None,
        };
        from.seal(&params, b"now", &mut ferry_core::rand_core::OsRng)
            .unwrap()
    }

    #[test]
    fn engines_move_between_threads() {
        send::<Engine<ferry_storage::MemStore>>();
        send::<Engine<ferry_storage::LmdbStore>>();
    }

    #[test]
    fn a_zero_commit_delay_commits_within_the_input() {
        use ferry_core::Realm;
        let realm = Realm::new("valley", [7; 32]).unwrap();
        let node = |seed| {
            Arc::new(Keyring::new(
                ferry_core::Identity::from_seed([seed; 32]),
                vec![realm.clone()],
            ))
        };
        let (ka, kb) = (node(1), node(2));
        let wall = Some(DtnTime(800_000_000));
        for (delay, at_once) in [(Millis(0), true), (Millis(5), false)] {
            let store = Arc::new(ferry_storage::MemStore::default());
            let config = EngineConfig {
                commit_delay: delay,
                ..EngineConfig::default()
            };
            let mut a = Engine::new(store.clone(), ka.clone(), config, Millis(0));
            let bundle = sealed(&ka, kb.node_id(), a.next_sequence().unwrap(), wall);
            let id = bundle.id();
            a.handle_input(Millis(10), wall, Input::Submit { bundle })
                .unwrap();
            let stored = std::iter::from_fn(|| a.poll_output())
                .any(|o| matches!(o, Output::Stored { id: s, .. } if s == id));
            assert_eq!(stored, at_once, "delay {delay:?}");
            assert_eq!(store.contains(&id).unwrap(), at_once, "delay {delay:?}");
            // A driver with nothing else queued commits at once, before the delay.
            a.handle_idle(Millis(11), wall).unwrap();
            let stored = std::iter::from_fn(|| a.poll_output())
                .any(|o| matches!(o, Output::Stored { id: s, .. } if s == id));
            assert_eq!(stored, !at_once, "idle, delay {delay:?}");
            assert!(store.contains(&id).unwrap());
            // Idle again with nothing buffered: no commit.
            let commits = a.stats().commits;
            a.handle_idle(Millis(12), wall).unwrap();
            assert_eq!(a.stats().commits, commits);
        }
    }

    /// The receipt for an acknowledged delivery is the same whether the bundle's
    /// head was kept since its delivery or is read back from the store (as after
    /// more than `MAX_DELIVERED_HEADS` deliveries).
    #[test]
    fn an_ack_builds_the_same_receipt_with_or_without_the_kept_head() {
        use ferry_core::Realm;
        let realm = Realm::new("valley", [7; 32]).unwrap();
        let k = Arc::new(Keyring::new(
            ferry_core::Identity::from_seed([3; 32]),
            vec![realm],
        ));
        let wall = Some(DtnTime(800_000_000));
        let mut lifetimes = Vec::new();
        for forget in [false, true] {
            let store = Arc::new(ferry_storage::MemStore::default());
            let config = EngineConfig {
                commit_delay: Millis(0),
                ..EngineConfig::default()
            };
            let mut e = Engine::new(store.clone(), k.clone(), config, Millis(0));
            let bundle = sealed(&k, k.node_id(), e.next_sequence().unwrap(), wall);
            let id = bundle.id();
            e.handle_input(Millis(10), wall, Input::Submit { bundle })
                .unwrap();
            let delivered = std::iter::from_fn(|| e.poll_output())
                .any(|o| matches!(o, Output::Deliver { id: d, .. } if d == id));
            assert!(delivered);
            assert_eq!(e.delivered_heads.len(), 1);
            if forget {
                e.delivered_heads.clear();
            }
            let later = Some(DtnTime(800_000_600));
            e.handle_input(Millis(20), later, Input::AppAck { id })
                .unwrap();
            e.flush_receipts().unwrap();
            e.handle_idle(Millis(21), later).unwrap();
            let receipt = std::iter::from_fn(|| e.poll_output())
                .find_map(|o| match o {
                    Output::ReceiptEmitted { receipt, ids } if ids == vec![id] => Some(receipt),
                    _ => None,
                })
                .expect("a receipt");
            let rec = store.get(&receipt).unwrap().expect("stored receipt");
            let b = Bundle::decode(&rec.bytes, k.limits()).unwrap();
            lifetimes.push(b.header().lifetime);
            assert!(e.delivered_heads.is_empty());
        }
        // 3,600 s from creation, acknowledged 600 s later.
        assert_eq!(lifetimes, vec![3000, 3000]);
    }

    #[test]
    fn next_sequence_reserves_blocks() {
        let store = Arc::new(ferry_storage::MemStore::default());
        let k = Arc::new(Keyring::new(
            ferry_core::Identity::from_seed([1; 32]),
            vec![],
        ));
        let mut e = Engine::new(store.clone(), k, EngineConfig::default(), Millis(0));
        let first: Vec<u64> = (0..SEQUENCE_BLOCK + 1)
            .map(|_| e.next_sequence().unwrap())
            .collect();
        assert_eq!(first[0], 1);
        assert_eq!(first[SEQUENCE_BLOCK as usize], SEQUENCE_BLOCK + 1);
        // Two blocks were reserved durably: a restart continues after them.
        assert_eq!(
            store.reserve_sequence(1).unwrap().start,
            2 * SEQUENCE_BLOCK + 1
        );
    }
}
