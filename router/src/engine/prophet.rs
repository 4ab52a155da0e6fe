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

use std::collections::BTreeMap;

use ferry_core::NodeHash;

use super::policy::{Candidate, RoutingPolicy, Verdict};
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
#[derive(Debug, Clone)]
pub struct Prophet {
    own: NodeHash,
    params: ProphetParams,
    table: BTreeMap<NodeHash, f64>,
    last_aging: Option<Millis>,
    /// When each node was last encountered (bounded like the table).
    last_encounter: BTreeMap<NodeHash, Millis>,
    /// Predictabilities of the peers in contact now.
    peers: BTreeMap<NodeHash, BTreeMap<NodeHash, f64>>,
}

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

    /// `P(self, d)` (0 if unknown).
    pub fn predictability(&self, d: &NodeHash) -> f64 {
        self.table.get(d).copied().unwrap_or(0.0)
    }

    /// `P(peer, d)` as the peer reported it in this contact.
    pub fn peer_predictability(&self, peer: &NodeHash, d: &NodeHash) -> Option<f64> {
        self.peers
            .get(peer)
            .map(|t| t.get(d).copied().unwrap_or(0.0))
    }

    /// Applies aging up to `now` (whole time units only; the remainder carries over).
    pub fn age(&mut self, now: Millis) {
        let Some(last) = self.last_aging else {
            self.last_aging = Some(now);
            return;
        };
        let unit = self.params.time_unit.0.max(1);
        let k = now.since(last).0 / unit;
        if k == 0 {
            return;
        }
        let factor = self.params.gamma.powf(k as f64);
        let threshold = self.params.p_first_threshold;
        self.table.retain(|_, p| {
            *p *= factor;
            *p >= threshold
        });
        self.last_aging = Some(Millis(last.0 + k * unit));
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
        let p = &self.params;
        let p_enc = match self.last_encounter.get(&peer) {
            None => p.p_encounter_max,
            Some(t) => {
                let dt = now.since(*t).0 as f64;
                let i_typ = p.i_typ.0.max(1) as f64;
                p.p_encounter_max * (dt / i_typ).min(1.0)
            }
        };
        let new = match self.table.get(&peer) {
            Some(&old) if old >= p.p_first_threshold => old + (1.0 - p.delta - old) * p_enc,
            _ => p.p_encounter_first,
        };
        self.set(peer, new);
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
        self.last_encounter.insert(peer, now);
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
}
