//! Carrier contacts: a link whose other end is a store, not a live peer — a USB
//! drive carried between sites (sneakernet), later perhaps a data mule's disk.
//!
//! Nobody answers on a carrier, so there are no frames, offers or custody
//! acknowledgments. Instead:
//!
//! - [`Input::CarrierUp`] opens it with the carrier's pseudo-peer hash (derived by
//!   the driver from the drive's id) and its **reach**: the nodes known to read it
//!   (from their signed manifests on it).
//! - [`Input::Holders`] records what a node (or the carrier itself: its inventory)
//!   is known to hold, as routing metadata: such bundles are not written to the
//!   carrier again. It never releases custody; only a signed receipt does.
//! - [`Input::Carried`] imports a bundle read from the carrier (already decoded,
//!   realm-checked and verified by the driver, like [`Input::Received`]), with the
//!   spray copies written beside it. It is committed with the next group commit,
//!   and the driver learns the outcome from [`Output::Imported`] (stored, a
//!   duplicate, or refused).
//! - [`Input::CarrierExport`] starts one export pass over the store in priority
//!   order (expedited first, then oldest): every bundle the common rules and the
//!   routing policy would hand to some node of the reach, or to the carrier itself as
//!   an unknown peer, comes out as [`Output::Export`] with a transfer id. The
//!   driver writes it and answers [`Input::TransferDone`] once the write is durable
//!   (the carrier is then recorded as a holder and spray copies handed to it are
//!   spent) or [`Input::TransferFailed`] (drive full, drive gone: nothing changes).
//!   When the pass is over and nothing is in flight, [`Output::CarrierIdle`].
//! - [`Input::ContactDown`] closes it; whatever was in flight is forgotten (custody
//!   never moved).
//!
//! A carrier never takes custody away from this node: a bundle written to a drive
//! stays stored here until a receipt or its expiry removes it (the drive may be
//! lost, wiped, or carried nowhere).

use std::collections::BTreeMap;

use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_core::{Bundle, BundleId, Destination, NodeHash};
use ferry_storage::{CustodyStore, PriorityCursor, RecordInfo, RoutingEdit, StoreError};

use super::custody::Pending;
use super::frame::RefuseReason;
use super::policy::{Candidate, Verdict};
use super::transfer::Forwarded;
use super::{CloseReason, Engine, EngineError, Origin, Output};

/// Most nodes in a carrier's reach (further ones are ignored).
pub const MAX_CARRIER_REACH: usize = 256;
/// Records read from the store per page while a carrier export pass scans it.
const EXPORT_PAGE: usize = 256;

/// What became of a bundle imported from a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Committed to the store (custody taken).
    Stored,
    /// Already stored or seen here: nothing written.
    Duplicate,
    /// Not stored.
    Refused(RefuseReason),
}

#[derive(Debug)]
pub(crate) struct Carrier {
    pub hash: NodeHash,
    pub caps: LinkCaps,
    pub reach: Vec<NodeHash>,
    /// Where the export pass continues (`None` with `scanning`: from the start).
    cursor: Option<PriorityCursor>,
    scanning: bool,
    /// Records read but not yet considered.
    page: Vec<RecordInfo>,
    transfers: BTreeMap<TransferId, InFlight>,
    idle_told: bool,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: BundleId,
    split: u32,
    bytes: u64,
}

impl<S: CustodyStore> Engine<S> {
    pub(crate) fn is_carrier(&self, link: &LinkId) -> bool {
        self.carriers.contains_key(link)
    }

    pub(crate) fn carrier_up(
        &mut self,
        link: LinkId,
        carrier: NodeHash,
        caps: LinkCaps,
        mut reach: Vec<NodeHash>,
    ) {
        if self.links.contains_key(&link) || self.carriers.contains_key(&link) {
            self.emit(Output::CloseLink {
                link,
                reason: CloseReason::BadContact,
            });
            return;
        }
        if self.links.len() + self.carriers.len() >= self.config.max_links {
            self.emit(Output::CloseLink {
                link,
                reason: CloseReason::TooManyLinks,
            });
            return;
        }
        reach.retain(|h| *h != self.own_hash);
        reach.sort();
        reach.dedup();
        reach.truncate(MAX_CARRIER_REACH);
        self.carriers.insert(
            link,
            Carrier {
                hash: carrier,
                caps,
                reach,
                cursor: None,
                scanning: false,
                page: Vec::new(),
                transfers: BTreeMap::new(),
                idle_told: true,
            },
        );
    }

