//! PRoPHET (RFC 6693): delivery predictabilities and the GRTR forwarding strategy.
//!
//! Each node keeps `P(self, d)` for destinations `d`:
//!
//! - **encounter** (RFC 6693 §2.1.2, eq. 1): when a contact with `B` begins, if `B`
//!   has no entry or `P(A,B) < P_first_threshold`, `P(A,B) = P_encounter_first`;
//!   otherwise `P(A,B) += (1 − δ − P(A,B)) × P_encounter`, where
//!   `P_encounter = P_encounter_max × min(1, Δt / I_typ)` and `Δt` is the time since
//!   the last encounter with `B` (`P_encounter_max` if there was none);
//! - **aging** (eq. 2): `P = P × γ^K`, `K` the whole time units elapsed since the
//!   last aging; entries that fall below `P_first_threshold` are dropped;
//! - **transitivity** (eq. 3): on receiving `B`'s predictabilities,
//!   `P(A,C) = max(P(A,C), P(A,B) × P(B,C) × β)` for every `C ≠ A, B`.
//!
//! Forwarding (GRTR, §3.6): hand a bundle for `D` to `B` if `P(B,D) > P(A,D)`; the
//! bundle is replicated (A keeps its copy). Predictabilities travel as `u16`
//! (`p × 65535`, rounded) in the `Predictability` frame.
//!
//! The table is bounded ([`ProphetParams::max_entries`]); when full, a new entry
//! replaces the lowest one if it is higher (ties: the larger node hash goes).
//!
//! Across restarts: [`Prophet::save`] writes the table and the encounter times
//! (relative to the save, with the wall clock if the node has one); the engine keeps
//! it in the store ([`super::EngineConfig::persist_routing`]) and
//! [`Prophet::restore`] applies the aging owed for the time the node was down. RFC
//! 6693 leaves persistence open; without it a field node that reboots daily would
//! forget every encounter.

use std::collections::BTreeMap;

use ferry_core::NodeHash;

use super::frame::{put_varint, Reader};
use super::policy::{Candidate, RoutingPolicy, StateError, Verdict};
use super::time::Millis;

/// PRoPHET parameters; the defaults are RFC 6693's (§3.3), with a 30 s time unit
/// and `I_typ` = 300 s.
#[derive(Debug, Clone, PartialEq)]
pub struct ProphetParams {
    /// P_encounter_max (0.7).
    pub p_encounter_max: f64,
    /// P_encounter_first (0.5).
    pub p_encounter_first: f64,
    /// P_first_threshold (0.1).
    pub p_first_threshold: f64,
    /// δ (0.01): predictabilities stay below `1 − δ`.
    pub delta: f64,
    /// β (0.9): transitivity scaling.
    pub beta: f64,
    /// γ (0.999): aging per time unit.
    pub gamma: f64,
    /// The aging time unit.
    pub time_unit: Millis,
    /// I_typ: typical interval between encounters.
    pub i_typ: Millis,
    /// Most destinations kept (and sent to a peer).
    pub max_entries: usize,
}

impl Default for ProphetParams {
    fn default() -> Self {
        Self {
            p_encounter_max: 0.7,
            p_encounter_first: 0.5,
            p_first_threshold: 0.1,
            delta: 0.01,
            beta: 0.9,
            gamma: 0.999,
            time_unit: Millis(30_000),
            i_typ: Millis(300_000),
            max_entries: 2048,
        }
    }
}

/// Converts a predictability to its wire form.
pub fn quantize(p: f64) -> u16 {
    (p.clamp(0.0, 1.0) * 65535.0).round() as u16
}

/// Converts a wire predictability back.
pub fn dequantize(q: u16) -> f64 {
    f64::from(q) / 65535.0
}

/// The PRoPHET policy.
///
/// Times are kept on the engine's clock shifted by [`Prophet::shift`] (the longer
/// of the time unit and `I_typ`), so that a table restored after a restart can
/// place an aging or an encounter that happened before the new clock's zero.
#[derive(Debug, Clone)]
pub struct Prophet {
    own: NodeHash,
    params: ProphetParams,
    table: BTreeMap<NodeHash, f64>,
    /// Shifted time of the last aging.
    last_aging: Option<u64>,
    /// Shifted time each node was last encountered (bounded like the table).
    last_encounter: BTreeMap<NodeHash, u64>,
    /// Predictabilities of the peers in contact now.
    peers: BTreeMap<NodeHash, BTreeMap<NodeHash, f64>>,
}

