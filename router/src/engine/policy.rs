//! Routing policies behind one trait.
//!
//! The engine applies the rules common to every policy before it asks one:
//!
//! - a bundle whose `copies_left` is 0 (it reached its hop limit here) is never
//!   offered, nor to a peer listed in its `holders`;
//! - a realm-group bundle goes to every peer (each is a destination);
//! - a node bundle goes to its destination whenever they meet, and is never
//!   forwarded when this node is its destination.
//!
//! Only the remaining case — a node bundle and a peer that is not its destination —
//! reaches [`RoutingPolicy::decide`]. Decisions must be deterministic (no randomness,
//! ordered maps), so the simulator replays a run byte for byte.

use std::collections::BTreeMap;
use std::fmt;

use ferry_core::{BundleId, NodeHash, NodeId};

use super::prophet::{Prophet, ProphetParams};
use super::time::Millis;

/// What a policy decides for one bundle and one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Do not hand it over.
    Skip,
    /// Hand over a copy and keep ours.
    Replicate,
    /// Hand over `give` of our spray copies (deducted once the peer acknowledges
    /// custody) and keep ours.
    Split {
        /// Copies handed over, at least 1.
        give: u32,
    },
    /// Hand custody over and drop our copy once the peer acknowledges it (the source
    /// keeps its copy until a receipt arrives).
    Forward,
}

/// A node bundle the engine considers handing to a peer that is not its
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The bundle.
    pub id: BundleId,
    /// Its destination node.
    pub destination: NodeHash,
    /// Its source node.
    pub source: NodeHash,
    /// The peer.
    pub peer: NodeHash,
    /// Spray copies this node may hand out now (stored count minus copies promised
    /// in outstanding offers).
    pub copies: u32,
}

/// Why a policy's saved state cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Truncated, unknown version, out-of-range values, unsorted entries or
    /// trailing bytes.
    #[error("malformed routing state: {0}")]
    Malformed(&'static str),
}

/// A routing policy. Implementations keep only bounded state.
pub trait RoutingPolicy: fmt::Debug + Send {
    /// The policy's name (as in `ferry.toml`).
    fn name(&self) -> &'static str;

    /// Spray copies a bundle created here starts with.
    fn initial_copies(&self) -> u32 {
        1
    }

    /// A contact with `peer` began (its first link came up).
    fn contact_up(&mut self, _now: Millis, _peer: NodeHash) {}

    /// The contact with `peer` ended (its last link went down).
    fn contact_down(&mut self, _now: Millis, _peer: NodeHash) {}

    /// Routing state to send to a peer at contact start (PRoPHET's delivery
    /// predictabilities as `p × 65535`, node hashes ascending), if the policy has any.
    fn state_for_peer(&mut self, _now: Millis) -> Option<Vec<(NodeHash, u16)>> {
        None
    }

    /// The peer's routing state arrived.
    fn peer_state(&mut self, _now: Millis, _peer: NodeHash, _entries: &[(NodeHash, u16)]) {}

    /// Whether and how to hand `c` to `c.peer`.
    fn decide(&self, c: &Candidate) -> Verdict;

    /// State to keep across restarts (PRoPHET's table), if the policy has any.
    /// `wall` is the time now in DTN seconds, if this node has a clock.
    fn save_state(&self, _now: Millis, _wall: Option<u64>) -> Option<Vec<u8>> {
        None
    }

    /// Takes back what [`RoutingPolicy::save_state`] saved in an earlier run. On
    /// error the policy's state is left as it was.
    fn restore_state(
        &mut self,
        _bytes: &[u8],
        _now: Millis,
        _wall: Option<u64>,
    ) -> Result<(), StateError> {
        Ok(())
    }

    /// Delivery predictabilities, node hashes ascending (PRoPHET), for status pages.
    fn predictabilities(&self) -> Option<Vec<(NodeHash, f64)>> {
        None
    }
}

/// Copies to every peer that lacks the bundle.
#[derive(Debug, Clone, Default)]
pub struct Epidemic;

impl RoutingPolicy for Epidemic {
    fn name(&self) -> &'static str {
        "epidemic"
    }
    fn decide(&self, _c: &Candidate) -> Verdict {
        Verdict::Replicate
    }
}

/// Hands a bundle only to its destination.
#[derive(Debug, Clone, Default)]
pub struct Direct;

impl RoutingPolicy for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }
    fn decide(&self, _c: &Candidate) -> Verdict {
        Verdict::Skip
    }
}

