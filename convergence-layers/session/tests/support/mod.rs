//! A virtual-time shared radio channel for driving several [`Session`]s: airtime per
//! frame, half-duplex radios with listen-before-talk, reach (who hears whom),
//! collisions at a receiver when transmissions overlap there, and seeded frame loss.
//! Used by the session tests and the goodput benchmark.
#![allow(dead_code)]

use ferry_cl_lora::{DutyBudget, RadioSettings};
use ferry_cl_session::{Config, Event, Medium, Session};
use ferry_core::{Identity, NodeId, Realm};

/// Airtime from LoRa settings (or a cable's byte time), with a duty-cycle budget.
#[derive(Debug, Clone)]
pub enum Air {
    /// A LoRa radio.
    Lora(RadioSettings),
    /// A LoRa radio under a duty-cycle budget.
    LoraBudget(RadioSettings, DutyBudget),
    /// A byte stream at this many µs per byte.
    Cable(u64),
}

impl Medium for Air {
    fn airtime_us(&self, len: usize) -> u64 {
        match self {
            Air::Lora(r) | Air::LoraBudget(r, _) => r.airtime_us(len),
            Air::Cable(per_byte) => per_byte * (len as u64 + 3),
        }
    }

    fn ready_at(&self, now_us: u64, airtime_us: u64) -> u64 {
        match self {
            Air::LoraBudget(_, b) => b.ready_at(now_us, airtime_us),
            _ => now_us,
        }
    }

    fn spend(&mut self, now_us: u64, airtime_us: u64) {
        if let Air::LoraBudget(_, b) = self {
            b.spend(now_us, airtime_us).expect("spent only when ready");
        }
    }
}

#[derive(Debug)]
struct Tx {
    src: usize,
    start: u64,
    end: u64,
    bytes: Vec<u8>,
}

/// One node on the channel.
#[derive(Debug)]
pub struct Node {
    pub session: Session<Air>,
    pub id: NodeId,
    pub events: Vec<Event>,
    queue: std::collections::VecDeque<Vec<u8>>,
    tx_end: u64,
    /// CSMA: after waiting for a busy channel, a random back-off before sending.
    backoff_until: u64,
    deferred: bool,
    pub airtime_us: u64,
    pub frames_sent: u64,
}

/// The channel.
#[derive(Debug)]
pub struct Net {
    pub nodes: Vec<Node>,
    pub hears: Vec<Vec<bool>>,
    pub loss: f64,
    pub air: Air,
    rng: u64,
    pub now: u64,
    inflight: Vec<Tx>,
    pub collisions: u64,
    pub lost: u64,
    /// Drops every frame while false (a cut cable, a radio out of range).
    pub up: bool,
}

pub fn realm() -> Realm {
    Realm::new("valley", [7; 32]).unwrap()
}

impl Net {
    /// `n` nodes that all hear each other.
    pub fn new(n: usize, air: Air, cfg: Config, loss: f64, seed: u64) -> Self {
        let realm = realm();
        let nodes = (0..n)
            .map(|i| {
                let ident = Identity::from_seed([i as u8 + 1; 32]);
                Node {
                    session: Session::new(
                        &ident,
                        &realm,
                        [i as u8; 4],
                        cfg.clone(),
                        air.clone(),
                        0,
                    ),
                    id: ident.node_id(),
                    events: Vec::new(),
                    queue: Default::default(),
                    tx_end: 0,
                    backoff_until: 0,
                    deferred: false,
                    airtime_us: 0,
                    frames_sent: 0,
                }
            })
            .collect();
        let hears = (0..n).map(|i| (0..n).map(|j| i != j).collect()).collect();
        Self {
            nodes,
            hears,
            loss,
            air,
            rng: seed.max(1),
            now: 0,
            inflight: Vec::new(),
            collisions: 0,
            lost: 0,
            up: true,
        }
    }

    /// A line: node i hears only i-1 and i+1.
    pub fn line(mut self) -> Self {
        let n = self.nodes.len();
        for i in 0..n {
            for j in 0..n {
                self.hears[i][j] = i.abs_diff(j) == 1;
            }
        }
        self
    }