/// Version of the saved table ([`Prophet::save`]).
const STATE_VERSION: u8 = 1;

impl Prophet {
    /// An empty table for the node `own`.
    pub fn new(own: NodeHash, params: ProphetParams) -> Self {
        Self {
            own,
            params,
            table: BTreeMap::new(),
            last_aging: None,
            last_encounter: BTreeMap::new(),
            peers: BTreeMap::new(),
        }
    }

    /// How far internal times are ahead of the engine's clock: the longer of the
    /// time unit and `I_typ` (at most 2^40 ms, about 35 years).
    fn shift(&self) -> u64 {
        self.params
            .time_unit
            .0
            .max(self.params.i_typ.0)
            .clamp(1, 1 << 40)
    }

    fn clock(&self, now: Millis) -> u64 {
        now.0.saturating_add(self.shift())
    }

    /// `P(self, d)` (0 if unknown).
    pub fn predictability(&self, d: &NodeHash) -> f64 {
        self.table.get(d).copied().unwrap_or(0.0)
    }

    /// The table, node hashes ascending.
    pub fn table(&self) -> impl Iterator<Item = (NodeHash, f64)> + '_ {
        self.table.iter().map(|(h, p)| (*h, *p))
    }

    /// `P(peer, d)` as the peer reported it in this contact.
    pub fn peer_predictability(&self, peer: &NodeHash, d: &NodeHash) -> Option<f64> {
        self.peers
            .get(peer)
            .map(|t| t.get(d).copied().unwrap_or(0.0))
    }

    /// Applies aging up to `now` (whole time units only; the remainder carries over).
    pub fn age(&mut self, now: Millis) {
        let now = self.clock(now);
        self.age_to(now);
    }

    /// [`Prophet::age`] on the shifted clock.
    fn age_to(&mut self, now: u64) {
        let Some(last) = self.last_aging else {
            self.last_aging = Some(now);
            return;
        };
        let unit = self.params.time_unit.0.max(1);
        let k = now.saturating_sub(last) / unit;
        if k == 0 {
            return;
        }
        self.decay(k);
        self.last_aging = Some(last + k * unit);
    }

    /// Eq. 2 for `k` whole time units: `P = P × γ^k`, dropping entries that fall
    /// below `P_first_threshold`.
    fn decay(&mut self, k: u64) {
        let factor = self.params.gamma.powf(k as f64);
        let threshold = self.params.p_first_threshold;
        self.table.retain(|_, p| {
            *p *= factor;
            *p >= threshold
        });
    }

    fn set(&mut self, d: NodeHash, p: f64) {
        if d == self.own {
            return;
        }
        if self.table.len() >= self.params.max_entries && !self.table.contains_key(&d) {
            // Replace the lowest entry if the new one is higher.
            let lowest = self
                .table
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(h, q)| (*h, *q));
            match lowest {
                Some((h, q)) if q < p => {
                    self.table.remove(&h);
                }
                _ => return,
            }
        }
        self.table.insert(d, p);
    }

    fn encounter(&mut self, now: Millis, peer: NodeHash) {
        let now = self.clock(now);
        let p = &self.params;
        let p_enc = match self.last_encounter.get(&peer) {
            None => p.p_encounter_max,
            Some(t) => {
                let dt = now.saturating_sub(*t) as f64;
                let i_typ = p.i_typ.0.max(1) as f64;
                p.p_encounter_max * (dt / i_typ).min(1.0)
            }
        };
        let new = match self.table.get(&peer) {
            Some(&old) if old >= p.p_first_threshold => old + (1.0 - p.delta - old) * p_enc,
            _ => p.p_encounter_first,
        };
        self.set(peer, new);
        self.note_encounter(peer, now);
    }

    /// Records an encounter at shifted time `t`, forgetting the oldest when full.
    fn note_encounter(&mut self, peer: NodeHash, t: u64) {
        if self.last_encounter.len() >= self.params.max_entries
            && !self.last_encounter.contains_key(&peer)
        {
            // Forget the oldest encounter (ties: smallest hash).
            if let Some(old) = self
                .last_encounter
                .iter()
                .min_by_key(|(h, t)| (**t, **h))
                .map(|(h, _)| *h)
            {
                self.last_encounter.remove(&old);
            }
        }
        self.last_encounter.insert(peer, t);
    }

    /// The table and encounter times as bytes, to be restored by
    /// [`Prophet::restore`] after a restart. `wall` is the time now (DTN seconds),
    /// if this node has a clock.
    ///
    /// ```text
    /// state     = version:u8(=1) wall:varint(0: unknown) aged:varint
    ///             n:varint (hash:[8] p:u64le)*n     ; f64 bits, hashes ascending
    ///             m:varint (hash:[8] ago:varint)*m   ; ms since that encounter
    /// ```
    ///
    /// `aged` is the time since the last aging (ms, less than a time unit).
    pub fn save(&self, now: Millis, wall: Option<u64>) -> Vec<u8> {
        let now = self.clock(now);
        let mut out =
            Vec::with_capacity(16 + 16 * self.table.len() + 12 * self.last_encounter.len());
        out.push(STATE_VERSION);
        put_varint(&mut out, wall.unwrap_or(0));
        put_varint(
            &mut out,
            self.last_aging.map_or(0, |t| now.saturating_sub(t)),
        );
        put_varint(&mut out, self.table.len() as u64);
        for (h, p) in &self.table {
            out.extend_from_slice(&h.0);
            out.extend_from_slice(&p.to_bits().to_le_bytes());
        }
        put_varint(&mut out, self.last_encounter.len() as u64);
        for (h, t) in &self.last_encounter {
            out.extend_from_slice(&h.0);
            put_varint(&mut out, now.saturating_sub(*t));
        }
        out
    }

    /// Replaces the table with one saved by [`Prophet::save`], aged by the time
    /// that passed since (known when both the save and `wall` have a clock
    /// reading; otherwise none is assumed). Entries beyond
    /// [`ProphetParams::max_entries`] are dropped, the highest kept. On error the
    /// table is left as it was.
    pub fn restore(
        &mut self,
        bytes: &[u8],
        now: Millis,
        wall: Option<u64>,
    ) -> Result<(), StateError> {
        let bad = StateError::Malformed;
        let mut r = Reader::new(bytes);
        if r.u8("version").map_err(|_| bad("empty"))? != STATE_VERSION {
            return Err(bad("unknown version"));
        }
        let saved_wall = r.varint("wall").map_err(|_| bad("wall"))?;
        let aged = r.varint("aged").map_err(|_| bad("aged"))?;
        let n = r.count(16, "entries").map_err(|_| bad("entry count"))?;
        let mut table = BTreeMap::new();
        let mut prev: Option<NodeHash> = None;
        for _ in 0..n {
            let h = NodeHash(r.array("hash").map_err(|_| bad("truncated entry"))?);
            let bits = u64::from_le_bytes(r.array("p").map_err(|_| bad("truncated entry"))?);
            let p = f64::from_bits(bits);
            if !(0.0..1.0).contains(&p) {
                return Err(bad("predictability out of range"));
            }
            if prev.is_some_and(|q| q >= h) {
                return Err(bad("entries not ascending"));
            }
            prev = Some(h);
            if h != self.own {
                table.insert(h, p);
            }
        }
        let m = r
            .count(9, "encounters")
            .map_err(|_| bad("encounter count"))?;
        let mut encounters = Vec::with_capacity(m);
        let mut prev: Option<NodeHash> = None;
        for _ in 0..m {
            let h = NodeHash(r.array("hash").map_err(|_| bad("truncated encounter"))?);
            let ago = r.varint("ago").map_err(|_| bad("truncated encounter"))?;
            if prev.is_some_and(|q| q >= h) {
                return Err(bad("encounters not ascending"));
            }
            prev = Some(h);
            encounters.push((h, ago));
        }
        if r.remaining() != 0 {
            return Err(bad("trailing bytes"));
        }
        let elapsed = match (saved_wall, wall) {
            (s, Some(w)) if s > 0 && w > s => (w - s).saturating_mul(1000),
            _ => 0,
        };
        let now = self.clock(now);
        let unit = self.params.time_unit.0.max(1);
        let since_aging = aged.saturating_add(elapsed);
        self.table = BTreeMap::new();
        self.last_encounter = BTreeMap::new();
        self.peers.clear();
        // Highest first, so that a smaller bound keeps the best entries.
        let mut entries: Vec<(NodeHash, f64)> = table.into_iter().collect();
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (h, p) in entries.into_iter().take(self.params.max_entries) {
            self.table.insert(h, p);
        }
        // The aging owed since the save: whole units now, the rest carried over.
        let k = since_aging / unit;
        self.last_aging = Some(now.saturating_sub(since_aging % unit));
        if k > 0 {
            self.decay(k);
        }
        // An encounter `I_typ` or more ago counts as none (P_encounter_max either way).
        let i_typ = self.params.i_typ.0.max(1);
        for (h, ago) in encounters {
            let ago = ago.saturating_add(elapsed);
            if ago < i_typ && h != self.own {
                self.note_encounter(h, now - ago);
            }
        }
        Ok(())
    }
}

