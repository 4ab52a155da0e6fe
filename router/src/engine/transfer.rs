//! Contacts: reconciliation sessions, offers and wants, transmissions and custody
//! acknowledgments.

use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_core::{BundleId, Destination, NodeHash, NodeId};
use ferry_storage::{CustodyStore, RecordInfo, RoutingEdit, StoreError};

use super::envelope::{forward_in_place, read_envelope};
use super::frame::{
    items_per_frame, key_of, Bound, Frame, Key, OfferItem, Range, RefuseReason, KEY_LEN,
};
use super::link::{HaveScan, Link, OutState, Outbound, QueueKey, Session};
use super::policy::{Candidate, Verdict};
use super::recon::{self, HaveRange, IdSource, Role};
use super::time::Millis;
use super::writes::{ids_after, Writes};
use super::{
    CloseReason, Engine, EngineError, Output, RemoveReason, MAX_HAVE_SCANS, MAX_LINK_SCANS,
};

/// Most ids read from the store per `ids_after` call while scanning.
const SCAN_PAGE: usize = 1024;
/// Ids read by the first `ids_after` call of a scan; each further call reads four
/// times more, up to [`SCAN_PAGE`]: most scanned ranges are small (a mismatching
/// reconciliation bucket, a have-range), and a page reads past the range's end.
const FIRST_SCAN_PAGE: usize = 16;

/// The page size after `page`.
fn next_page(page: usize) -> usize {
    page.saturating_mul(4).min(SCAN_PAGE)
}
/// Ids a have-scan examines per link per call before deferring.
const SCAN_BUDGET: usize = 4096;
/// Encoded size of the largest offer item (id and a 5-byte varint).
const OFFER_ITEM_MAX: usize = 32 + 5;
/// Encoded size of a predictability entry.
const PREDICT_ITEM: usize = 8 + 2;

/// The largest id whose key is below `key` (`None` for key 0): where an
/// `ids_after` scan of keys `>= key` starts.
fn before(key: &Key) -> Option<BundleId> {
    let k = u128::from_be_bytes(*key);
    let prev = k.checked_sub(1)?;
    let mut id = [0xffu8; 32];
    id[..KEY_LEN].copy_from_slice(&prev.to_be_bytes());
    Some(BundleId(id))
}

/// A store holding at most this many ids is read once per reconciliation step
/// (see [`StoreIds`]).
const SMALL_STORE_IDS: usize = 256;

/// The held ids of a store, in order, for reconciliation (without those whose
/// removal is queued). Made for one reconciliation step, during which the store
/// does not change.
pub(crate) struct StoreIds<'a, S: ?Sized> {
    store: &'a S,
    writes: &'a Writes,
    /// Every held id, when the store's first page held them all (a small store:
    /// most field nodes, every simulated one): a step scans each of its ranges, and
    /// these scans then read this instead of the store. `None` inside: a larger
    /// store, scanned page by page.
    small: std::cell::OnceCell<Option<Vec<BundleId>>>,
}

impl<'a, S: CustodyStore + ?Sized> StoreIds<'a, S> {
    pub(crate) fn new(store: &'a S, writes: &'a Writes) -> Self {
        Self {
            store,
            writes,
            small: std::cell::OnceCell::new(),
        }
    }
}

impl<S: CustodyStore + ?Sized> StoreIds<'_, S> {
    /// The held id whose key is `key`, if any.
    fn resolve(&self, key: &Key) -> Result<Option<BundleId>, StoreError> {
        let mut found = None;
        self.scan(key, &Bound::Infinity, &mut |id| {
            if key_of(id) == *key {
                found = Some(*id);
            }
            false
        })?;
        Ok(found)
    }
}

