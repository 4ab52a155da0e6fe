//! The discrete-event loop: one real [`Engine`] per node, modelled links, virtual
//! time.
//!
//! # Time
//!
//! The loop keeps time in microseconds (so that short frames on fast links do not
//! each round up to a millisecond); engines see it as [`Millis`] (rounded down) and
//! as a wall clock `T0 + ⌊t / 1 s⌋` ([`T0`] fixed), so bundles expire by their
//! lifetime. Events at the same instant run in a fixed order: scheduled events
//! (arrivals, timers) in the order they were scheduled, then message creations,
//! then contact events in trace order. After every input the node's outputs are
//! drained (str0m's contract) and its `poll_timeout` is kept in the queue (only the
//! latest per node counts).
//!
//! # Links
//!
//! A trace contact `up` gives both engines [`Input::ContactUp`] with [`LinkCaps`]
//! built from the [`LinkModel`]; `down` gives both [`Input::ContactDown`]. Each
//! direction of a contact has a *frame lane*: control frames go out one after the
//! other, each taking `len / bitrate` (times the attempts a lossy link needs),
//! and arrive `latency` later. Bundles go through a *transmitter*: one per direction,
//! or one per node over all its links when `one_transfer_per_node` is set (The
//! ONE's model). A transmitter sends the bundles it was handed in order, one at a
//! time, each taking `modelled size / bitrate` per attempt plus `latency`; at the end
//! the receiver gets [`Input::Received`] (decoded, expiry checked; signatures are not
//! re-verified) and the sender [`Input::TransferDone`]. Frames do not wait for
//! bundles (a separate stream, as over QUIC) but share the duty cycle: after sending
//! for `t`, a node with duty cycle `d` stays silent for `t·(1/d − 1)`. A contact that
//! goes down loses what is still under way on it; the sender's engine gets
//! `ContactDown` and then `TransferFailed` for each lost transfer.
//!
//! # Apps
//!
//! A message event makes its source seal a real bundle (the message index as an
//! 8-byte payload; its modelled size is recorded in [`Sizes`]) and submit it. Each
//! delivery ([`Output::Deliver`]) is acknowledged at once ([`Input::AppAck`]), so
//! receipts flow as real bundles.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_core::{
    Bundle, BundleId, DtnTime, Identity, Keyring, Limits, NodeId, PayloadKind, Priority, Realm,
    Recipient, SealParams,
};
use ferry_router::engine::{
    Engine, EngineConfig, EngineError, Input, Millis, Output, PolicyConfig, RemoveReason,
};
use ferry_storage::mem::IdHash;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::model::{BufferPolicy, ContactEvent, LinkModel, MessageEvent, NodeIndex, SimMillis};
use crate::report::{Bytes, OccupancySample, Report};
use crate::scenario::Scenario;
use crate::store::{SimStore, Sizes};

/// The wall clock (DTN seconds) at simulated time zero.
pub const T0: u32 = 800_000_000;

/// The realm every simulated node belongs to.
pub const REALM: &str = "sim";

/// Transmission attempts of one frame or bundle on a lossy link before the loop
/// stops drawing (the link then counts it as sent after that many).
const MAX_ATTEMPTS: u32 = 10_000;

/// Events handled at one instant before the run is declared stuck.
const MAX_EVENTS_PER_INSTANT: u64 = 50_000_000;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The scenario has no nodes.
    #[error("the scenario has no nodes")]
    NoNodes,
    /// The link model's bitrate is zero.
    #[error("link bitrate must be at least 1 byte/s")]
    ZeroBitrate,
    /// The loss probability is not in `[0, 1)`.
    #[error("link loss must be in [0, 1), got {0}")]
    BadLoss(f64),
    /// The duty cycle is not in `(0, 1]`.
    #[error("duty cycle must be in (0, 1], got {0}")]
    BadDutyCycle(f64),
    /// A contact event names a node outside `0..nodes`, or the same node twice.
    #[error("contact event at {time} ms between {a} and {b}: nodes are 0..{nodes} and distinct")]
    BadContact {
        /// When.
        time: SimMillis,
        /// One end.
        a: NodeIndex,
        /// The other end.
        b: NodeIndex,
        /// Nodes in the scenario.
        nodes: u32,
    },
    /// A message names a node outside `0..nodes`, or is from a node to itself.
    #[error("message {id}: from {from} to {to}: nodes are 0..{nodes} and distinct")]
    BadMessage {
        /// The message.
        id: String,
        /// Source.
        from: NodeIndex,
        /// Destination.
        to: NodeIndex,
        /// Nodes in the scenario.
        nodes: u32,
    },
    /// The lifetime is zero.
    #[error("bundle lifetime must be at least one second")]
    ZeroLifetime,
    /// Making the realm failed.
    #[error("realm: {0}")]
    Realm(#[from] ferry_core::RealmError),
    /// Reserving a message's sequence number failed.
    #[error("node {node}: reserving a sequence number: {source}")]
    Sequence {
        /// The message's source.
        node: NodeIndex,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// The sealing thread stopped before sealing every message.
    #[error("the sealing thread stopped early")]
    SealThread,
    /// Sealing a message failed.
    #[error("sealing message {id}: {source}")]
    Seal {
        /// The message.
        id: String,
        /// Why.
        #[source]
        source: ferry_core::SealError,
    },
    /// An engine kept asking to run at the same instant.
    #[error(
        "no progress at {time_ms} ms: more than {MAX_EVENTS_PER_INSTANT} events at one instant"
    )]
    Stuck {
        /// Simulated time.
        time_ms: SimMillis,
    },
}