impl RoutingPolicy for Prophet {
    fn name(&self) -> &'static str {
        "prophet"
    }

    fn contact_up(&mut self, now: Millis, peer: NodeHash) {
        self.age(now);
        self.encounter(now, peer);
    }

    fn contact_down(&mut self, _now: Millis, peer: NodeHash) {
        self.peers.remove(&peer);
    }

    fn state_for_peer(&mut self, now: Millis) -> Option<Vec<(NodeHash, u16)>> {
        self.age(now);
        Some(
            self.table
                .iter()
                .take(self.params.max_entries)
                .map(|(h, p)| (*h, quantize(*p)))
                .collect(),
        )
    }

    fn peer_state(&mut self, now: Millis, peer: NodeHash, entries: &[(NodeHash, u16)]) {
        self.age(now);
        let p_ab = self
            .table
            .get(&peer)
            .copied()
            .unwrap_or(self.params.p_encounter_first);
        let beta = self.params.beta;
        let mut theirs = BTreeMap::new();
        for (c, q) in entries.iter().take(self.params.max_entries) {
            let p_bc = dequantize(*q);
            theirs.insert(*c, p_bc);
            if *c == self.own || *c == peer {
                continue;
            }
            let trans = p_ab * p_bc * beta;
            if trans > self.predictability(c) {
                self.set(*c, trans);
            }
        }
        // Only peers in contact are kept; contact_down removes them.
        self.peers.insert(peer, theirs);
    }

    fn save_state(&self, now: Millis, wall: Option<u64>) -> Option<Vec<u8>> {
        Some(self.save(now, wall))
    }

    fn restore_state(
        &mut self,
        bytes: &[u8],
        now: Millis,
        wall: Option<u64>,
    ) -> Result<(), StateError> {
        self.restore(bytes, now, wall)
    }

    fn predictabilities(&self) -> Option<Vec<(NodeHash, f64)>> {
        Some(self.table().collect())
    }

    fn decide(&self, c: &Candidate) -> Verdict {
        match self.peer_predictability(&c.peer, &c.destination) {
            Some(p_peer) if p_peer > self.predictability(&c.destination) => Verdict::Replicate,
            _ => Verdict::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::BundleId;

    fn h(n: u8) -> NodeHash {
        NodeHash([n; 8])
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn encounter_follows_rfc_6693_equation_1() {
        let p = ProphetParams::default();
        let mut r = Prophet::new(h(0), p.clone());
        r.contact_up(Millis(0), h(1));
        // First encounter: P_encounter_first.
        assert!(close(r.predictability(&h(1)), 0.5));
        // Again after I_typ or more (no aging time unit passes if the unit is long).
        let mut r2 = Prophet::new(
            h(0),
            ProphetParams {
                time_unit: Millis(u64::MAX),
                ..p.clone()
            },
        );
        r2.contact_up(Millis(0), h(1));
        r2.contact_up(Millis(400_000), h(1));
        assert!(close(
            r2.predictability(&h(1)),
            0.5 + (1.0 - 0.01 - 0.5) * 0.7
        ));
        // After half of I_typ: P_encounter = 0.35.
        r2.contact_up(Millis(550_000), h(1));
        let prev = 0.5 + 0.49 * 0.7;
        assert!(close(
            r2.predictability(&h(1)),
            prev + (1.0 - 0.01 - prev) * 0.35
        ));
        // Predictabilities approach 1 − δ and never pass it.
        for t in 1..200u64 {
            r2.contact_up(Millis(550_000 + t * 300_000), h(1));
        }
        let p = r2.predictability(&h(1));
        assert!(p > 0.98 && p <= 0.99 + 1e-12, "{p}");
    }

    #[test]
    fn aging_follows_equation_2_and_drops_low_entries() {
        let p = ProphetParams::default();
        let mut r = Prophet::new(h(0), p.clone());
        r.contact_up(Millis(0), h(1));
        // 10 whole units and a half: K = 10, the half unit carries over.
        r.age(Millis(10 * 30_000 + 15_000));
        assert!(close(r.predictability(&h(1)), 0.5 * 0.999f64.powi(10)));
        r.age(Millis(11 * 30_000));
        assert!(close(r.predictability(&h(1)), 0.5 * 0.999f64.powi(11)));
        // Long enough to fall under P_first_threshold: removed, and the next
        // encounter starts again from P_encounter_first.
        r.age(Millis(11 * 30_000 + 2000 * 30_000));
        assert_eq!(r.predictability(&h(1)), 0.0);
        r.contact_up(Millis(3000 * 30_000), h(1));
        assert!(close(r.predictability(&h(1)), 0.5));
    }

    #[test]
    fn transitivity_follows_equation_3_and_grtr_decides() {
        let mut a = Prophet::new(h(0), ProphetParams::default());
        a.contact_up(Millis(0), h(1));
        // B reports P(B,C) = 0.8 and P(B,A) (ignored).
        let c = h(2);
        let mut entries = vec![(h(0), quantize(0.9)), (c, quantize(0.8))];
        entries.sort();
        a.peer_state(Millis(0), h(1), &entries);
        let expected = 0.5 * dequantize(quantize(0.8)) * 0.9;
        assert!(close(a.predictability(&c), expected));
        assert!((a.predictability(&c) - 0.36).abs() < 1e-4);
        assert_eq!(a.predictability(&h(0)), 0.0);
        // GRTR: B's 0.8 for C beats our 0.36.
        let cand = Candidate {
            id: BundleId([0; 32]),
            destination: c,
            source: h(0),
            peer: h(1),
            copies: 1,
        };
        assert_eq!(a.decide(&cand), Verdict::Replicate);
        // A destination B knows less about than we do: skip.
        let d = h(3);
        a.set(d, 0.6);
        assert_eq!(
            a.decide(&Candidate {
                destination: d,
                ..cand
            }),
            Verdict::Skip
        );
        // Transitivity never lowers an entry.
        a.peer_state(Millis(0), h(1), &[(d, quantize(0.1))]);
        assert!(close(a.predictability(&d), 0.6));
        // Without the peer's table (contact over) nothing is forwarded.
        a.contact_down(Millis(1), h(1));
        assert_eq!(a.decide(&cand), Verdict::Skip);
    }

    #[test]
    fn table_is_bounded() {
        let mut a = Prophet::new(
            h(0),
            ProphetParams {
                max_entries: 3,
                ..ProphetParams::default()
            },
        );
        for n in 1..10u8 {
            a.contact_up(Millis(u64::from(n)), h(n));
        }
        assert_eq!(a.table.len(), 3);
        assert_eq!(a.last_encounter.len(), 3);
        assert_eq!(a.state_for_peer(Millis(10)).map(|v| v.len()), Some(3));
    }

    /// A table with a few entries, encounters and a transitive entry.
    fn populated() -> Prophet {
        let mut a = Prophet::new(h(0), ProphetParams::default());
        a.contact_up(Millis(1_000), h(1));
        a.contact_up(Millis(200_000), h(2));
        a.peer_state(Millis(200_000), h(2), &[(h(3), quantize(0.8))]);
        a.contact_up(Millis(250_000), h(1));
        a
    }

    #[test]
    fn a_saved_table_comes_back_after_a_restart() {
        let a = populated();
        let wall = 900_000_000;
        let saved = a.save(Millis(260_000), Some(wall));
        // A new process: its clock starts again at 0; no wall time has passed.
        let mut b = Prophet::new(h(0), ProphetParams::default());
        b.restore(&saved, Millis(0), Some(wall)).unwrap();
        assert_eq!(b.table, a.table);
        // The encounter with h(1) 10 s before the save still counts: meeting it again
        // 20 s into the new run gives what 30 s after the old encounter gives.
        let mut a2 = a.clone();
        a2.contact_up(Millis(280_000), h(1));
        b.contact_up(Millis(20_000), h(1));
        assert!(close(b.predictability(&h(1)), a2.predictability(&h(1))));
        // Saving the restored table again gives the same bytes (ages relative).
        let c = {
            let mut c = Prophet::new(h(0), ProphetParams::default());
            c.restore(&saved, Millis(5), Some(wall)).unwrap();
            c
        };
        assert_eq!(c.save(Millis(5), Some(wall)), saved);
    }

    #[test]
    fn time_that_passed_while_down_ages_the_restored_table() {
        let a = populated();
        let saved = a.save(Millis(250_000), Some(1_000_000));
        let p1 = a.predictability(&h(1));
        // 10 time units (300 s) later by the wall clock.
        let mut b = Prophet::new(h(0), ProphetParams::default());
        b.restore(&saved, Millis(0), Some(1_000_300)).unwrap();
        assert!(close(b.predictability(&h(1)), p1 * 0.999f64.powi(10)));
        // The old encounters are now I_typ or more ago: a new one counts as the
        // first in a long while (P_encounter_max).
        let mut fresh = b.clone();
        fresh.last_encounter.clear();
        b.contact_up(Millis(0), h(1));
        fresh.contact_up(Millis(0), h(1));
        assert!(close(b.predictability(&h(1)), fresh.predictability(&h(1))));
        // Without a clock reading on either side, no time is assumed to have passed.
        let mut c = Prophet::new(h(0), ProphetParams::default());
        c.restore(&saved, Millis(0), None).unwrap();
        assert_eq!(c.table, a.table);
        let unknown = a.save(Millis(250_000), None);
        let mut d = Prophet::new(h(0), ProphetParams::default());
        d.restore(&unknown, Millis(0), Some(2_000_000)).unwrap();
        assert_eq!(d.table, a.table);
        // Long enough down for every entry to age below P_first_threshold.
        let mut e = Prophet::new(h(0), ProphetParams::default());
        e.restore(&saved, Millis(0), Some(1_000_000 + 30 * 3_000))
            .unwrap();
        assert!(e.table.is_empty());
    }

    #[test]
    fn a_smaller_bound_keeps_the_highest_entries() {
        let a = populated();
        let saved = a.save(Millis(250_000), None);
        let mut b = Prophet::new(
            h(0),
            ProphetParams {
                max_entries: 1,
                ..ProphetParams::default()
            },
        );
        b.restore(&saved, Millis(0), None).unwrap();
        let best = a
            .table
            .iter()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(h, p)| (*h, *p));
        assert_eq!(
            b.table().collect::<Vec<_>>(),
            best.into_iter().collect::<Vec<_>>()
        );
        assert!(b.last_encounter.len() <= 1);
    }

    #[test]
    fn malformed_states_are_refused_and_change_nothing() {
        let a = populated();
        let good = a.save(Millis(250_000), Some(5));
        let mut b = populated();
        let before = b.table.clone();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![2],
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
        ];
        // The first entry's predictability: NaN, 1.0, negative.
        let p_at = {
            let mut r = Reader::new(&good);
            r.u8("v").unwrap();
            r.varint("wall").unwrap();
            r.varint("aged").unwrap();
            assert_eq!(r.varint("n").unwrap(), 3);
            r.pos() + 8
        };
        for bad in [f64::NAN, 1.0, -0.5, f64::INFINITY] {
            let mut c = good.clone();
            c[p_at..p_at + 8].copy_from_slice(&bad.to_bits().to_le_bytes());
            cases.push(c);
        }
        // Two entries swapped (not ascending).
        let mut c = good.clone();
        let (first, second) = (p_at - 8, p_at + 8);
        let e1 = c[first..first + 16].to_vec();
        let e2 = c[second..second + 16].to_vec();
        c[first..first + 16].copy_from_slice(&e2);
        c[second..second + 16].copy_from_slice(&e1);
        cases.push(c);
        for c in cases {
            assert!(b.restore(&c, Millis(0), None).is_err(), "{c:?}");
            assert_eq!(b.table, before);
        }
    }

    proptest::proptest! {
        #[test]
        fn restore_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut b = Prophet::new(h(0), ProphetParams::default());
            let _ = b.restore(&bytes, Millis(0), Some(1_000));
            for (_, p) in b.table() {
                proptest::prop_assert!((0.0..1.0).contains(&p));
            }
        }

        #[test]
        fn any_table_round_trips(
            entries in proptest::collection::btree_map(1u8..=255, 0.1f64..0.99, 0..40),
            met in proptest::collection::btree_map(1u8..=255, 0u64..299_000, 0..40),
        ) {
            let mut a = Prophet::new(h(0), ProphetParams::default());
            a.table = entries.iter().map(|(k, p)| (h(*k), *p)).collect();
            let now = a.clock(Millis(400_000));
            a.last_aging = Some(now - 7_000);
            a.last_encounter = met.iter().map(|(k, ago)| (h(*k), now - ago)).collect();
            let saved = a.save(Millis(400_000), Some(77));
            let mut b = Prophet::new(h(0), ProphetParams::default());
            b.restore(&saved, Millis(3), Some(77)).unwrap();
            proptest::prop_assert_eq!(&b.table, &a.table);
            proptest::prop_assert_eq!(b.save(Millis(3), Some(77)), saved);
        }
    }
}
