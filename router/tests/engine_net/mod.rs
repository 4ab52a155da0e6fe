//! A tiny deterministic network for engine tests: nodes with `MemStore`s, links that
//! move one engine's outputs to the peer's inputs, a clock that jumps to the next
//! timeout. It plays the driver: it runs `Keyring::accept` on received bytes before
//! handing bundles to the engine, reports transfers done, and acknowledges
//! deliveries like an app.
#![allow(dead_code, clippy::print_stderr)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ferry_cl_api::{LinkCaps, LinkId};
use ferry_core::{
    Bundle, BundleId, DtnTime, Identity, Keyring, NodeId, PayloadKind, Priority, Realm, Recipient,
    SealParams,
};
use ferry_router::engine::{
    Engine, EngineConfig, Input, Millis, Output, PolicyConfig, RemoveReason,
};
use ferry_storage::{CustodyStore, MemStore, StoreConfig};

pub const WALL0: u32 = 800_000_000;

pub struct Node {
    pub engine: Engine<MemStore>,
    pub store: Arc<MemStore>,
    pub keyring: Arc<Keyring>,
    pub config: EngineConfig,
    /// Payloads delivered to the app, in order.
    pub delivered: Vec<(BundleId, Vec<u8>)>,
    /// Our bundles a receipt proved delivered.
    pub confirmed: Vec<BundleId>,
    pub removed: Vec<(BundleId, RemoveReason)>,
    pub refused: Vec<BundleId>,
    pub receipts: Vec<BundleId>,
    pub closed: Vec<LinkId>,
    /// Answer deliveries with `AppAck` at once.
    pub auto_ack: bool,
    /// This node's clock is set.
    pub has_clock: bool,
    /// Frames this node sends are lost.
    pub mute: bool,
    /// Frames this node sends wait in [`Net::stalled`] until [`Net::release`].
    pub stall: bool,
}

#[derive(Debug, Clone, Copy)]
struct LinkEnd {
    node: usize,
    peer: usize,
    peer_link: LinkId,
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Millis,
    links: BTreeMap<LinkId, LinkEnd>,
    queue: VecDeque<(usize, Input)>,
    next_link: u64,
    pub caps: LinkCaps,
    /// Bundles each link carried: (from node, to node, id).
    pub carried: Vec<(usize, usize, BundleId)>,
    /// Drop bundles in transit instead of delivering them (link failure).
    pub lose_bundles: bool,
    /// The largest control frame sent.
    pub max_frame: usize,
    /// Frames of stalled nodes, not yet delivered.
    stalled: Vec<(usize, Input)>,
    /// Link ends whose node has not heard of its peer yet (see [`Net::half_up`]).
    unheard: std::collections::BTreeSet<LinkId>,
}

pub fn realm() -> Realm {
    Realm::new("valley", [7; 32]).unwrap()
}

pub fn keyring(seed: u8) -> Arc<Keyring> {
    Arc::new(Keyring::new(Identity::from_seed([seed; 32]), vec![realm()]))
}

pub fn config(policy: PolicyConfig) -> EngineConfig {
    EngineConfig {
        policy,
        ..EngineConfig::default()
    }
}

impl Net {
    /// `n` nodes with the same policy and default stores. Seeds are chosen so that
    /// node ids ascend with the index (node 0 initiates reconciliation with anyone).
    pub fn new(n: usize, policy: PolicyConfig) -> Net {
        let cfgs = (0..n).map(|_| config(policy.clone())).collect();
        Net::with(cfgs, StoreConfig::default())
    }

    pub fn with(configs: Vec<EngineConfig>, store: StoreConfig) -> Net {
        let mut keys: Vec<Arc<Keyring>> = (1..=40u8).map(keyring).collect();
        keys.sort_by_key(|k| k.node_id());
        let mut nodes = Vec::new();
        for (i, config) in configs.into_iter().enumerate() {
            let store = Arc::new(MemStore::new(store));
            let k = keys[i].clone();
            nodes.push(Node {
                engine: Engine::new(store.clone(), k.clone(), config.clone(), Millis(0)),
                store,
                keyring: k,
                config,
                delivered: Vec::new(),
                confirmed: Vec::new(),
                removed: Vec::new(),
                refused: Vec::new(),
                receipts: Vec::new(),
                closed: Vec::new(),
                auto_ack: true,
                has_clock: true,
                mute: false,
                stall: false,
            });
        }
        Net {
            nodes,
            now: Millis(0),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            next_link: 1,
            caps: LinkCaps::ip_stream(),
            carried: Vec::new(),
            lose_bundles: false,
            max_frame: 0,
            stalled: Vec::new(),
            unheard: Default::default(),
        }
    }