/// A run's live counters.
#[derive(Debug, Default)]
struct Counters {
    relayed: u64,
    bytes: Bytes,
    refused: u64,
    expired: u64,
    removed_receipt: u64,
    removed_handed_over: u64,
    receipts_emitted: u64,
    receipts_confirmed: u64,
    transfers_cut: u64,
    transfers_failed: u64,
    links_closed: u64,
    rejected_on_arrival: u64,
    engine_errors: u64,
    first_engine_error: Option<String>,
    events: u64,
    duplicate_ups: u64,
}

#[derive(Debug)]
struct MsgRec {
    /// Index in the caller's `messages`.
    index: u32,
    to: NodeIndex,
    created_us: u64,
    delivered_us: Option<u64>,
    /// Hop count of the copy that last reached the destination.
    arrival_hops: u8,
    hops: u8,
}

#[derive(Debug)]
struct Job {
    seq: u64,
    contact: u64,
    side: u8,
    transfer: TransferId,
    bytes: Vec<u8>,
    size: u64,
    message: Option<u32>,
}

#[derive(Debug, Default)]
struct Tx {
    queue: VecDeque<Job>,
    current: Option<Job>,
}

#[derive(Debug)]
struct NodeState {
    engine: Engine<SimStore>,
    store: Arc<SimStore>,
    keyring: Arc<Keyring>,
    id: NodeId,
    /// The timeout in the queue (ms).
    timer: Option<u64>,
    /// No transmission before this (µs; duty cycle).
    silent_until: u64,
    /// The node's bundle transmitter when one transfer per node.
    tx: Tx,
}

/// Sealed messages the sealing thread may be ahead of the event loop.
const SEAL_AHEAD: usize = 4096;
/// Sealed messages per hand-over between the threads (one wake-up per batch, not
/// per message).
const SEAL_BATCH: usize = 64;

/// A batch of sealed messages, in message order.
type SealedBatch = Vec<Result<Bundle, RunError>>;

/// One message for the sealing thread.
struct SealJob {
    id: String,
    from: Arc<Keyring>,
    to: Arc<Keyring>,
    params: Result<SealParams, RunError>,
    payload: [u8; 8],
}

/// Seals the messages in order (pair mode draws no randomness, so the bundles are
/// the ones the loop would seal itself) and warms each destination's pair-secret
/// cache for opening it: the key agreements, the costliest part of a message's
/// life in the simulator, run on a second core, ahead of the loop.
fn seal_ahead(jobs: Vec<SealJob>, tx: &SyncSender<SealedBatch>) {
    let mut no_rng = NoRandomness;
    let mut batch = Vec::with_capacity(SEAL_BATCH);
    for job in jobs {
        let sealed = job.params.and_then(|params| {
            let b = job
                .from
                .seal(&params, &job.payload, &mut no_rng)
                .map_err(|source| RunError::Seal {
                    id: job.id.clone(),
                    source,
                })?;
            job.to.prepare_pair(&job.from.node_id());
            Ok(b)
        });
        batch.push(sealed);
        if batch.len() == SEAL_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(SEAL_BATCH));
            if tx.send(full).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

/// The RNG given to [`Keyring::seal`] for pair-mode bundles, which draw none; a
/// draw would be a bug, so it panics rather than hand out bytes.
struct NoRandomness;

impl RngCore for NoRandomness {
    fn next_u32(&mut self) -> u32 {
        unreachable!("pair-mode sealing draws no randomness")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("pair-mode sealing draws no randomness")
    }
    fn fill_bytes(&mut self, _: &mut [u8]) {
        unreachable!("pair-mode sealing draws no randomness")
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        unreachable!("pair-mode sealing draws no randomness")
    }
}

impl rand_chacha::rand_core::CryptoRng for NoRandomness {}

/// Whole simulated seconds at `us`, as an offset from [`T0`].
fn wall_secs(us: u64) -> u32 {
    (us / 1_000_000).min(u64::from(u32::MAX - T0)) as u32
}

#[derive(Debug)]
struct Contact {
    nodes: [NodeIndex; 2],
    /// When each direction's frame lane is free (µs).
    frame_free: [u64; 2],
    /// Per-direction transmitters (unused when one transfer per node).
    tx: [Tx; 2],
}

#[derive(Debug)]
enum EvKind {
    Timer {
        node: NodeIndex,
        at_ms: u64,
    },
    Frame {
        contact: u64,
        to: u8,
        bytes: Vec<u8>,
    },
    Bundle {
        contact: u64,
        side: u8,
        job: u64,
    },
}

#[derive(Debug)]
struct Ev {
    at: u64,
    seq: u64,
    kind: EvKind,
}

impl PartialEq for Ev {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ev {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap; the earliest (then first scheduled)
        // event must come out first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Debug, Clone, Copy)]
enum TxKey {
    Node(NodeIndex),
    Dir(u64, u8),
}

fn link_of(contact: u64, side: u8) -> LinkId {
    LinkId(contact * 2 + u64::from(side))
}

fn split_link(link: LinkId) -> (u64, u8) {
    (link.0 / 2, (link.0 % 2) as u8)
}

/// A short label for a policy (`spray-and-wait:8`).
pub fn policy_label(policy: &PolicyConfig) -> String {
    match policy {
        PolicyConfig::Epidemic => "epidemic".into(),
        PolicyConfig::SprayAndWait { copies } => format!("spray-and-wait:{copies}"),
        PolicyConfig::Prophet(_) => "prophet".into(),
        PolicyConfig::Direct => "direct".into(),
        PolicyConfig::Static { .. } => "static".into(),
        #[allow(unreachable_patterns)]
        _ => "other".into(),
    }
}

/// Keys for `nodes` nodes derived from `seed` (node `i` gets the `i`-th 32 bytes of
/// a ChaCha20 stream).
fn identities(seed: u64, nodes: u32) -> Vec<Identity> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6665_7272_792d_6b65);
    (0..nodes)
        .map(|_| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            Identity::from_seed(s)
        })
        .collect()
}