/// Binary spray-and-wait (Spyropoulos et al.): the source starts with `L` copies; a
/// node with `n > 1` copies hands `floor(n/2)` to a peer that lacks the bundle and
/// keeps `ceil(n/2)`; with one copy left it waits for the destination.
#[derive(Debug, Clone)]
pub struct SprayAndWait {
    copies: u32,
}

impl SprayAndWait {
    /// With `L = copies` (at least 1).
    pub fn new(copies: u32) -> Self {
        Self {
            copies: copies.max(1),
        }
    }
}

impl RoutingPolicy for SprayAndWait {
    fn name(&self) -> &'static str {
        "spray-and-wait"
    }
    fn initial_copies(&self) -> u32 {
        self.copies
    }
    fn decide(&self, c: &Candidate) -> Verdict {
        if c.copies > 1 {
            Verdict::Split { give: c.copies / 2 }
        } else {
            Verdict::Skip
        }
    }
}

/// Static routes: destination node → next-hop node. Custody moves hop by hop.
#[derive(Debug, Clone, Default)]
pub struct StaticRoutes {
    routes: BTreeMap<NodeHash, NodeHash>,
}

impl StaticRoutes {
    /// From `destination → next hop` pairs of node ids.
    pub fn new(routes: &BTreeMap<NodeId, NodeId>) -> Self {
        Self {
            routes: routes.iter().map(|(d, h)| (d.hash(), h.hash())).collect(),
        }
    }

    /// The next hop towards `destination`.
    pub fn next_hop(&self, destination: &NodeHash) -> Option<NodeHash> {
        self.routes.get(destination).copied()
    }
}

impl RoutingPolicy for StaticRoutes {
    fn name(&self) -> &'static str {
        "static"
    }
    fn decide(&self, c: &Candidate) -> Verdict {
        if self.next_hop(&c.destination) == Some(c.peer) {
            Verdict::Forward
        } else {
            Verdict::Skip
        }
    }
}

/// Which policy an engine runs, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyConfig {
    /// [`Epidemic`].
    Epidemic,
    /// [`SprayAndWait`] with `L` copies.
    SprayAndWait {
        /// L.
        copies: u32,
    },
    /// [`Prophet`] (RFC 6693, GRTR forwarding).
    Prophet(ProphetParams),
    /// [`Direct`].
    Direct,
    /// [`StaticRoutes`]: destination node → next-hop node.
    Static {
        /// The routes.
        routes: BTreeMap<NodeId, NodeId>,
    },
}

impl PolicyConfig {
    /// Builds the policy for the node `own`.
    pub fn build(&self, own: NodeHash) -> Box<dyn RoutingPolicy> {
        match self {
            PolicyConfig::Epidemic => Box::new(Epidemic),
            PolicyConfig::SprayAndWait { copies } => Box::new(SprayAndWait::new(*copies)),
            PolicyConfig::Prophet(p) => Box::new(Prophet::new(own, p.clone())),
            PolicyConfig::Direct => Box::new(Direct),
            PolicyConfig::Static { routes } => Box::new(StaticRoutes::new(routes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(copies: u32, dest: u8, peer: u8) -> Candidate {
        Candidate {
            id: BundleId([0; 32]),
            destination: NodeHash([dest; 8]),
            source: NodeHash([0; 8]),
            peer: NodeHash([peer; 8]),
            copies,
        }
    }

    #[test]
    fn spray_halves_and_waits() {
        let s = SprayAndWait::new(8);
        assert_eq!(s.initial_copies(), 8);
        assert_eq!(s.decide(&cand(8, 1, 2)), Verdict::Split { give: 4 });
        assert_eq!(s.decide(&cand(5, 1, 2)), Verdict::Split { give: 2 });
        assert_eq!(s.decide(&cand(2, 1, 2)), Verdict::Split { give: 1 });
        assert_eq!(s.decide(&cand(1, 1, 2)), Verdict::Skip);
        assert_eq!(SprayAndWait::new(0).initial_copies(), 1);
    }

    #[test]
    fn static_routes_forward_to_the_next_hop_only() {
        let d = ferry_core::Identity::from_seed([1; 32]).node_id();
        let h = ferry_core::Identity::from_seed([2; 32]).node_id();
        let s = StaticRoutes::new(&BTreeMap::from([(d, h)]));
        let mut c = cand(1, 0, 0);
        c.destination = d.hash();
        c.peer = h.hash();
        assert_eq!(s.decide(&c), Verdict::Forward);
        c.peer = NodeHash([9; 8]);
        assert_eq!(s.decide(&c), Verdict::Skip);
        assert_eq!(Epidemic.decide(&c), Verdict::Replicate);
        assert_eq!(Direct.decide(&c), Verdict::Skip);
    }
}