    pub fn id(&self, n: usize) -> NodeId {
        self.nodes[n].keyring.node_id()
    }

    pub fn wall(&self, n: usize) -> Option<DtnTime> {
        self.nodes[n]
            .has_clock
            .then(|| DtnTime(WALL0 + (self.now.0 / 1000) as u32))
    }

    /// Seals a bundle on node `from`: for node `to`, or the realm group when `None`.
    pub fn seal(
        &mut self,
        from: usize,
        to: Option<usize>,
        payload: &[u8],
        lifetime: u32,
        priority: Priority,
        hop_limit: u8,
    ) -> Bundle {
        let recipient = match to {
            Some(t) => Recipient::Node {
                id: self.id(t),
                endpoint: None,
            },
            None => Recipient::Group { endpoint: None },
        };
        let created = self.wall(from);
        let n = &mut self.nodes[from];
        let params = SealParams {
            recipient,
            realm: "valley".into(),
            created,
            sequence: n.engine.next_sequence().unwrap(),
            lifetime,
            priority,
            hop_limit,
            kind: PayloadKind::AppData,
            ephemeral: false,
            fragment: None,
        };
        n.keyring
            .seal(&params, payload, &mut ferry_core::rand_core::OsRng)
            .unwrap()
    }

    /// Submits a bundle on `from` and commits it.
    pub fn submit(&mut self, from: usize, bundle: Bundle) -> BundleId {
        let id = bundle.id();
        self.input(from, Input::Submit { bundle });
        self.run_for(10);
        id
    }

    /// Seals and submits a normal-priority bundle with a 1 h lifetime.
    pub fn send(&mut self, from: usize, to: usize, payload: &[u8]) -> BundleId {
        let b = self.seal(from, Some(to), payload, 3600, Priority::Normal, 32);
        self.submit(from, b)
    }

    pub fn input(&mut self, n: usize, input: Input) {
        self.queue.push_back((n, input));
        self.pump();
    }

    /// Brings a link up between `a` and `b`.
    pub fn up(&mut self, a: usize, b: usize) -> (LinkId, LinkId) {
        let ends = self.connect(a, b);
        self.pump();
        ends
    }

    /// Brings several links up at the same instant.
    pub fn up_all(&mut self, pairs: &[(usize, usize)]) {
        for (a, b) in pairs {
            self.connect(*a, *b);
        }
        self.pump();
    }

    fn connect(&mut self, a: usize, b: usize) -> (LinkId, LinkId) {
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        self.links.insert(
            la,
            LinkEnd {
                node: a,
                peer: b,
                peer_link: lb,
            },
        );
        self.links.insert(
            lb,
            LinkEnd {
                node: b,
                peer: a,
                peer_link: la,
            },
        );
        let (ida, idb, caps) = (self.id(a), self.id(b), self.caps);
        self.queue.push_back((
            a,
            Input::ContactUp {
                link: la,
                peer: idb,
                caps,
            },
        ));
        self.queue.push_back((
            b,
            Input::ContactUp {
                link: lb,
                peer: ida,
                caps,
            },
        ));
        (la, lb)
    }

    /// Brings a link up at `a` only: `b` missed `a`'s hello, as on a radio where two
    /// hidden neighbours' answers collided. Like the session layer, `b` drops the
    /// first frame `a` sends it and, having learnt of `a` from it, brings its end up
    /// (the session layer would also resend that frame; here it stays lost).
    pub fn half_up(&mut self, a: usize, b: usize) -> (LinkId, LinkId) {
        let (la, lb) = self.connect(a, b);
        self.queue.retain(|(n, i)| {
            !(*n == b && matches!(i, Input::ContactUp { link, .. } if *link == lb))
        });
        self.unheard.insert(lb);
        self.pump();
        (la, lb)
    }