struct LinkParams {
    bitrate: u64,
    latency_us: u64,
    loss: f64,
    duty: Option<f64>,
    one_per_node: bool,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    link: LinkParams,
    caps: LinkCaps,
    limits: Limits,
    now_us: u64,
    nodes: Vec<NodeState>,
    // The simulator's own numbers and ids as keys: hashed with the stores' cheap
    // hasher, not SipHash (Sim::after looks a contact up for every event).
    contacts: HashMap<u64, Contact, IdHash>,
    pairs: HashMap<(NodeIndex, NodeIndex), u64, IdHash>,
    next_contact: u64,
    heap: BinaryHeap<Ev>,
    seq: u64,
    job_seq: u64,
    immediate: VecDeque<(NodeIndex, Input)>,
    rng: ChaCha20Rng,
    sizes: Arc<Sizes>,
    msgs: Vec<MsgRec>,
    by_id: HashMap<BundleId, u32, IdHash>,
    c: Counters,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageOutcome {
    /// The workload's id.
    pub id: String,
    /// Creation time (ms).
    pub created_ms: SimMillis,
    /// First delivery (ms), if any.
    pub delivered_ms: Option<SimMillis>,
    /// Hops of the first delivered copy.
    pub hops: Option<u8>,
}

/// Runs `scenario` with `policy` over these contacts and messages (sorted here by
/// time, ties kept in the given order) and reports what happened.
///
/// Deterministic: the same arguments give the same [`Report`].
pub fn run(
    scenario: &Scenario,
    policy: PolicyConfig,
    contacts: &[ContactEvent],
    messages: &[MessageEvent],
) -> Result<Report, RunError> {
    run_detailed(scenario, policy, contacts, messages).map(|(r, _)| r)
}

/// [`run`], with the outcome of every message in the order of `messages`.
pub fn run_detailed(
    scenario: &Scenario,
    policy: PolicyConfig,
    contacts: &[ContactEvent],
    messages: &[MessageEvent],
) -> Result<(Report, Vec<MessageOutcome>), RunError> {
    run_observed(scenario, policy, contacts, messages, &mut |_, _| {})
}

/// [`run_detailed`], calling `progress(simulated seconds, duration in seconds)` each
/// time the simulated clock passes another hundredth of the duration (for progress
/// bars on long runs; it does not change the result).
pub fn run_observed(
    scenario: &Scenario,
    policy: PolicyConfig,
    contacts: &[ContactEvent],
    messages: &[MessageEvent],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Report, Vec<MessageOutcome>), RunError> {
    let n = scenario.nodes;
    if n == 0 {
        return Err(RunError::NoNodes);
    }
    let lm: &LinkModel = &scenario.link;
    if lm.bitrate_bytes == 0 {
        return Err(RunError::ZeroBitrate);
    }
    if !(0.0..1.0).contains(&lm.loss) {
        return Err(RunError::BadLoss(lm.loss));
    }
    if let Some(d) = lm.duty_cycle {
        if !(d > 0.0 && d <= 1.0) {
            return Err(RunError::BadDutyCycle(d));
        }
    }
    if scenario.lifetime_s == 0 {
        return Err(RunError::ZeroLifetime);
    }
    for c in contacts {
        if c.a >= n || c.b >= n || c.a == c.b {
            return Err(RunError::BadContact {
                time: c.time,
                a: c.a,
                b: c.b,
                nodes: n,
            });
        }
    }
    for m in messages {
        if m.from >= n || m.to >= n || m.from == m.to {
            return Err(RunError::BadMessage {
                id: m.id.clone(),
                from: m.from,
                to: m.to,
                nodes: n,
            });
        }
    }
    let mut contacts: Vec<ContactEvent> = contacts.to_vec();
    contacts.sort_by_key(|c| c.time);
    let mut order: Vec<u32> = (0..messages.len() as u32).collect();
    order.sort_by_key(|&i| messages[i as usize].time);

    let realm = {
        let mut secret = [0u8; 32];
        ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x7265_616c_6d00_0000).fill_bytes(&mut secret);
        Realm::new(REALM, secret)?
    };
    let sizes = Arc::new(Sizes::new());
    let config = EngineConfig {
        policy: policy.clone(),
        hop_limit: scenario.routing.hop_limit,
        deliver_payload: false,
        persist_routing: false,
        // An in-memory commit costs nothing: commit at the end of every input rather
        // than grouping for 5 ms (acks leave up to 5 ms earlier than on a real node).
        commit_delay: Millis(0),
        ..EngineConfig::default()
    };
    let mut nodes = Vec::with_capacity(n as usize);
    let quotas = scenario.buffers();
    for (i, identity) in identities(scenario.seed, n).into_iter().enumerate() {
        let quota = quotas.get(i).copied().unwrap_or(scenario.buffer.bytes);
        let store = Arc::new(
            SimStore::new(sizes.clone(), quota, scenario.buffer.policy).without_drop_log(),
        );
        let keyring = Arc::new(Keyring::new(identity, vec![realm.clone()]));
        nodes.push(NodeState {
            engine: Engine::new(store.clone(), keyring.clone(), config.clone(), Millis(0)),
            store,
            id: keyring.node_id(),
            keyring,
            timer: None,
            silent_until: 0,
            tx: Tx::default(),
        });
    }
    let caps = LinkCaps {
        mtu: lm.mtu,
        reliable: true,
        bitrate_bps: Some(lm.bitrate_bytes.saturating_mul(8)),
        duty_cycle: lm.duty_cycle,
        ..LinkCaps::ip_stream()
    };
    let mut sim = Sim {
        scenario,
        link: LinkParams {
            bitrate: lm.bitrate_bytes,
            latency_us: lm.latency_ms.saturating_mul(1000),
            loss: lm.loss,
            duty: lm.duty_cycle.filter(|d| *d < 1.0),
            one_per_node: lm.one_transfer_per_node,
        },
        caps,
        limits: Limits::default(),
        now_us: 0,
        nodes,
        contacts: HashMap::default(),
        pairs: HashMap::default(),
        next_contact: 1,
        heap: BinaryHeap::new(),
        seq: 0,
        job_seq: 0,
        immediate: VecDeque::new(),
        rng: ChaCha20Rng::seed_from_u64(scenario.seed),
        sizes,
        msgs: Vec::with_capacity(messages.len()),
        by_id: HashMap::with_capacity_and_hasher(messages.len(), IdHash::default()),
        c: Counters::default(),
    };
    for i in 0..n {
        sim.reschedule(i);
    }
    let jobs = sim.seal_jobs(messages, &order);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(SEAL_AHEAD / SEAL_BATCH);
        scope.spawn(move || seal_ahead(jobs, &tx));
        Sim::run_loop(
            sim,
            contacts,
            messages,
            &order,
            &rx,
            progress,
            policy_label(&policy),
        )
    })
}