    fn draw(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn busy_for(&self, i: usize, now: u64) -> Option<u64> {
        self.inflight
            .iter()
            .filter(|t| t.src != i && self.hears[t.src][i] && t.start <= now && now < t.end)
            .map(|t| t.end)
            .max()
    }

    /// Runs until `until` (µs) or until `stop` says so after an event batch.
    pub fn run_until(&mut self, until: u64, mut stop: impl FnMut(&mut Net) -> bool) -> bool {
        loop {
            // Transmit what the sessions want, radios queue and listen before talking.
            for i in 0..self.nodes.len() {
                let now = self.now;
                while let Some(f) = self.nodes[i].session.poll_transmit(now) {
                    self.nodes[i].queue.push_back(f);
                }
                if self.nodes[i].tx_end <= now && !self.nodes[i].queue.is_empty() {
                    // Listen before talk; after a busy channel, back off 0..15 slots
                    // of 2 ms at random (as RNode firmware's CSMA does), so radios that
                    // waited for the same transmission do not all start together.
                    if self.busy_for(i, now).is_some() {
                        self.nodes[i].deferred = true;
                    } else if self.nodes[i].deferred {
                        self.nodes[i].deferred = false;
                        let slots = (self.draw() * 16.0) as u64;
                        self.nodes[i].backoff_until = now + slots * 2_000;
                    }
                }
                if self.nodes[i].tx_end <= now
                    && now >= self.nodes[i].backoff_until
                    && !self.nodes[i].deferred
                {
                    if let Some(f) = self.nodes[i].queue.front() {
                        if self.busy_for(i, now).is_none() {
                            let air = self.air.airtime_us(f.len());
                            let f = self.nodes[i].queue.pop_front().unwrap();
                            self.nodes[i].tx_end = now + air;
                            self.nodes[i].airtime_us += air;
                            self.nodes[i].frames_sent += 1;
                            self.inflight.push(Tx {
                                src: i,
                                start: now,
                                end: now + air,
                                bytes: f,
                            });
                        }
                    }
                }
                let node = &mut self.nodes[i];
                while let Some(e) = node.session.poll_event() {
                    node.events.push(e);
                }
            }
            if stop(self) {
                return true;
            }
            // Next moment something happens.
            let mut next = u64::MAX;
            for t in &self.inflight {
                next = next.min(t.end);
            }
            for (i, n) in self.nodes.iter().enumerate() {
                if let Some(t) = n.session.poll_timeout() {
                    next = next.min(t.max(self.now + 1));
                }
                if !n.queue.is_empty() {
                    let free = n
                        .tx_end
                        .max(self.busy_for(i, self.now).unwrap_or(0))
                        .max(n.backoff_until);
                    next = next.min(free.max(self.now + 1));
                }
            }
            if next == u64::MAX || next > until {
                self.now = until;
                return false;
            }
            self.now = next;
            // Deliver finished transmissions.
            let (done, rest): (Vec<Tx>, Vec<Tx>) = std::mem::take(&mut self.inflight)
                .into_iter()
                .partition(|t| t.end <= self.now);
            self.inflight = rest;
            let mut all = done.iter().collect::<Vec<_>>();
            all.sort_by_key(|t| (t.end, t.src));
            for t in &all {
                for j in 0..self.nodes.len() {
                    if !self.hears[t.src][j] {
                        continue;
                    }
                    let overlaps = |o: &Tx| o.start < t.end && t.start < o.end;
                    let self_tx = done
                        .iter()
                        .chain(self.inflight.iter())
                        .any(|o| o.src == j && overlaps(o));
                    let other = done.iter().chain(self.inflight.iter()).any(|o| {
                        o.src != t.src && o.src != j && self.hears[o.src][j] && overlaps(o)
                    });
                    if self_tx || other {
                        self.collisions += 1;
                        continue;
                    }
                    if !self.up || self.draw() < self.loss {
                        self.lost += 1;
                        continue;
                    }
                    self.nodes[j].session.handle_frame(self.now, &t.bytes);
                }
            }
            let now = self.now;
            for n in &mut self.nodes {
                if n.session.poll_timeout().is_some_and(|t| t <= now) {
                    n.session.handle_timeout(now);
                }
            }
        }
    }

    /// Runs until every node has `want` neighbours up (or `until`).
    pub fn meet(&mut self, until: u64) -> bool {
        let want: Vec<usize> = (0..self.nodes.len())
            .map(|i| self.hears[i].iter().filter(|h| **h).count())
            .collect();
        self.run_until(until, |net| {
            net.nodes
                .iter()
                .enumerate()
                .all(|(i, n)| n.session.neighbors().len() == want[i])
        })
    }

    /// Received messages at node `i` (drains its events of that kind).
    pub fn received(&mut self, i: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.nodes[i].events.retain(|e| match e {
            Event::Received { bytes, .. } => {
                out.push(bytes.clone());
                false
            }
            _ => true,
        });
        out
    }
}

/// SF9 / 125 kHz / 4/5 radio.
pub fn sf9() -> RadioSettings {
    RadioSettings {
        spreading_factor: 9,
        bandwidth_hz: 125_000,
        coding_rate: 5,
        ..RadioSettings::default()
    }
}

/// A radio session config for `r`.
pub fn radio_cfg(r: &RadioSettings) -> Config {
    Config::radio(r.airtime_us(24))
}
