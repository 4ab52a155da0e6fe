//! Per-link state. Every collection here is bounded by [`super::EngineConfig::link_queue`]
//! or by one frame's worth of data (see the caps listed in the engine docs).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ferry_cl_api::{LinkCaps, TransferId};
use ferry_core::{BundleId, NodeHash, NodeId, Priority};

use super::frame::{Bound, Key, OfferItem, Range, MAX_FRAME_BYTES};
use super::recon::ReconParams;
use super::time::Millis;

/// Default frame budget on links without an MTU.
pub(crate) const STREAM_FRAME_BUDGET: usize = 16 * 1024;

/// The frame budget for a link: its MTU (at least 128 bytes), or 16 KiB on streams.
pub(crate) fn frame_budget(caps: &LinkCaps) -> usize {
    match caps.mtu {
        Some(m) => usize::try_from(m)
            .unwrap_or(MAX_FRAME_BYTES)
            .clamp(super::recon::MIN_RECON_BUDGET, STREAM_FRAME_BUDGET),
        None => STREAM_FRAME_BUDGET,
    }
}

/// Where an outbound bundle is in its hand-over to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Offered in offer `seq` at `at`, no answer yet.
    Offered { seq: u32, at: Millis },
    /// Wanted by the peer, waiting for a transfer slot.
    Queued,
    /// Handed to the link.
    InFlight { transfer: TransferId, bytes: u64 },
    /// The link sent it at `at`; waiting for the peer's custody acknowledgment.
    Sent { at: Millis },
}

/// A bundle being handed to the peer.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub id: BundleId,
    /// Copies promised (spray split) and reserved until the ack; 0 when not a split.
    pub split: u32,
    /// Drop our copy once the peer acknowledges custody.
    pub release: bool,
    pub priority: Priority,
    pub insertion: u64,
    pub tries: u8,
    pub state: OutState,
}

impl Outbound {
    pub(crate) fn queue_key(&self, key: Key) -> QueueKey {
        (Reverse(self.priority), self.insertion, key)
    }
}

/// Send order: highest priority first, then oldest insertion.
pub(crate) type QueueKey = (Reverse<Priority>, u64, Key);

/// A range of our keys the peer lacks, streamed through as room allows.
#[derive(Debug, Clone)]
pub(crate) struct HaveScan {
    pub lo: Key,
    pub hi: Bound,
    pub theirs: Vec<Key>,
    /// Continue strictly after this id.
    pub after: Option<BundleId>,
}

/// A reconciliation session this side initiated.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The next request, held back while have-scans drain.
    pub pending: Option<Vec<Range>>,
    /// When the last request was sent.
    pub sent_at: Millis,
    /// Started by the waiting side's prompt (see [`Link::prompt_at`]) and not
    /// answered yet: dropped if the peer starts its own session meanwhile.
    pub prompted: bool,
}

/// One link (one contact with one peer).
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: NodeId,
    pub peer_hash: NodeHash,
    pub caps: LinkCaps,
    pub budget: usize,
    pub recon: ReconParams,
    /// A close was requested; frames and bundles from it are ignored.
    pub closing: bool,
    pub session: Option<Session>,
    pub have_scans: VecDeque<HaveScan>,
    /// Something was dropped for lack of room: reconcile again when idle.
    pub resync: bool,
    pub next_offer_seq: u32,
    pub offer_batch: Vec<OfferItem>,
    /// Hashed, not ordered: a bundle is looked up, added and removed here several
    /// times per hand-over, and nothing iterates it in an order that shows (the
    /// send order is `queue`'s).
    pub outbound: super::FastMap<Key, Outbound>,
    pub queue: BTreeSet<QueueKey>,
    pub transfers: BTreeMap<TransferId, Key>,
    /// The peer's store was full, or transfers to it kept failing: no offers
    /// before this time.
    pub quiet_until: Option<Millis>,
    /// Set on a broadcast medium on the side that waits for its peer to start
    /// reconciling (the higher node id): when nothing arrives from the peer by
    /// then, this side starts itself. Cleared by any frame from the peer.
    pub prompt_at: Option<Millis>,
    /// Bundles we asked the peer for: the copies it promised, when we asked.
    pub wanted: super::FastMap<Key, (u32, Millis)>,
}

impl Link {
    pub(crate) fn new(peer: NodeId, caps: LinkCaps) -> Self {
        let budget = frame_budget(&caps);
        Self {
            peer,
            peer_hash: peer.hash(),
            caps,
            budget,
            recon: ReconParams::for_budget(budget),
            closing: false,
            session: None,
            have_scans: VecDeque::new(),
            resync: false,
            next_offer_seq: 0,
            offer_batch: Vec::new(),
            outbound: super::FastMap::default(),
            queue: BTreeSet::new(),
            transfers: BTreeMap::new(),
            quiet_until: None,
            prompt_at: None,
            wanted: super::FastMap::default(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.transfers.len()
    }

    /// Nothing outstanding in either direction and no session: a resync may start.
    pub(crate) fn idle(&self) -> bool {
        self.session.is_none()
            && self.have_scans.is_empty()
            && self.outbound.is_empty()
            && self.wanted.is_empty()
    }

    pub(crate) fn backing_off(&self, now: Millis) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    /// How long the peer may take to answer: [`super::EngineConfig::answer_timeout`],
    /// stretched by the link's duty cycle (a 1 % duty cycle allows 100 times more).
    pub(crate) fn answer_timeout(&self, base: Millis) -> Millis {
        match self.caps.duty_cycle {
            Some(d) if d > 0.0 && d < 1.0 => {
                Millis((base.0 as f64 / d).min(u64::MAX as f64) as u64)
            }
            _ => base,
        }
    }

    /// Since when the oldest answer this link awaits has been awaited: an offer, a
    /// custody acknowledgment, a wanted bundle, a reconciliation reply.
    pub(crate) fn oldest_wait(&self) -> Option<Millis> {
        let out = self.outbound.values().filter_map(|o| match o.state {
            OutState::Offered { at, .. } | OutState::Sent { at } => Some(at),
            OutState::Queued | OutState::InFlight { .. } => None,
        });
        let wanted = self.wanted.values().map(|(_, at)| *at);
        let session = self
            .session
            .as_ref()
            .filter(|s| s.pending.is_none())
            .map(|s| s.sent_at);
        out.chain(wanted).chain(session).min()
    }

    /// Outbound keys whose offer or custody acknowledgment has waited since before
    /// `cutoff`, and wanted keys asked for before it.
    pub(crate) fn stale(&self, cutoff: Millis) -> (Vec<Key>, Vec<Key>) {
        let out = self
            .outbound
            .iter()
            .filter(|(_, o)| match o.state {
                OutState::Offered { at, .. } | OutState::Sent { at } => at < cutoff,
                OutState::Queued | OutState::InFlight { .. } => false,
            })
            .map(|(k, _)| *k)
            .collect();
        let wanted = self
            .wanted
            .iter()
            .filter(|(_, (_, at))| *at < cutoff)
            .map(|(k, _)| *k)
            .collect();
        (out, wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_mtu() {
        let mut caps = LinkCaps::ip_stream();
        assert_eq!(frame_budget(&caps), STREAM_FRAME_BUDGET);
        caps.mtu = Some(255);
        assert_eq!(frame_budget(&caps), 255);
        caps.mtu = Some(20);
        assert_eq!(frame_budget(&caps), 128);
        caps.mtu = Some(u32::MAX);
        assert_eq!(frame_budget(&caps), STREAM_FRAME_BUDGET);
    }
}