    /// Takes down every link between `a` and `b`.
    pub fn down(&mut self, a: usize, b: usize) {
        let ends: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, e)| (e.node == a && e.peer == b) || (e.node == b && e.peer == a))
            .map(|(l, _)| *l)
            .collect();
        for l in ends {
            if let Some(e) = self.links.remove(&l) {
                self.queue
                    .push_back((e.node, Input::ContactDown { link: l }));
            }
        }
        self.pump();
    }

    fn pump(&mut self) {
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 5_000_000, "network does not settle");
            if let Some((n, input)) = self.queue.pop_front() {
                let wall = self.wall(n);
                let now = self.now;
                self.nodes[n]
                    .engine
                    .handle_input(now, wall, input)
                    .expect("engine error");
                self.drain(n);
                continue;
            }
            // Run timeouts that are due now.
            let mut any = false;
            for n in 0..self.nodes.len() {
                if self.nodes[n]
                    .engine
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    let wall = self.wall(n);
                    let now = self.now;
                    self.nodes[n]
                        .engine
                        .handle_timeout(now, wall)
                        .expect("engine error");
                    self.drain(n);
                    any = true;
                }
            }
            if !any && self.queue.is_empty() {
                return;
            }
        }
    }

    fn drain(&mut self, n: usize) {
        while let Some(out) = self.nodes[n].engine.poll_output() {
            match out {
                Output::SendFrame { link, bytes } => {
                    self.max_frame = self.max_frame.max(bytes.len());
                    if self.nodes[n].mute {
                        continue;
                    }
                    if let Some(e) = self.links.get(&link).copied() {
                        if self.unheard.remove(&e.peer_link) {
                            let (peer, caps) = (self.id(n), self.caps);
                            self.queue.push_back((
                                e.peer,
                                Input::ContactUp {
                                    link: e.peer_link,
                                    peer,
                                    caps,
                                },
                            ));
                            continue;
                        }
                        let frame = (
                            e.peer,
                            Input::Frame {
                                link: e.peer_link,
                                bytes,
                            },
                        );
                        if self.nodes[n].stall {
                            self.stalled.push(frame);
                        } else {
                            self.queue.push_back(frame);
                        }
                    }
                }
                Output::SendBundle {
                    link,
                    transfer,
                    id,
                    bytes,
                } => {
                    let Some(e) = self.links.get(&link).copied() else {
                        self.queue
                            .push_back((n, Input::TransferFailed { link, transfer }));
                        continue;
                    };
                    if self.lose_bundles {
                        self.queue
                            .push_back((n, Input::TransferFailed { link, transfer }));
                        continue;
                    }
                    self.carried.push((n, e.peer, id));
                    self.queue
                        .push_back((n, Input::TransferDone { link, transfer }));
                    // The receiving driver checks what arrives before the engine sees it.
                    let wall = self.wall(e.peer);
                    if let Ok(bundle) = self.nodes[e.peer].keyring.accept(&bytes, wall) {
                        assert_eq!(bundle.id(), id);
                        self.queue.push_back((
                            e.peer,
                            Input::Received {
                                link: e.peer_link,
                                transfer,
                                bundle,
                            },
                        ));
                    }
                }
                Output::CloseLink { link, .. } => {
                    self.nodes[n].closed.push(link);
                    if let Some(e) = self.links.remove(&link) {
                        self.links.remove(&e.peer_link);
                        self.queue.push_back((n, Input::ContactDown { link }));
                        self.queue
                            .push_back((e.peer, Input::ContactDown { link: e.peer_link }));
                    }
                }
                Output::Deliver { id, payload, .. } => {
                    self.nodes[n].delivered.push((id, payload));
                    if self.nodes[n].auto_ack {
                        self.queue.push_back((n, Input::AppAck { id }));
                    }
                }
                Output::Delivered { id, .. } => self.nodes[n].confirmed.push(id),
                Output::ReceiptEmitted { receipt, .. } => self.nodes[n].receipts.push(receipt),
                Output::Removed { id, reason } => self.nodes[n].removed.push((id, reason)),
                Output::Refused { id, .. } => self.nodes[n].refused.push(id),
                Output::Stored { .. } => {}
                // This network has no carriers (engine_carrier.rs tests them).
                Output::Imported { .. } | Output::Export { .. } | Output::CarrierIdle { .. } => {}
            }
        }
    }

    /// Delivers the frames stalled nodes sent, in order, and stops stalling them.
    pub fn release(&mut self) {
        for n in &mut self.nodes {
            n.stall = false;
        }
        self.queue.extend(self.stalled.drain(..));
        self.pump();
    }

    /// Runs the network for `ms` milliseconds of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + Millis(ms);
        loop {
            self.pump();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => {
                    self.now = end;
                    self.pump();
                    return;
                }
            }
        }
    }

    pub fn holds(&self, n: usize, id: &BundleId) -> bool {
        self.nodes[n].store.contains(id).unwrap()
    }

    pub fn delivered_count(&self, n: usize, id: &BundleId) -> usize {
        self.nodes[n]
            .delivered
            .iter()
            .filter(|(d, _)| d == id)
            .count()
    }

    pub fn copies_left(&self, n: usize, id: &BundleId) -> Option<u32> {
        self.nodes[n]
            .store
            .get_info(id)
            .unwrap()
            .map(|i| i.meta.routing.copies_left)
    }

    /// Times bundle `id` crossed from `a` to `b`.
    pub fn crossings(&self, a: usize, b: usize, id: &BundleId) -> usize {
        self.carried
            .iter()
            .filter(|(x, y, i)| *x == a && *y == b && i == id)
            .count()
    }
}