    /// Forgets a carrier; returns whether `link` was one.
    pub(crate) fn carrier_down(&mut self, link: LinkId) -> bool {
        let Some(c) = self.carriers.remove(&link) else {
            return false;
        };
        for t in c.transfers.values() {
            self.release_carrier_transfer(t);
        }
        true
    }

    fn release_carrier_transfer(&mut self, t: &InFlight) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(t.bytes);
        if t.split > 0 {
            if let Some(r) = self.reserved.get_mut(&t.id) {
                *r = r.saturating_sub(t.split);
                if *r == 0 {
                    self.reserved.remove(&t.id);
                }
            }
        }
    }

    /// Records `peer` as a holder of the listed bundles this node stores.
    pub(crate) fn on_holders(
        &mut self,
        peer: NodeHash,
        ids: &[BundleId],
    ) -> Result<(), EngineError> {
        for id in ids {
            if let Some(info) = self.info(id)? {
                if !info.meta.routing.holders.contains(&peer) {
                    self.queue_edit(*id, RoutingEdit::AddHolder(peer));
                }
            }
        }
        Ok(())
    }

    /// A bundle read from a carrier.
    pub(crate) fn on_carried(
        &mut self,
        link: LinkId,
        bundle: Bundle,
        copies: u32,
    ) -> Result<(), EngineError> {
        let id = bundle.id();
        let Some(c) = self.carriers.get(&link) else {
            self.stats.ignored_frames += 1;
            return Ok(());
        };
        let peer = c.hash;
        let for_us = self.keyring.is_for_us(&bundle);
        let env = *bundle.envelope();
        if env.hop_count >= bundle.header().hop_limit && !for_us {
            self.emit_imported(link, id, ImportOutcome::Refused(RefuseReason::HopLimit));
            return Ok(());
        }
        if self.pending_ids.contains(&id) || self.is_seen(&id)? {
            self.queue_edit(id, RoutingEdit::AddHolder(peer));
            self.emit_imported(link, id, ImportOutcome::Duplicate);
            return Ok(());
        }
        if env.age.is_some() && self.wall.is_none() && !self.aging_has_room() {
            self.emit_imported(link, id, ImportOutcome::Refused(RefuseReason::NotAccepted));
            return Ok(());
        }
        self.push_pending(Pending {
            bundle,
            origin: Origin::Peer { link, peer },
            copies: copies.max(1),
            acks: Vec::new(),
            received: self.now,
            receipt_ids: Vec::new(),
        })
    }

    pub(crate) fn emit_imported(&mut self, link: LinkId, id: BundleId, outcome: ImportOutcome) {
        self.emit(Output::Imported { link, id, outcome });
    }

    /// Starts (or restarts) an export pass on a carrier.
    pub(crate) fn carrier_export(&mut self, link: LinkId) {
        if let Some(c) = self.carriers.get_mut(&link) {
            c.cursor = None;
            c.page.clear();
            c.scanning = true;
            c.idle_told = false;
        }
    }

    pub(crate) fn carrier_transfer_done(&mut self, link: LinkId, transfer: TransferId) -> bool {
        let Some(c) = self.carriers.get_mut(&link) else {
            return false;
        };
        let Some(t) = c.transfers.remove(&transfer) else {
            return true;
        };
        let hash = c.hash;
        self.release_carrier_transfer(&t);
        // Queued writes: losing them in a crash only makes this node write the
        // bundle to the carrier again (the carrier's inventory dedups it).
        self.queue_edit(t.id, RoutingEdit::AddHolder(hash));
        if t.split > 0 {
            self.queue_edit(t.id, RoutingEdit::SpendCopies(t.split));
        }
        true
    }

    pub(crate) fn carrier_transfer_failed(&mut self, link: LinkId, transfer: TransferId) -> bool {
        let Some(c) = self.carriers.get_mut(&link) else {
            return false;
        };
        if let Some(t) = c.transfers.remove(&transfer) {
            self.release_carrier_transfer(&t);
        }
        true
    }

    /// Runs the export passes: emits writes while each carrier has room.
    pub(crate) fn drive_carriers(&mut self) -> Result<(), EngineError> {
        let ids: Vec<LinkId> = self.carriers.keys().copied().collect();
        for link in ids {
            self.export_some(link)?;
        }
        Ok(())
    }

    fn export_some(&mut self, link: LinkId) -> Result<(), EngineError> {
        loop {
            if !self.room() {
                self.deferred = true;
                return Ok(());
            }
            let Some(c) = self.carriers.get_mut(&link) else {
                return Ok(());
            };
            let window = usize::try_from(c.caps.max_in_flight.max(1)).unwrap_or(usize::MAX);
            if c.transfers.len() >= window
                || (self.in_flight_bytes > 0
                    && self.in_flight_bytes >= self.config.max_in_flight_bytes)
            {
                return Ok(());
            }
            if c.page.is_empty() {
                if !c.scanning {
                    if c.transfers.is_empty() && !c.idle_told {
                        c.idle_told = true;
                        self.emit(Output::CarrierIdle { link });
                    }
                    return Ok(());
                }
                let cursor = c.cursor;
                let page = self.store.by_priority(cursor, EXPORT_PAGE)?;
                let mut items = page.items;
                self.patch_listing(&mut items);
                let Some(c) = self.carriers.get_mut(&link) else {
                    return Ok(());
                };
                c.cursor = page.next;
                c.scanning = page.next.is_some();
                // Considered in listing order: pop from the back.
                items.reverse();
                c.page = items;
                continue;
            }
            let Some(info) = c.page.pop() else {
                continue;
            };
            if let Some(split) = self.carrier_verdict(link, &info) {
                self.export_one(link, &info, split)?;
            }
        }
    }

    /// `Some(copies handed over)` if `info` should be written to the carrier.
    fn carrier_verdict(&self, link: LinkId, info: &RecordInfo) -> Option<u32> {
        let c = self.carriers.get(&link)?;
        let r = &info.meta.routing;
        if r.copies_left == 0
            || r.holders.contains(&c.hash)
            || c.transfers.values().any(|t| t.id == info.id)
        {
            return None;
        }
        let d = match info.meta.destination {
            Destination::Group => return Some(0),
            Destination::Node(d) if d == self.own_hash => return None,
            Destination::Node(d) => d,
        };
        if c.reach.contains(&d) {
            return (!r.holders.contains(&d)).then_some(0);
        }
        let reserved = self.reserved.get(&info.id).copied().unwrap_or(0);
        let copies = r.copies_left.saturating_sub(reserved);
        // Ask the policy as if handing the bundle to each known reader of the carrier
        // that lacks it, and to the carrier itself (a peer nobody knows yet: whoever
        // reads it next). Policies that hand bundles to any peer (epidemic, spray)
        // use the drive; those that need a particular peer (direct, static, PRoPHET)
        // only when that peer reads it.
        let readers = c
            .reach
            .iter()
            .filter(|p| !r.holders.contains(p))
            .chain(std::iter::once(&c.hash));
        for peer in readers {
            let cand = Candidate {
                id: info.id,
                destination: d,
                source: info.meta.source,
                peer: *peer,
                copies,
            };
            match self.policy.decide(&cand) {
                Verdict::Skip => continue,
                Verdict::Replicate | Verdict::Forward => return Some(0),
                Verdict::Split { give } if give >= 1 && give <= copies => return Some(give),
                Verdict::Split { .. } => continue,
            }
        }
        None
    }

    fn export_one(
        &mut self,
        link: LinkId,
        info: &RecordInfo,
        split: u32,
    ) -> Result<(), EngineError> {
        let id = info.id;
        let rec = match self.record(&id) {
            Ok(Some(rec)) => rec,
            Ok(None) | Err(StoreError::Quarantined { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let reaches = match rec.info.meta.destination {
            Destination::Group => true,
            Destination::Node(d) => self
                .carriers
                .get(&link)
                .is_some_and(|c| c.reach.contains(&d)),
        };
        // A carrier is one hop; the rules of any link apply.
        let Forwarded::Ready(bytes) = self.forwarded(rec, reaches)? else {
            return Ok(());
        };
        let transfer = TransferId(self.next_transfer);
        self.next_transfer += 1;
        let size = bytes.len() as u64;
        let Some(c) = self.carriers.get_mut(&link) else {
            return Ok(());
        };
        c.transfers.insert(
            transfer,
            InFlight {
                id,
                split,
                bytes: size,
            },
        );
        self.in_flight_bytes += size;
        if split > 0 {
            *self.reserved.entry(id).or_insert(0) += split;
        }
        self.stats.bundles_sent += 1;
        self.stats.bundle_bytes_sent += size;
        self.emit(Output::Export {
            link,
            transfer,
            id,
            copies: split.max(1),
            expires_at: info.meta.expires_at,
            bytes,
        });
        Ok(())
    }
}