impl Sim<'_> {
    /// The event loop, with sealed messages coming from `sealed` in message order.
    fn run_loop(
        mut sim: Self,
        contacts: Vec<ContactEvent>,
        messages: &[MessageEvent],
        order: &[u32],
        sealed: &Receiver<SealedBatch>,
        progress: &mut dyn FnMut(u64, u64),
        label: String,
    ) -> Result<(Report, Vec<MessageOutcome>), RunError> {
        let scenario = sim.scenario;
        let end_us = scenario.duration_s.saturating_mul(1_000_000);
        let interval_us = scenario
            .report
            .occupancy_interval_s
            .saturating_mul(1_000_000);
        let mut samples = Vec::new();
        let mut next_sample = 0u64;
        let (mut ci, mut mi) = (0usize, 0usize);
        let (mut instant, mut at_instant) = (u64::MAX, 0u64);
        let step_us = (end_us / 100).max(1);
        let mut next_progress = step_us;
        let mut ready: VecDeque<Result<Bundle, RunError>> = VecDeque::new();
        loop {
            let th = sim.heap.peek().map(|e| e.at);
            let tm = order
                .get(mi)
                .map(|&i| messages[i as usize].time.saturating_mul(1000));
            let tc = contacts.get(ci).map(|c| c.time.saturating_mul(1000));
            let Some(t) = [th, tm, tc].into_iter().flatten().min() else {
                break;
            };
            if t > end_us {
                break;
            }
            if t >= next_progress {
                progress(t / 1_000_000, scenario.duration_s);
                next_progress = (t / step_us + 1).saturating_mul(step_us);
            }
            while interval_us > 0 && next_sample < t {
                samples.push(sim.sample(next_sample));
                next_sample += interval_us;
            }
            if t == instant {
                at_instant += 1;
                if at_instant > MAX_EVENTS_PER_INSTANT {
                    return Err(RunError::Stuck { time_ms: t / 1000 });
                }
            } else {
                (instant, at_instant) = (t, 0);
            }
            sim.now_us = sim.now_us.max(t);
            sim.c.events += 1;
            if th == Some(t) {
                if let Some(ev) = sim.heap.pop() {
                    sim.on_event(ev);
                }
            } else if tm == Some(t) {
                let i = order[mi];
                mi += 1;
                if ready.is_empty() {
                    ready = sealed.recv().map_err(|_| RunError::SealThread)?.into();
                }
                let bundle = ready.pop_front().ok_or(RunError::SealThread)?;
                sim.create(i, &messages[i as usize], bundle)?;
            } else {
                let c = contacts[ci];
                ci += 1;
                if c.up {
                    sim.contact_up(c.a, c.b);
                } else {
                    sim.contact_down(c.a, c.b);
                }
            }
            sim.pump();
        }
        while interval_us > 0 && next_sample <= end_us {
            samples.push(sim.sample(next_sample));
            next_sample += interval_us;
        }
        let mut outcomes: Vec<Option<MessageOutcome>> = vec![None; messages.len()];
        for rec in &sim.msgs {
            if let Some(slot) = outcomes.get_mut(rec.index as usize) {
                *slot = Some(MessageOutcome {
                    id: messages[rec.index as usize].id.clone(),
                    created_ms: rec.created_us / 1000,
                    delivered_ms: rec.delivered_us.map(|d| d / 1000),
                    hops: rec.delivered_us.map(|_| rec.hops),
                });
            }
        }
        let outcomes = outcomes
            .into_iter()
            .zip(messages)
            .map(|(o, m)| {
                o.unwrap_or_else(|| MessageOutcome {
                    id: m.id.clone(),
                    created_ms: m.time,
                    delivered_ms: None,
                    hops: None,
                })
            })
            .collect();
        Ok((sim.report(label, samples), outcomes))
    }

    fn wall(&self) -> Option<DtnTime> {
        Some(DtnTime(T0 + wall_secs(self.now_us)))
    }

    fn push(&mut self, at: u64, kind: EvKind) {
        self.seq += 1;
        self.heap.push(Ev {
            at,
            seq: self.seq,
            kind,
        });
    }

    /// Runs the inputs that follow at the same instant (acks, contact inputs).
    fn pump(&mut self) {
        while let Some((n, input)) = self.immediate.pop_front() {
            self.feed(n, input);
        }
    }

    fn note_error(&mut self, node: NodeIndex, e: EngineError) {
        self.c.engine_errors += 1;
        if self.c.first_engine_error.is_none() {
            self.c.first_engine_error =
                Some(format!("node {node} at {} ms: {e}", self.now_us / 1000));
        }
    }

    fn feed(&mut self, n: NodeIndex, input: Input) {
        let (now, wall) = (Millis(self.now_us / 1000), self.wall());
        if let Err(e) = self.nodes[n as usize].engine.handle_input(now, wall, input) {
            self.note_error(n, e);
        }
        self.after(n);
    }

    /// Drains a node's outputs and keeps its timeout in the queue.
    fn after(&mut self, n: NodeIndex) {
        while let Some(out) = self.nodes[n as usize].engine.poll_output() {
            self.on_output(n, out);
        }
        // Drops are counted from the stores' totals at the end (runs keep no drop log).
        self.reschedule(n);
    }

    fn reschedule(&mut self, n: NodeIndex) {
        let node = &mut self.nodes[n as usize];
        let t = node.engine.poll_timeout().map(|m| m.0);
        if t != node.timer {
            node.timer = t;
            if let Some(ms) = t {
                let at = ms.saturating_mul(1000).max(self.now_us);
                self.push(at, EvKind::Timer { node: n, at_ms: ms });
            }
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev.kind {
            EvKind::Timer { node, at_ms } => {
                if self.nodes[node as usize].timer != Some(at_ms) {
                    return;
                }
                self.nodes[node as usize].timer = None;
                let (now, wall) = (Millis(self.now_us / 1000), self.wall());
                if let Err(e) = self.nodes[node as usize].engine.handle_timeout(now, wall) {
                    self.note_error(node, e);
                }
                self.after(node);
            }
            EvKind::Frame { contact, to, bytes } => {
                let Some(c) = self.contacts.get(&contact) else {
                    return;
                };
                let n = c.nodes[to as usize];
                self.feed(
                    n,
                    Input::Frame {
                        link: link_of(contact, to),
                        bytes,
                    },
                );
            }
            EvKind::Bundle { contact, side, job } => self.bundle_arrived(contact, side, job),
        }
    }

    fn create(
        &mut self,
        index: u32,
        m: &MessageEvent,
        sealed: Result<Bundle, RunError>,
    ) -> Result<(), RunError> {
        let bundle = match sealed {
            Ok(b) => b,
            Err(RunError::Sequence { node, source }) => {
                self.note_error(node, source);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let id = bundle.id();
        self.sizes.set(id, m.size);
        self.by_id.insert(id, self.msgs.len() as u32);
        self.msgs.push(MsgRec {
            index,
            to: m.to,
            created_us: self.now_us,
            delivered_us: None,
            arrival_hops: 0,
            hops: 0,
        });
        self.feed(m.from, Input::Submit { bundle });
        Ok(())
    }

    /// What the sealing thread needs for every message, in message order. Each
    /// message's sequence number is reserved here, before the run (receipts get
    /// the numbers after them), so that sealing does not depend on the run.
    fn seal_jobs(&mut self, messages: &[MessageEvent], order: &[u32]) -> Vec<SealJob> {
        order
            .iter()
            .map(|&i| {
                let m = &messages[i as usize];
                let (from, to) = (m.from as usize, m.to as usize);
                let sequence =
                    self.nodes[from]
                        .engine
                        .next_sequence()
                        .map_err(|source| RunError::Sequence {
                            node: m.from,
                            source,
                        });
                SealJob {
                    id: m.id.clone(),
                    from: self.nodes[from].keyring.clone(),
                    to: self.nodes[to].keyring.clone(),
                    params: sequence.map(|sequence| SealParams {
                        recipient: Recipient::Node {
                            id: self.nodes[to].id,
                            endpoint: None,
                        },
                        realm: REALM.into(),
                        created: Some(DtnTime(T0 + wall_secs(m.time.saturating_mul(1000)))),
                        sequence,
                        lifetime: self.scenario.lifetime_s,
                        priority: Priority::Normal,
                        hop_limit: self.scenario.routing.hop_limit,
                        kind: PayloadKind::AppData,
                        ephemeral: false,
                        fragment: None,
                    }),
                    payload: u64::from(i).to_le_bytes(),
                }
            })
            .collect()
    }

    fn contact_up(&mut self, a: NodeIndex, b: NodeIndex) {
        let key = (a.min(b), a.max(b));
        if self.pairs.contains_key(&key) {
            self.c.duplicate_ups += 1;
            return;
        }
        let id = self.next_contact;
        self.next_contact += 1;
        self.pairs.insert(key, id);
        self.contacts.insert(
            id,
            Contact {
                nodes: [key.0, key.1],
                frame_free: [0, 0],
                tx: [Tx::default(), Tx::default()],
            },
        );
        let caps = self.caps;
        for side in 0..2u8 {
            let (me, peer) = if side == 0 {
                (key.0, key.1)
            } else {
                (key.1, key.0)
            };
            self.immediate.push_back((
                me,
                Input::ContactUp {
                    link: link_of(id, side),
                    peer: self.nodes[peer as usize].id,
                    caps,
                },
            ));
        }
    }

    fn contact_down(&mut self, a: NodeIndex, b: NodeIndex) {
        let key = (a.min(b), a.max(b));
        if let Some(id) = self.pairs.remove(&key) {
            self.teardown(id);
        }
    }

    /// Ends a contact: what is under way on it is lost.
    fn teardown(&mut self, id: u64) {
        let Some(mut c) = self.contacts.remove(&id) else {
            return;
        };
        if self.pairs.get(&(c.nodes[0], c.nodes[1])) == Some(&id) {
            self.pairs.remove(&(c.nodes[0], c.nodes[1]));
        }
        let mut failed: Vec<(NodeIndex, LinkId, TransferId)> = Vec::new();
        for side in 0..2u8 {
            let n = c.nodes[side as usize];
            let link = link_of(id, side);
            let (cut, lost) = if self.link.one_per_node {
                let tx = &mut self.nodes[n as usize].tx;
                let before = tx.queue.len();
                let mut lost = Vec::new();
                tx.queue.retain(|j| {
                    if j.contact == id {
                        lost.push(j.transfer);
                        false
                    } else {
                        true
                    }
                });
                debug_assert!(tx.queue.len() + lost.len() == before);
                let cut = match tx.current.take_if(|j| j.contact == id) {
                    Some(j) => {
                        lost.push(j.transfer);
                        true
                    }
                    None => false,
                };
                if cut {
                    self.start_next(TxKey::Node(n));
                }
                (cut, lost)
            } else {
                let tx = &mut c.tx[side as usize];
                let mut lost: Vec<TransferId> = Vec::new();
                let cut = tx.current.take().map(|j| lost.push(j.transfer)).is_some();
                lost.extend(tx.queue.drain(..).map(|j| j.transfer));
                (cut, lost)
            };
            if cut {
                self.c.transfers_cut += 1;
            }
            failed.extend(lost.into_iter().map(|t| (n, link, t)));
        }
        for side in 0..2u8 {
            self.immediate.push_back((
                c.nodes[side as usize],
                Input::ContactDown {
                    link: link_of(id, side),
                },
            ));
        }
        for (n, link, transfer) in failed {
            self.c.transfers_failed += 1;
            self.immediate
                .push_back((n, Input::TransferFailed { link, transfer }));
        }
    }

    fn attempts(&mut self) -> u64 {
        let mut k = 1u64;
        if self.link.loss > 0.0 {
            while k < u64::from(MAX_ATTEMPTS) {
                let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if u >= self.link.loss {
                    break;
                }
                k += 1;
            }
        }
        k
    }

    /// Airtime of `len` bytes (µs), all attempts included.
    fn airtime(&mut self, len: u64) -> u64 {
        let one = (u128::from(len) * 1_000_000).div_ceil(u128::from(self.link.bitrate));
        let one = u64::try_from(one).unwrap_or(u64::MAX);
        one.saturating_mul(self.attempts())
    }

    /// Marks `node` as having transmitted for `dur` µs ending at `end`.
    fn used_air(&mut self, node: NodeIndex, end: u64, dur: u64) {
        if let Some(d) = self.link.duty {
            let off = (dur as f64 * (1.0 / d - 1.0)).round() as u64;
            let n = &mut self.nodes[node as usize];
            n.silent_until = n.silent_until.max(end.saturating_add(off));
        }
    }

    fn send_frame(&mut self, n: NodeIndex, link: LinkId, bytes: Vec<u8>) {
        let (id, side) = split_link(link);
        let Some(c) = self.contacts.get(&id) else {
            return;
        };
        if c.nodes[side as usize] != n {
            return;
        }
        let free = c.frame_free[side as usize];
        let start = self
            .now_us
            .max(free)
            .max(self.nodes[n as usize].silent_until);
        let dur = self.airtime(bytes.len() as u64);
        let end = start.saturating_add(dur);
        if let Some(c) = self.contacts.get_mut(&id) {
            c.frame_free[side as usize] = end;
        }
        self.used_air(n, end, dur);
        let at = end.saturating_add(self.link.latency_us);
        self.push(
            at,
            EvKind::Frame {
                contact: id,
                to: 1 - side,
                bytes,
            },
        );
    }

    fn send_bundle(
        &mut self,
        n: NodeIndex,
        link: LinkId,
        transfer: TransferId,
        bid: BundleId,
        bytes: Vec<u8>,
    ) {
        let (id, side) = split_link(link);
        let up = self
            .contacts
            .get(&id)
            .is_some_and(|c| c.nodes[side as usize] == n);
        if !up {
            self.c.transfers_failed += 1;
            self.immediate
                .push_back((n, Input::TransferFailed { link, transfer }));
            return;
        }
        let message = self.by_id.get(&bid).copied();
        let size = self.sizes.size_of(&bid, bytes.len());
        self.job_seq += 1;
        let job = Job {
            seq: self.job_seq,
            contact: id,
            side,
            transfer,
            bytes,
            size,
            message,
        };
        let key = if self.link.one_per_node {
            TxKey::Node(n)
        } else {
            TxKey::Dir(id, side)
        };
        if let Some(tx) = self.tx(key) {
            tx.queue.push_back(job);
        }
        self.start_next(key);
    }

    fn tx(&mut self, key: TxKey) -> Option<&mut Tx> {
        match key {
            TxKey::Node(n) => self.nodes.get_mut(n as usize).map(|s| &mut s.tx),
            TxKey::Dir(id, side) => self.contacts.get_mut(&id).map(|c| &mut c.tx[side as usize]),
        }
    }

    /// Starts the transmitter's next bundle if it is idle.
    fn start_next(&mut self, key: TxKey) {
        let Some(tx) = self.tx(key) else { return };
        if tx.current.is_some() {
            return;
        }
        let Some(job) = tx.queue.pop_front() else {
            return;
        };
        let Some(n) = self
            .contacts
            .get(&job.contact)
            .map(|c| c.nodes[job.side as usize])
        else {
            return;
        };
        let start = self.now_us.max(self.nodes[n as usize].silent_until);
        let dur = self.airtime(job.size);
        let end = start.saturating_add(dur);
        self.used_air(n, end, dur);
        let at = end.saturating_add(self.link.latency_us);
        let (contact, side, seq) = (job.contact, job.side, job.seq);
        if let Some(tx) = self.tx(key) {
            tx.current = Some(job);
        }
        self.push(
            at,
            EvKind::Bundle {
                contact,
                side,
                job: seq,
            },
        );
    }

    fn bundle_arrived(&mut self, contact: u64, side: u8, seq: u64) {
        let Some(c) = self.contacts.get(&contact) else {
            return;
        };
        let (from, to) = (c.nodes[side as usize], c.nodes[1 - side as usize]);
        let key = if self.link.one_per_node {
            TxKey::Node(from)
        } else {
            TxKey::Dir(contact, side)
        };
        let Some(job) = self
            .tx(key)
            .and_then(|tx| tx.current.take_if(|j| j.seq == seq))
        else {
            return;
        };
        match job.message {
            Some(_) => {
                self.c.relayed += 1;
                self.c.bytes.message_bundles += job.size;
            }
            None => self.c.bytes.receipts += job.size,
        }
        self.immediate.push_back((
            from,
            Input::TransferDone {
                link: link_of(contact, side),
                transfer: job.transfer,
            },
        ));
        let wall = self.wall();
        match Bundle::decode(&job.bytes, &self.limits) {
            Ok(bundle) if !bundle.is_expired(wall) => {
                if let Some(m) = job.message {
                    let rec = &mut self.msgs[m as usize];
                    if rec.to == to {
                        rec.arrival_hops = bundle.envelope().hop_count;
                    }
                }
                self.immediate.push_back((
                    to,
                    Input::Received {
                        link: link_of(contact, 1 - side),
                        transfer: job.transfer,
                        bundle,
                    },
                ));
            }
            _ => self.c.rejected_on_arrival += 1,
        }
        self.start_next(key);
    }

    fn on_output(&mut self, n: NodeIndex, out: Output) {
        match out {
            Output::SendFrame { link, bytes } => self.send_frame(n, link, bytes),
            Output::SendBundle {
                link,
                transfer,
                id,
                bytes,
            } => self.send_bundle(n, link, transfer, id, bytes),
            Output::CloseLink { link, .. } => {
                self.c.links_closed += 1;
                let (id, _) = split_link(link);
                if self.contacts.contains_key(&id) {
                    self.teardown(id);
                } else {
                    self.immediate.push_back((n, Input::ContactDown { link }));
                }
            }
            Output::Deliver { id, .. } => {
                if let Some(&m) = self.by_id.get(&id) {
                    let rec = &mut self.msgs[m as usize];
                    if rec.to == n && rec.delivered_us.is_none() {
                        rec.delivered_us = Some(self.now_us);
                        rec.hops = rec.arrival_hops;
                    }
                }
                self.immediate.push_back((n, Input::AppAck { id }));
            }
            Output::Delivered { .. } => self.c.receipts_confirmed += 1,
            Output::ReceiptEmitted { .. } => self.c.receipts_emitted += 1,
            Output::Refused { .. } => self.c.refused += 1,
            Output::Removed { reason, .. } => match reason {
                RemoveReason::Expired => self.c.expired += 1,
                RemoveReason::Receipt { .. } => self.c.removed_receipt += 1,
                RemoveReason::HandedOver { .. } => self.c.removed_handed_over += 1,
                _ => {}
            },
            _ => {}
        }
    }

    fn sample(&self, at_us: u64) -> OccupancySample {
        let occ: Vec<u64> = self.nodes.iter().map(|n| n.store.occupancy()).collect();
        let total: u128 = occ.iter().map(|&b| u128::from(b)).sum();
        OccupancySample {
            time_s: at_us / 1_000_000,
            mean_bytes: (total as f64) / occ.len().max(1) as f64,
            max_bytes: occ.iter().copied().max().unwrap_or(0),
        }
    }

    fn report(self, policy: String, occupancy: Vec<OccupancySample>) -> Report {
        let s = self.scenario;
        let mut latencies: Vec<u64> = Vec::new();
        let mut hops: u64 = 0;
        for m in &self.msgs {
            if let Some(d) = m.delivered_us {
                latencies.push(d.saturating_sub(m.created_us));
                hops += u64::from(m.hops);
            }
        }
        latencies.sort_unstable();
        let created = self.msgs.len() as u64;
        let delivered = latencies.len() as u64;
        let secs = |us: u64| us as f64 / 1e6;
        let (mean, median, p95) = if latencies.is_empty() {
            (None, None, None)
        } else {
            let sum: u128 = latencies.iter().map(|&l| u128::from(l)).sum();
            let len = latencies.len();
            let median = if len % 2 == 1 {
                secs(latencies[len / 2])
            } else {
                (secs(latencies[len / 2 - 1]) + secs(latencies[len / 2])) / 2.0
            };
            let p95_idx = (len * 95).div_ceil(100).saturating_sub(1);
            (
                Some(sum as f64 / len as f64 / 1e6),
                Some(median),
                Some(secs(latencies[p95_idx])),
            )
        };
        let mut bytes = self.c.bytes;
        let mut peak = 0u64;
        let mut dropped = 0u64;
        for node in &self.nodes {
            let st = node.engine.stats();
            bytes.control_frames += st.frame_bytes_sent;
            bytes.reconciliation += st.recon_bytes_sent;
            dropped += node.store.dropped_total();
            peak = peak.max(node.store.peak());
        }
        let mut notes = crate::report::standard_notes(&s.link, s.buffer.policy);
        if let Some(e) = &self.c.first_engine_error {
            notes.push(format!(
                "{} engine errors; the first: {e}",
                self.c.engine_errors
            ));
        }
        Report {
            scenario: s.name.clone(),
            policy,
            seed: s.seed,
            nodes: s.nodes,
            duration_s: s.duration_s,
            buffer_policy: match s.buffer.policy {
                BufferPolicy::Refuse => "refuse".into(),
                BufferPolicy::DropOldest => "drop-oldest".into(),
            },
            created,
            delivered,
            delivery_ratio: if created == 0 {
                0.0
            } else {
                delivered as f64 / created as f64
            },
            latency_mean_s: mean,
            latency_median_s: median,
            latency_p95_s: p95,
            overhead_ratio: (delivered > 0)
                .then(|| (self.c.relayed as f64 - delivered as f64) / delivered as f64),
            hop_count_mean: (delivered > 0).then(|| hops as f64 / delivered as f64),
            relayed: self.c.relayed,
            dropped_buffer: dropped,
            refused: self.c.refused,
            expired: self.c.expired,
            removed_by_receipt: self.c.removed_receipt,
            handed_over: self.c.removed_handed_over,
            receipts_emitted: self.c.receipts_emitted,
            receipts_confirmed: self.c.receipts_confirmed,
            transfers_cut: self.c.transfers_cut,
            transfers_failed: self.c.transfers_failed,
            rejected_on_arrival: self.c.rejected_on_arrival,
            links_closed: self.c.links_closed,
            duplicate_ups: self.c.duplicate_ups,
            engine_errors: self.c.engine_errors,
            events: self.c.events,
            bytes,
            occupancy_peak_bytes: peak,
            occupancy,
            notes,
        }
    }
}