impl<S: CustodyStore + ?Sized> IdSource for StoreIds<'_, S> {
    type Error = StoreError;

    fn scan(
        &self,
        lo: &Key,
        hi: &Bound,
        f: &mut dyn FnMut(&BundleId) -> bool,
    ) -> Result<(), StoreError> {
        if self.small.get().is_none() {
            let page = ids_after(self.store, self.writes, None, SMALL_STORE_IDS)?;
            let all = page.next.is_none().then_some(page.ids);
            // Only this scan sets it (the step runs on one thread).
            let _ = self.small.set(all);
        }
        if let Some(Some(ids)) = self.small.get() {
            let Ok(()) = ids.as_slice().scan(lo, hi, f);
            return Ok(());
        }
        let mut after = before(lo);
        let mut size = FIRST_SCAN_PAGE;
        loop {
            let page = ids_after(self.store, self.writes, after.as_ref(), size)?;
            size = next_page(size);
            for id in &page.ids {
                let k = key_of(id);
                if k < *lo {
                    continue;
                }
                if !hi.above(&k) || !f(id) {
                    return Ok(());
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }
}

/// Notes that `l` awaits an answer since `since`: the purge that would find it
/// stale is due by then.
fn await_answer(due: &mut Option<Millis>, since: Millis, l: &Link, base: Millis) {
    // Stale once strictly older than the timeout.
    let at = since + l.answer_timeout(base) + Millis(1);
    *due = Some(due.map_or(at, |d| d.min(at)));
}

/// What considering a bundle for a link gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Considered {
    Offered,
    Skipped,
    /// Worth offering but the link has no room now.
    NoRoom,
}

impl<S: CustodyStore> Engine<S> {
    pub(crate) fn contact_up(
        &mut self,
        link: LinkId,
        peer: NodeId,
        caps: LinkCaps,
    ) -> Result<(), EngineError> {
        if self.links.contains_key(&link)
            || self.is_carrier(&link)
            || peer == self.keyring.node_id()
        {
            self.emit(Output::CloseLink {
                link,
                reason: CloseReason::BadContact,
            });
            return Ok(());
        }
        if self.links.len() + self.carriers.len() >= self.config.max_links {
            self.emit(Output::CloseLink {
                link,
                reason: CloseReason::TooManyLinks,
            });
            return Ok(());
        }
        let mut l = Link::new(peer, caps);
        let initiator = self.keyring.node_id() < peer;
        if !initiator && l.caps.broadcast {
            // The peer starts reconciling. On a shared medium it may not have heard
            // us yet (our answer to its hello was lost in a collision with another
            // neighbour's): its link layer learns of us from any frame we send, so
            // speak first should it stay silent. (Links set up by a handshake, and
            // point-to-point ones, come up at both ends.)
            l.prompt_at = Some(self.now + patience(&l.caps));
        }
        let (ph, budget) = (l.peer_hash, l.budget);
        self.links.insert(link, l);
        let n = self.peer_links.entry(ph).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.policy.contact_up(self.now, ph);
            self.queue_routing_state();
        }
        if let Some(state) = self.policy.state_for_peer(self.now) {
            for chunk in state.chunks(items_per_frame(budget, PREDICT_ITEM)) {
                self.send_frame(link, &Frame::Predictability(chunk.to_vec()));
            }
        }
        if initiator {
            self.start_session(link, false)?;
        }
        Ok(())
    }

    pub(crate) fn contact_down(&mut self, link: LinkId) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        for out in l.outbound.values() {
            self.release(out, l.peer_hash);
        }
        for key in l.wanted.keys() {
            if self.fetching.get(key) == Some(&link) {
                self.fetching.remove(key);
            }
        }
        if let Some(n) = self.peer_links.get_mut(&l.peer_hash) {
            *n -= 1;
            if *n == 0 {
                self.peer_links.remove(&l.peer_hash);
                self.policy.contact_down(self.now, l.peer_hash);
            }
        }
    }

    /// Forgets an outbound bundle: its reservation, its in-flight bytes.
    fn release(&mut self, out: &Outbound, peer: NodeHash) {
        if out.split > 0 {
            if let Some(r) = self.reserved.get_mut(&out.id) {
                *r = r.saturating_sub(out.split);
                if *r == 0 {
                    self.reserved.remove(&out.id);
                }
            }
        }
        self.outgoing.remove(&(out.id, peer));
        if let OutState::InFlight { bytes, .. } = out.state {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
        }
    }

    /// Removes `key` from a link's outbound bundles, with its queue and transfer
    /// entries, and releases it.
    fn drop_outbound(&mut self, link: LinkId, key: &Key) -> Option<Outbound> {
        let l = self.links.get_mut(&link)?;
        let out = l.outbound.remove(key)?;
        l.queue.remove(&out.queue_key(*key));
        if let OutState::InFlight { transfer, .. } = out.state {
            l.transfers.remove(&transfer);
        }
        let peer = l.peer_hash;
        self.release(&out, peer);
        Some(out)
    }

    /// Gives up an outbound bundle and tells the peer why (it keeps no state for it).
    fn refuse_outbound(&mut self, link: LinkId, key: Key, reason: RefuseReason) {
        self.drop_outbound(link, &key);
        self.send_frame(
            link,
            &Frame::Refuse {
                reason,
                keys: vec![key],
            },
        );
    }

    fn start_session(&mut self, link: LinkId, prompted: bool) -> Result<(), EngineError> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        let params = l.recon;
        l.session = Some(Session {
            pending: None,
            sent_at: self.now,
            prompted,
        });
        await_answer(
            &mut self.answer_due,
            self.now,
            l,
            self.config.answer_timeout,
        );
        l.resync = false;
        let msg = recon::initiate(&StoreIds::new(&*self.store, &self.writes), &params)?;
        self.stats.sessions += 1;
        self.send_frame(link, &Frame::ReconRequest(msg));
        Ok(())
    }

    pub(crate) fn on_frame(&mut self, link: LinkId, bytes: &[u8]) -> Result<(), EngineError> {
        let Some(l) = self.links.get_mut(&link) else {
            self.stats.ignored_frames += 1;
            return Ok(());
        };
        if l.closing {
            return Ok(());
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                l.closing = true;
                self.stats.bad_frames += 1;
                self.emit(Output::CloseLink {
                    link,
                    reason: CloseReason::BadFrame(e),
                });
                return Ok(());
            }
        };
        l.prompt_at = None;
        let peer = l.peer_hash;
        match frame {
            Frame::ReconRequest(ranges) => self.on_recon_request(link, &ranges),
            Frame::ReconReply(ranges) => self.on_recon_reply(link, &ranges),
            Frame::Missing(keys) => self.on_missing(link, &keys),
            Frame::Offer { seq, items } => self.on_offer(link, seq, &items),
            Frame::Want { seq, keys } => {
                self.on_want(link, seq, &keys);
                Ok(())
            }
            Frame::Ack(keys) => self.on_ack(link, &keys),
            Frame::Refuse { reason, keys } => {
                self.on_refuse(link, reason, &keys);
                Ok(())
            }
            Frame::Predictability(entries) => {
                self.policy.peer_state(self.now, peer, &entries);
                self.queue_routing_state();
                Ok(())
            }
        }
    }

    fn on_recon_request(&mut self, link: LinkId, ranges: &[Range]) -> Result<(), EngineError> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        if l.session.as_ref().is_some_and(|s| s.prompted) {
            // The peer has begun the reconciliation it was to begin: ours, which
            // it has not answered (it may never have heard it), would only repeat
            // it. A late reply to it is ignored.
            l.session = None;
        }
        let (params, budget) = (l.recon, l.budget);
        let out = recon::process(
            &StoreIds::new(&*self.store, &self.writes),
            Role::Responder,
            ranges,
            &params,
        )?;
        if let Some(reply) = out.reply {
            self.send_frame(link, &Frame::ReconReply(reply));
        }
        self.settled(link, budget, out.need, out.have);
        Ok(())
    }

    /// Ranges an id list settled: tell the peer what we lack, queue what it lacks.
    /// A responder cannot hold the session back, so past [`MAX_LINK_SCANS`]
    /// ranges it drops the rest and reconciles again once idle.
    fn settled(&mut self, link: LinkId, budget: usize, need: Vec<Key>, have: Vec<HaveRange>) {
        for chunk in need.chunks(items_per_frame(budget, KEY_LEN)) {
            self.send_frame(link, &Frame::Missing(chunk.to_vec()));
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for h in have {
            if l.have_scans.len() >= MAX_LINK_SCANS {
                l.resync = true;
                break;
            }
            l.have_scans.push_back(HaveScan {
                lo: h.lo,
                hi: h.hi,
                theirs: h.theirs,
                after: None,
            });
        }
    }

    fn on_recon_reply(&mut self, link: LinkId, ranges: &[Range]) -> Result<(), EngineError> {
        let Some(l) = self.links.get(&link) else {
            return Ok(());
        };
        if l.session.as_ref().is_none_or(|s| s.pending.is_some()) {
            // No request of ours is waiting for this reply.
            self.stats.ignored_frames += 1;
            return Ok(());
        }
        let (params, budget) = (l.recon, l.budget);
        let out = recon::process(
            &StoreIds::new(&*self.store, &self.writes),
            Role::Initiator,
            ranges,
            &params,
        )?;
        self.settled(link, budget, out.need, out.have);
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        match out.reply {
            None => l.session = None,
            Some(next) => {
                let now = self.now;
                if let Some(s) = l.session.as_mut() {
                    s.prompted = false;
                    if l.have_scans.len() <= MAX_HAVE_SCANS {
                        s.sent_at = now;
                        await_answer(&mut self.answer_due, now, l, self.config.answer_timeout);
                        self.send_frame(link, &Frame::ReconRequest(next));
                    } else {
                        s.pending = Some(next);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_missing(&mut self, link: LinkId, keys: &[Key]) -> Result<(), EngineError> {
        // The ids of the keys we hold, looked up before anything is offered (offering
        // does not change the store).
        let ids = StoreIds::new(&*self.store, &self.writes);
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(id) = ids.resolve(key)? {
                held.push(id);
            }
        }
        for id in held {
            if let Some(info) = self.info(&id)? {
                self.offer_or_resync(link, &info)?;
            }
        }
        Ok(())
    }

    /// Considers a bundle for a link; marks the link for a resync if it had no room.
    pub(crate) fn offer_or_resync(
        &mut self,
        link: LinkId,
        info: &RecordInfo,
    ) -> Result<(), EngineError> {
        if self.consider(link, info) == Considered::NoRoom {
            if let Some(l) = self.links.get_mut(&link) {
                l.resync = true;
            }
        }
        Ok(())
    }

    /// Applies the common rules and the policy; offers the bundle if they agree.
    pub(crate) fn consider(&mut self, link: LinkId, info: &RecordInfo) -> Considered {
        let Some(l) = self.links.get(&link) else {
            return Considered::Skipped;
        };
        let peer = l.peer_hash;
        let key = key_of(&info.id);
        let r = &info.meta.routing;
        if l.closing
            || l.outbound.contains_key(&key)
            || self.outgoing.contains(&(info.id, peer))
            || r.copies_left == 0
            || r.holders.contains(&peer)
        {
            return Considered::Skipped;
        }
        // Relays let go of a bundle once its destination or next hop has it; the
        // source keeps it until a receipt proves delivery.
        let relay = info.meta.source != self.own_hash;
        let (split, release) = match info.meta.destination {
            Destination::Group => (0, false),
            Destination::Node(d) if d == self.own_hash => return Considered::Skipped,
            Destination::Node(d) if d == peer => (0, relay),
            Destination::Node(d) => {
                let reserved = self.reserved.get(&info.id).copied().unwrap_or(0);
                let copies = r.copies_left.saturating_sub(reserved);
                let c = Candidate {
                    id: info.id,
                    destination: d,
                    source: info.meta.source,
                    peer,
                    copies,
                };
                match self.policy.decide(&c) {
                    Verdict::Skip => return Considered::Skipped,
                    Verdict::Replicate => (0, false),
                    Verdict::Split { give } if give >= 1 && give <= copies => (give, false),
                    Verdict::Split { .. } => return Considered::Skipped,
                    Verdict::Forward => (0, relay),
                }
            }
        };
        if l.backing_off(self.now) || l.outbound.len() >= self.config.link_queue {
            return Considered::NoRoom;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return Considered::Skipped;
        };
        // On a small-MTU link (serial, LoRa) a bundle that fits one frame and hands over
        // no spray copies is sent at once, without an offer and a want: two packets
        // saved per bundle and hop. Reconciliation already told that the peer lacks it;
        // if it has it after all, it acknowledges it from its seen-set.
        let push = split == 0 && l.caps.mtu.is_some_and(|m| info.size <= u64::from(m));
        let out = Outbound {
            id: info.id,
            split,
            release,
            priority: info.meta.priority,
            insertion: info.insertion,
            tries: 0,
            state: if push {
                OutState::Queued
            } else {
                OutState::Offered {
                    seq: l.next_offer_seq,
                    at: self.now,
                }
            },
        };
        if push {
            l.queue.insert(out.queue_key(key));
            l.outbound.insert(key, out);
            self.outgoing.insert((info.id, peer));
            self.stats.pushed += 1;
            return Considered::Offered;
        }
        l.outbound.insert(key, out);
        await_answer(
            &mut self.answer_due,
            self.now,
            l,
            self.config.answer_timeout,
        );
        l.offer_batch.push(OfferItem {
            id: info.id,
            copies: split.max(1),
        });
        let full = l.offer_batch.len() >= items_per_frame(l.budget, OFFER_ITEM_MAX);
        self.outgoing.insert((info.id, peer));
        if split > 0 {
            *self.reserved.entry(info.id).or_insert(0) += split;
        }
        if full {
            self.flush_offers(link);
        }
        Considered::Offered
    }

    fn flush_offers(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.offer_batch.is_empty() {
            return;
        }
        let items = std::mem::take(&mut l.offer_batch);
        let seq = l.next_offer_seq;
        l.next_offer_seq = l.next_offer_seq.wrapping_add(1);
        self.send_frame(link, &Frame::Offer { seq, items });
    }

    fn on_offer(&mut self, link: LinkId, seq: u32, items: &[OfferItem]) -> Result<(), EngineError> {
        let mut want = Vec::new();
        for it in items {
            let key = key_of(&it.id);
            if self.fetching.contains_key(&key)
                || self.pending_ids.contains(&it.id)
                || self.is_seen(&it.id)?
            {
                continue;
            }
            let Some(l) = self.links.get_mut(&link) else {
                return Ok(());
            };
            if l.wanted.len() >= self.config.link_queue {
                l.resync = true;
                continue;
            }
            l.wanted.insert(key, (it.copies.max(1), self.now));
            await_answer(
                &mut self.answer_due,
                self.now,
                l,
                self.config.answer_timeout,
            );
            self.fetching.insert(key, link);
            want.push(key);
        }
        // Every offer gets exactly one answer, so the peer can release the rest.
        self.send_frame(link, &Frame::Want { seq, keys: want });
        Ok(())
    }

    fn on_want(&mut self, link: LinkId, seq: u32, keys: &[Key]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let offered = |st: &OutState| matches!(st, OutState::Offered { seq: q, .. } if *q == seq);
        let mut ignored = 0;
        for key in keys {
            match l.outbound.get_mut(key) {
                Some(o) if offered(&o.state) => {
                    o.state = OutState::Queued;
                    let qk = o.queue_key(*key);
                    l.queue.insert(qk);
                }
                _ => ignored += 1,
            }
        }
        let declined: Vec<Key> = l
            .outbound
            .iter()
            .filter(|(_, o)| offered(&o.state))
            .map(|(k, _)| *k)
            .collect();
        self.stats.ignored_frames += u64::from(ignored > 0);
        for key in declined {
            self.drop_outbound(link, &key);
        }
    }

    fn on_ack(&mut self, link: LinkId, keys: &[Key]) -> Result<(), EngineError> {
        let Some(peer) = self.links.get(&link).map(|l| l.peer_hash) else {
            return Ok(());
        };
        for key in keys {
            let Some(out) = self.drop_outbound(link, key) else {
                continue;
            };
            // Queued writes: the peer has custody now, and losing these in a crash
            // only makes this node offer the bundle again (the peer declines it).
            if out.release {
                if self.queue_remove(&out.id)? {
                    self.aging.remove(&out.id);
                    self.emit(Output::Removed {
                        id: out.id,
                        reason: RemoveReason::HandedOver { peer },
                    });
                }
                continue;
            }
            self.queue_edit(out.id, RoutingEdit::AddHolder(peer));
            if out.split > 0 {
                self.queue_edit(out.id, RoutingEdit::SpendCopies(out.split));
            }
        }
        Ok(())
    }

    fn on_refuse(&mut self, link: LinkId, reason: RefuseReason, keys: &[Key]) {
        for key in keys {
            if self.drop_outbound(link, key).is_some() {
                continue;
            }
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if l.wanted.remove(key).is_some() && self.fetching.get(key) == Some(&link) {
                self.fetching.remove(key);
            }
        }
        if reason == RefuseReason::StoreFull {
            let until = self.now + self.config.peer_backoff;
            if let Some(l) = self.links.get_mut(&link) {
                l.quiet_until = Some(until);
                l.resync = true;
            }
        }
    }

    pub(crate) fn on_transfer_done(&mut self, link: LinkId, transfer: TransferId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(key) = l.transfers.remove(&transfer) else {
            return;
        };
        if let Some(o) = l.outbound.get_mut(&key) {
            if let OutState::InFlight { bytes, .. } = o.state {
                self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
                o.state = OutState::Sent { at: self.now };
                await_answer(
                    &mut self.answer_due,
                    self.now,
                    l,
                    self.config.answer_timeout,
                );
            }
        }
    }

    /// Drops what a peer left unanswered for [`super::EngineConfig::answer_timeout`]
    /// (a reconciliation round, an offer, a custody acknowledgment, a wanted bundle)
    /// and reconciles again.
    pub(crate) fn sweep_stale(&mut self) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        self.answer_due = None;
        for link in ids {
            let Some(l) = self.links.get(&link) else {
                continue;
            };
            let timeout = l.answer_timeout(self.config.answer_timeout);
            let Some(cutoff) = self.now.0.checked_sub(timeout.0) else {
                continue;
            };
            let (out, wanted) = l.stale(Millis(cutoff));
            let stuck = l
                .session
                .as_ref()
                .is_some_and(|s| s.pending.is_none() && s.sent_at.0 < cutoff);
            if out.is_empty() && wanted.is_empty() && !stuck {
                continue;
            }
            for key in &out {
                self.drop_outbound(link, key);
            }
            for key in &wanted {
                if self.fetching.get(key) == Some(&link) {
                    self.fetching.remove(key);
                }
            }
            if let Some(l) = self.links.get_mut(&link) {
                for key in &wanted {
                    l.wanted.remove(key);
                }
                if stuck {
                    l.session = None;
                }
                l.resync = true;
            }
        }
        // What is still awaited: the earliest it can go stale.
        for l in self.links.values() {
            if let Some(since) = l.oldest_wait() {
                await_answer(&mut self.answer_due, since, l, self.config.answer_timeout);
            }
        }
    }

    pub(crate) fn on_transfer_failed(&mut self, link: LinkId, transfer: TransferId) {
        let max_tries = self.config.max_send_retries;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(key) = l.transfers.remove(&transfer) else {
            return;
        };
        let Some(o) = l.outbound.get_mut(&key) else {
            return;
        };
        let OutState::InFlight { bytes, .. } = o.state else {
            return;
        };
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
        // Back to queued (no transfer any more), for a retry or to be dropped.
        o.state = OutState::Queued;
        o.tries = o.tries.saturating_add(1);
        if o.tries < max_tries {
            let qk = o.queue_key(key);
            l.queue.insert(qk);
        } else {
            // Give up for now and say so; a later reconciliation finds it again.
            l.quiet_until = Some(self.now + self.config.peer_backoff);
            l.resync = true;
            self.refuse_outbound(link, key, RefuseReason::Cancelled);
        }
    }

    /// Per link: stream have-scans into offers, send a held reconciliation round,
    /// start a resync when idle, flush the offer batch.
    pub(crate) fn drive_links(&mut self) -> Result<(), EngineError> {
        let mut cursor = None;
        while let Some(link) = self.link_after(cursor) {
            cursor = Some(link);
            if !self.room() {
                self.deferred = true;
                return Ok(());
            }
            self.run_have_scans(link)?;
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            if l.have_scans.len() <= MAX_HAVE_SCANS {
                let now = self.now;
                if let Some(s) = l.session.as_mut() {
                    if let Some(next) = s.pending.take() {
                        s.sent_at = now;
                        await_answer(&mut self.answer_due, now, l, self.config.answer_timeout);
                        self.send_frame(link, &Frame::ReconRequest(next));
                    }
                }
            }
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            // A prompt that came due: the peer has said nothing since the contact
            // began, so start ourselves.
            let prompt = l.prompt_at.is_some_and(|t| self.now >= t);
            if prompt {
                l.prompt_at = None;
            }
            let prompted = prompt && l.session.is_none();
            let start = prompted || (l.resync && l.idle() && !l.backing_off(self.now));
            if start && !l.closing {
                self.start_session(link, prompted)?;
            }
            self.flush_offers(link);
        }
        Ok(())
    }

    fn run_have_scans(&mut self, link: LinkId) -> Result<(), EngineError> {
        if self
            .links
            .get(&link)
            .is_none_or(|l| l.have_scans.is_empty())
        {
            return Ok(());
        }
        // One record's metadata at a time, read into a value kept between scans.
        let mut scratch = self.info_scratch.take();
        let r = self.run_have_scans_with(link, &mut scratch);
        self.info_scratch = scratch;
        r
    }

    fn run_have_scans_with(
        &mut self,
        link: LinkId,
        scratch: &mut Option<Box<RecordInfo>>,
    ) -> Result<(), EngineError> {
        let mut budget = SCAN_BUDGET;
        loop {
            let Some(l) = self.links.get(&link) else {
                return Ok(());
            };
            if l.closing || l.backing_off(self.now) || l.outbound.len() >= self.config.link_queue {
                // Waits for acks or the end of the back-off.
                return Ok(());
            }
            let Some(scan) = l.have_scans.front() else {
                return Ok(());
            };
            if budget == 0 {
                self.deferred = true;
                return Ok(());
            }
            let (lo, hi, after) = (scan.lo, scan.hi, scan.after);
            let limit = budget.min(SCAN_PAGE);
            let mut ids = Vec::with_capacity(limit);
            let mut cursor = after.or(before(&lo));
            let mut finished = false;
            let mut size = FIRST_SCAN_PAGE;
            while ids.len() < limit {
                let page = ids_after(
                    &*self.store,
                    &self.writes,
                    cursor.as_ref(),
                    (limit - ids.len()).min(size),
                )?;
                size = next_page(size);
                for id in page.ids {
                    if !hi.above(&key_of(&id)) {
                        finished = true;
                        break;
                    }
                    if key_of(&id) >= lo {
                        ids.push(id);
                    }
                }
                match page.next {
                    Some(n) if !finished => cursor = Some(n),
                    _ => {
                        finished = true;
                        break;
                    }
                }
            }
            budget = budget.saturating_sub(ids.len().max(1));
            let mut last = cursor;
            for id in &ids {
                let theirs = self
                    .links
                    .get(&link)
                    .and_then(|l| l.have_scans.front())
                    .is_some_and(|s| s.theirs.binary_search(&key_of(id)).is_ok());
                if !theirs {
                    let found = match scratch.as_mut() {
                        Some(info) => self.info_into(id, info)?,
                        None => {
                            *scratch = self.info(id)?.map(Box::new);
                            scratch.is_some()
                        }
                    };
                    if let Some(info) = scratch.as_deref().filter(|_| found) {
                        if self.consider(link, info) == Considered::NoRoom {
                            // Resume at this id when there is room.
                            if let Some(s) = self
                                .links
                                .get_mut(&link)
                                .and_then(|l| l.have_scans.front_mut())
                            {
                                s.after = last;
                            }
                            return Ok(());
                        }
                    }
                }
                last = Some(*id);
            }
            let Some(l) = self.links.get_mut(&link) else {
                return Ok(());
            };
            if finished {
                l.have_scans.pop_front();
            } else if let Some(s) = l.have_scans.front_mut() {
                s.after = last;
            }
        }
    }

    /// Hands wanted bundles to links: one per link per turn, round-robin, within
    /// each link's `max_in_flight` and the engine's in-flight byte budget.
    pub(crate) fn pump_sends(&mut self) -> Result<(), EngineError> {
        self.medium_hold_until = None;
        loop {
            if self.links.values().all(|l| l.queue.is_empty()) {
                return Ok(());
            }
            if !self.room() {
                self.deferred = true;
                return Ok(());
            }
            let order: Vec<LinkId> = match self.rr_after {
                Some(a) => self
                    .links
                    .range(a..)
                    .filter(|(k, _)| **k != a)
                    .chain(self.links.range(..=a))
                    .map(|(k, _)| *k)
                    .collect(),
                None => self.links.keys().copied().collect(),
            };
            let mut progressed = false;
            for link in order {
                if self.send_one(link)? {
                    progressed = true;
                    self.rr_after = Some(link);
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Starts one transfer on `link` if it has a wanted bundle and a free slot.
    fn send_one(&mut self, link: LinkId) -> Result<bool, EngineError> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(false);
        };
        let window = usize::try_from(l.caps.max_in_flight.max(1)).unwrap_or(usize::MAX);
        if l.closing || l.in_flight() >= window {
            return Ok(false);
        }
        if self.in_flight_bytes > 0 && self.in_flight_bytes >= self.config.max_in_flight_bytes {
            return Ok(false);
        }
        let next = if l.caps.medium.is_some() {
            let qk = self.next_on_medium(link);
            if let (Some(qk), Some(l)) = (qk, self.links.get_mut(&link)) {
                l.queue.remove(&qk);
            }
            qk
        } else {
            l.queue.pop_first()
        };
        let Some(qk) = next else {
            return Ok(false);
        };
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(false);
        };
        let key = qk.2;
        let peer = l.peer_hash;
        let Some(id) = l.outbound.get(&key).map(|o| o.id) else {
            return Ok(true);
        };
        let rec = match self.record(&id) {
            Ok(Some(rec)) => rec,
            Ok(None) | Err(StoreError::Quarantined { .. }) => {
                self.refuse_outbound(link, key, RefuseReason::Gone);
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let reaches = match rec.info.meta.destination {
            Destination::Group => true,
            Destination::Node(d) => d == peer,
        };
        let bytes = match self.forwarded(rec, reaches)? {
            Forwarded::Ready(bytes) => bytes,
            Forwarded::Unreadable => {
                self.drop_outbound(link, &key);
                self.send_frame(
                    link,
                    &Frame::Refuse {
                        reason: RefuseReason::Gone,
                        keys: vec![key],
                    },
                );
                return Ok(true);
            }
            Forwarded::HopLimit => {
                self.refuse_outbound(link, key, RefuseReason::HopLimit);
                return Ok(true);
            }
        };
        let transfer = TransferId(self.next_transfer);
        self.next_transfer += 1;
        let size = bytes.len() as u64;
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(false);
        };
        if let Some(o) = l.outbound.get_mut(&key) {
            o.state = OutState::InFlight {
                transfer,
                bytes: size,
            };
        }
        l.transfers.insert(transfer, key);
        self.in_flight_bytes += size;
        self.stats.bundles_sent += 1;
        self.stats.bundle_bytes_sent += size;
        self.emit(Output::SendBundle {
            link,
            transfer,
            id,
            bytes,
        });
        Ok(true)
    }
}

/// Most queued bundles of a shared-medium link looked at for one not on hold.
const HOLD_SCAN: usize = 32;

/// How long to wait for a neighbour to speak: 16 frame airtimes at the link's
/// nominal rate, within 2 to 60 s (2 s when the rate is unknown). A bundle one
/// neighbour on a shared medium wants waits this long for another neighbour there
/// that was offered it and has not answered; the side that lets its peer start
/// reconciling waits this long before it starts itself.
pub(crate) fn patience(caps: &LinkCaps) -> Millis {
    let frame_ms = match (caps.mtu, caps.bitrate_bps) {
        (Some(mtu), Some(bps)) if bps > 0 => u64::from(mtu) * 8 * 1000 / bps,
        _ => 0,
    };
    Millis(frame_ms.saturating_mul(16).clamp(2_000, 60_000))
}

impl<S: CustodyStore> Engine<S> {
    /// The next queued bundle of `link` (a link on a shared medium) that is not on
    /// hold. A bundle is on hold while another link of the same medium was offered it
    /// less than [`patience`] ago and has not answered: when that neighbour wants it
    /// too, both transfers start together and the link layer puts the bundle on air
    /// once for both; radios are half-duplex, so a neighbour whose answer comes while
    /// a long transmission has begun would otherwise wait it out and get its own copy.
    /// Nothing waits for a link that is closing, or whose neighbour left an offer
    /// unanswered for longer than the hold (it has stopped answering: each new bundle
    /// would wait the whole hold for it). Records when the earliest hold ends, for
    /// [`Engine::poll_timeout`].
    fn next_on_medium(&mut self, link: LinkId) -> Option<QueueKey> {
        let (pick, until) = {
            let l = self.links.get(&link)?;
            let medium = l.caps.medium?;
            let hold = patience(&l.caps);
            let now = self.now;
            let answering: Vec<&Link> = self
                .links
                .iter()
                .filter(|(other, m)| **other != link && m.caps.medium == Some(medium) && !m.closing)
                .map(|(_, m)| m)
                .filter(|m| {
                    !m.outbound.values().any(
                        |o| matches!(o.state, OutState::Offered { at, .. } if at + hold <= now),
                    )
                })
                .collect();
            if answering.is_empty() {
                return l.queue.first().copied();
            }
            let mut until: Option<Millis> = None;
            let mut pick = None;
            for qk in l.queue.iter().take(HOLD_SCAN) {
                let held = answering
                    .iter()
                    .filter_map(|m| match m.outbound.get(&qk.2)?.state {
                        OutState::Offered { at, .. } => Some(at + hold),
                        _ => None,
                    })
                    .max();
                match held {
                    Some(end) => until = Some(until.map_or(end, |u| u.min(end))),
                    None => {
                        pick = Some(*qk);
                        break;
                    }
                }
            }
            (pick, until)
        };
        if let Some(end) = until {
            self.medium_hold_until = Some(self.medium_hold_until.map_or(end, |u| u.min(end)));
        }
        pick
    }

    /// The first link after `after` (the first of all for `None`), ascending: walks
    /// the links while the loop body may add or remove some.
    fn link_after(&self, after: Option<LinkId>) -> Option<LinkId> {
        use std::ops::Bound::{Excluded, Unbounded};
        match after {
            None => self.links.keys().next().copied(),
            Some(a) => self
                .links
                .range((Excluded(a), Unbounded))
                .next()
                .map(|(k, _)| *k),
        }
    }
}

/// A stored bundle made ready for one more hop.
pub(crate) enum Forwarded {
    /// Its bytes with the envelope updated (one more hop, age).
    Ready(Vec<u8>),
    /// One more hop would pass its limit (or reach it short of the destination).
    HopLimit,
    /// Its stored bytes do not decode: it was removed.
    Unreadable,
}

impl<S: CustodyStore> Engine<S> {
    /// Prepares `rec` for one more hop: the hop-limit rules (a bundle that would
    /// arrive at its limit goes only to a destination, `reaches`), the envelope
    /// update. An unreadable record is removed.
    pub(crate) fn forwarded(
        &mut self,
        rec: ferry_storage::Record,
        reaches: bool,
    ) -> Result<Forwarded, EngineError> {
        let id = rec.info.id;
        let held = self.held_secs(&id, &rec.info);
        let mut bytes = rec.bytes;
        let Ok(env) = read_envelope(&bytes) else {
            if self.queue_remove(&id)? {
                self.aging.remove(&id);
                self.emit(Output::Removed {
                    id,
                    reason: RemoveReason::Unreadable,
                });
            }
            return Ok(Forwarded::Unreadable);
        };
        let next = u16::from(env.hop_count) + 1;
        let limit = u16::from(env.hop_limit);
        if next > limit
            || (next == limit && !reaches)
            || forward_in_place(&mut bytes, held).is_err()
        {
            return Ok(Forwarded::HopLimit);
        }
        Ok(Forwarded::Ready(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_the_largest_id_below_a_key() {
        assert_eq!(before(&[0; 16]), None);
        let mut k = [0u8; 16];
        k[0] = 1;
        let b = before(&k).unwrap();
        assert_eq!(b.0[0], 0);
        assert!(b.0[1..].iter().all(|&x| x == 0xff));
        assert!(key_of(&b) < k);
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&k);
        assert!(b < BundleId(id));
    }

    type Visit<'a> = &'a mut dyn FnMut(&BundleId) -> bool;

    /// A small store read once per step and a large one read page by page give the
    /// same scans as a sorted slice of the same ids, queued removals left out, and
    /// resolve keys to the ids held.
    #[test]
    fn store_scans_and_lookups_match_a_sorted_slice_for_small_and_large_stores() {
        use ferry_storage::conformance::rec;
        use ferry_storage::{MemStore, StoreConfig};
        for n in [
            0u64,
            1,
            40,
            SMALL_STORE_IDS as u64,
            SMALL_STORE_IDS as u64 + 1,
            700,
        ] {
            let store = MemStore::new(StoreConfig::default());
            let records: Vec<_> = (0..n).map(|i| rec(i, 8)).collect();
            store.insert_batch(&records).unwrap();
            let mut writes = Writes::default();
            // Every seventh record's removal is queued: scans leave it out.
            for r in records.iter().step_by(7) {
                writes.push_remove(r.id, Millis(1));
            }
            let mut expected: Vec<BundleId> = records
                .iter()
                .map(|r| r.id)
                .filter(|id| !writes.removed(id))
                .collect();
            expected.sort();
            let ids = StoreIds::new(&store, &writes);
            let ranges = [
                ([0u8; 16], Bound::Infinity),
                ([0x40; 16], Bound::Key([0xc0; 16])),
                ([0x80; 16], Bound::Key([0x81; 16])),
                ([0xff; 16], Bound::Infinity),
            ];
            for (lo, hi) in ranges {
                for stop_after in [1usize, 3, usize::MAX] {
                    let collect = |src: &dyn Fn(Visit<'_>)| {
                        let mut got = Vec::new();
                        src(&mut |id| {
                            got.push(*id);
                            got.len() < stop_after
                        });
                        got
                    };
                    let from_store = collect(&|f| ids.scan(&lo, &hi, f).unwrap());
                    let from_slice = collect(&|f| {
                        let Ok(()) = expected.as_slice().scan(&lo, &hi, f);
                    });
                    assert_eq!(from_store, from_slice, "{n} ids, {lo:?}..{hi:?}");
                }
            }
            for r in records.iter().take(20) {
                let want = (!writes.removed(&r.id)).then_some(r.id);
                assert_eq!(ids.resolve(&key_of(&r.id)).unwrap(), want, "{n} ids");
            }
            let absent = ferry_storage::conformance::id(n + 1);
            assert_eq!(ids.resolve(&key_of(&absent)).unwrap(), None);
            // At exactly the page size a store may or may not say the page is the
            // last (MemStore does not); below it every store does.
            let small = ids.small.get().cloned().flatten().is_some();
            let limit = SMALL_STORE_IDS as u64;
            assert!(n == limit || small == (n < limit), "{n} ids: small {small}");
        }
    }
}
