//! Custody: receiving and submitting bundles, group commit, local delivery,
//! receipts, expiry.

use std::collections::{BTreeMap, BTreeSet};

use ferry_cl_api::LinkId;
use ferry_core::rand_core::{CryptoRng, RngCore};
use ferry_core::{
    Bundle, BundleId, Destination, Envelope, Header, OpenError, Opened, PayloadKind, Priority,
    RealmTag, Recipient, SealParams,
};
use ferry_storage::{
    BundleMeta, CustodyState, CustodyStore, DestinationCursor, InsertOutcome, NewRecord,
    RecordInfo, RoutingEdit, RoutingMeta, StoreError, WriteOp, WriteOutcome,
};

use super::frame::{key_of, Frame, Key, RefuseReason};
use super::receipt::{decode_receipt, encode_receipt, MAX_RECEIPT_IDS};
use super::time::Millis;
use super::{Engine, EngineError, Origin, Output, RemoveReason};

/// Shortest receipt lifetime, in seconds.
const MIN_RECEIPT_LIFETIME: u32 = 60;
/// Records removed per expiry purge call; a purge makes at most 16 calls.
const PURGE_PAGE: usize = 256;
/// Ciphertexts up to this size are opened whole on arrival even when the driver
/// reads payloads back itself (see [`Engine::open_here`]).
const WHOLE_OPEN_MAX: usize = 4096;
/// Records looked at per redelivery step.
const REDELIVER_PAGE: usize = 64;

/// A bundle waiting in the commit buffer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub bundle: Bundle,
    pub origin: Origin,
    /// Spray copies it is stored with.
    pub copies: u32,
    /// Links to acknowledge custody on once it is committed.
    pub acks: Vec<LinkId>,
    /// Monotonic arrival time (the start of the time held here).
    pub received: Millis,
    /// For a receipt this node created: the ids it lists.
    pub receipt_ids: Vec<BundleId>,
}

/// What the engine keeps of a bundle once its bytes have gone into the commit's
/// records (so that a large bundle is not copied for the store).
#[derive(Debug)]
pub(crate) struct Head {
    pub id: BundleId,
    pub header: Header,
    pub envelope: Envelope,
}

impl Head {
    pub(crate) fn of(b: &Bundle) -> Self {
        Self {
            id: b.id(),
            header: b.header().clone(),
            envelope: *b.envelope(),
        }
    }
}

/// Most delivered bundles whose [`DeliveredHead`] is kept for their ack; past it
/// an ack reads the bundle back from the store instead.
pub(crate) const MAX_DELIVERED_HEADS: usize = 4096;

/// What the receipt for a delivered bundle needs of it: its realm, and what its
/// remaining lifetime is computed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliveredHead {
    realm_tag: RealmTag,
    lifetime: u32,
    expires_at: Option<u64>,
    age: Option<u64>,
}

impl DeliveredHead {
    fn of(header: &Header, envelope: &Envelope) -> Self {
        Self {
            realm_tag: header.realm_tag,
            lifetime: header.lifetime,
            expires_at: header.expires_at(),
            age: envelope.age,
        }
    }
}

/// A [`Pending`] bundle in a commit: its bytes are in the records.
#[derive(Debug)]
pub(crate) struct Committing {
    pub head: Head,
    pub origin: Origin,
    pub acks: Vec<LinkId>,
    pub received: Millis,
    pub receipt_ids: Vec<BundleId>,
}

/// Age-based bundles received while this node had no wall clock: when they arrived
/// (monotonic) and when their lifetime ends. Bounded by
/// [`super::EngineConfig::max_aging`].
#[derive(Debug, Default)]
pub(crate) struct AgeTable {
    by_id: BTreeMap<BundleId, (Millis, Millis)>,
    by_expiry: BTreeSet<(Millis, BundleId)>,
}

impl AgeTable {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert(&mut self, id: BundleId, since: Millis, expires: Millis) {
        self.remove(&id);
        self.by_id.insert(id, (since, expires));
        self.by_expiry.insert((expires, id));
    }

    pub(crate) fn remove(&mut self, id: &BundleId) {
        if let Some((_, e)) = self.by_id.remove(id) {
            self.by_expiry.remove(&(e, *id));
        }
    }

    pub(crate) fn since(&self, id: &BundleId) -> Option<Millis> {
        self.by_id.get(id).map(|(s, _)| *s)
    }

    fn pop_expired(&mut self, now: Millis) -> Option<BundleId> {
        let &(e, id) = self.by_expiry.first()?;
        if e > now {
            return None;
        }
        self.remove(&id);
        Some(id)
    }
}

/// Redelivery of bundles left delivered but unacknowledged by an earlier run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Redeliver {
    Node(Option<DestinationCursor>),
    Group(Option<DestinationCursor>),
    Done,
}

impl Redeliver {
    pub(crate) fn start() -> Self {
        Redeliver::Node(None)
    }

    pub(crate) fn done(&self) -> bool {
        matches!(self, Redeliver::Done)
    }
}

/// The randomness handed to `Keyring::seal` for receipts. Group sealing draws none
/// (no ephemeral key); this deterministic generator keeps the engine free of OS
/// randomness and replayable.
struct SealRng {
    reader: blake3::OutputReader,
}

impl SealRng {
    fn new(node: &[u8; 32], counter: u64) -> Self {
        let mut h = blake3::Hasher::new_derive_key("ferry v1 engine seal rng");
        h.update(node);
        h.update(&counter.to_le_bytes());
        Self {
            reader: h.finalize_xof(),
        }
    }
}

impl RngCore for SealRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.reader.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.reader.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.reader.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), ferry_core::rand_core::Error> {
        self.reader.fill(dest);
        Ok(())
    }
}

impl CryptoRng for SealRng {}

impl<S: CustodyStore> Engine<S> {
    /// Seconds this node has held a bundle (rounded up).
    pub(crate) fn held_secs(&self, id: &BundleId, info: &RecordInfo) -> u64 {
        if let Some(since) = self.aging.since(id) {
            return self.now.since(since).ceil_secs();
        }
        match self.wall_secs() {
            Some(w) if info.meta.received_at > 0 => w.saturating_sub(info.meta.received_at),
            _ => 0,
        }
    }

    /// How long the commit buffer may wait: the commit delay, or the carrier commit
    /// delay while only carrier imports wait.
    pub(crate) fn pending_delay(&self) -> Millis {
        if self.pending_live > 0 {
            self.config.commit_delay
        } else {
            self.config.carrier_commit_delay
        }
    }

    pub(crate) fn pending_full(&self) -> bool {
        let batch = if self.pending_live > 0 {
            self.config.commit_batch
        } else {
            self.config.carrier_commit_batch
        };
        self.pending.len() >= batch.max(1) || self.pending_bytes >= self.config.commit_batch_bytes
    }

    /// Whether one more age-based bundle fits the clockless age table.
    pub(crate) fn aging_has_room(&self) -> bool {
        let waiting = self
            .pending
            .iter()
            .filter(|p| p.bundle.envelope().age.is_some())
            .count();
        self.aging.len() + waiting < self.config.max_aging
    }

    pub(crate) fn push_pending(&mut self, p: Pending) -> Result<(), EngineError> {
        self.pending_bytes = self
            .pending_bytes
            .saturating_add(p.bundle.encoded_len() as u64);
        self.pending_since.get_or_insert(self.now);
        let carried = matches!(p.origin, Origin::Peer { link, .. } if self.is_carrier(&link));
        self.pending_live += usize::from(!carried);
        self.pending_ids.insert(p.bundle.id());
        self.pending.push(p);
        if self.pending_full() {
            self.flush()?;
        }
        Ok(())
    }

    fn refuse_peer(&mut self, link: LinkId, id: BundleId, reason: RefuseReason) {
        if self.is_carrier(&link) {
            self.emit_imported(link, id, super::ImportOutcome::Refused(reason));
            return;
        }
        if let Some(l) = self.links.get(&link) {
            let origin = Origin::Peer {
                link,
                peer: l.peer_hash,
            };
            self.send_frame(
                link,
                &Frame::Refuse {
                    reason,
                    keys: vec![key_of(&id)],
                },
            );
            self.emit(Output::Refused { id, origin, reason });
        }
    }

    pub(crate) fn on_received(&mut self, link: LinkId, bundle: Bundle) -> Result<(), EngineError> {
        let id = bundle.id();
        let key = key_of(&id);
        let Some(l) = self.links.get_mut(&link) else {
            self.stats.ignored_frames += 1;
            return Ok(());
        };
        if l.closing {
            return Ok(());
        }
        let peer = l.peer_hash;
        let copies = l.wanted.remove(&key).map_or(1, |(c, _)| c).max(1);
        if self.fetching.get(&key) == Some(&link) {
            self.fetching.remove(&key);
        }
        let for_us = self.keyring.is_for_us(&bundle);
        let env = *bundle.envelope();
        if env.hop_count >= bundle.header().hop_limit && !for_us {
            self.refuse_peer(link, id, RefuseReason::HopLimit);
            return Ok(());
        }
        if !self.pending_ids.contains(&id) {
            // Not buffered: the common case, without a scan of the buffer.
        } else if let Some(p) = self.pending.iter_mut().find(|p| p.bundle.id() == id) {
            if !p.acks.contains(&link) {
                p.acks.push(link);
            }
            return Ok(());
        }
        if self.is_seen(&id)? {
            // Committed earlier (or delivered and released): safe to acknowledge.
            // (Recording the peer as a holder is a queued write: losing it only
            // costs a useless offer later.)
            self.queue_edit(id, RoutingEdit::AddHolder(peer));
            self.send_frame(link, &Frame::Ack(vec![key]));
            return Ok(());
        }
        if env.age.is_some() && self.wall.is_none() && !self.aging_has_room() {
            self.refuse_peer(link, id, RefuseReason::NotAccepted);
            return Ok(());
        }
        self.push_pending(Pending {
            bundle,
            origin: Origin::Peer { link, peer },
            copies,
            acks: vec![link],
            received: self.now,
            receipt_ids: Vec::new(),
        })
    }

    pub(crate) fn on_submit(&mut self, bundle: Bundle) -> Result<(), EngineError> {
        if bundle.header().source != self.keyring.node_id() {
            return Err(EngineError::NotLocal);
        }
        if self.keyring.check_realm(&bundle).is_err() {
            return Err(EngineError::ForeignRealm);
        }
        if self.pending_ids.contains(&bundle.id()) {
            return Ok(());
        }
        let copies = self.policy.initial_copies();
        self.push_pending(Pending {
            bundle,
            origin: Origin::Local,
            copies,
            acks: Vec::new(),
            received: self.now,
            receipt_ids: Vec::new(),
        })
    }

    /// Opens a bundle this node is to deliver (its payload is for a local app, or
    /// it is a receipt to apply); `None` for the others.
    fn open_for_delivery(&self, p: &Pending) -> Option<Result<Opened, OpenError>> {
        let b = &p.bundle;
        let group = b.header().destination == Destination::Group;
        let deliver = self.keyring.is_for_us(b)
            && match p.origin {
                Origin::Receipt => false,
                Origin::Local => !group,
                Origin::Peer { .. } => true,
            };
        deliver.then(|| self.open_here(b))
    }

    /// Opens a verified bundle addressed here, for [`Engine::deliver_opened`]. When
    /// the driver reads payloads back from the store itself (`deliver_payload`
    /// off), only authenticates it and learns its kind and endpoint, without
    /// decrypting it (for a 100 MiB payload: one MAC pass, no 100 MiB copy).
    /// Receipts are applied here, so they are opened whole.
    fn open_here(&self, b: &Bundle) -> Result<Opened, OpenError> {
        // A small bundle (receipts, messages, calls) is opened whole in one pass: a
        // head-only open followed by a whole one (for a receipt) costs two key
        // derivations and two MAC set-ups, which is what opening costs at that size.
        if self.config.deliver_payload || b.ciphertext().len() <= WHOLE_OPEN_MAX {
            return self.keyring.open_verified(b);
        }
        let head = self.keyring.open_head_verified(b)?;
        if head.kind == PayloadKind::Receipt {
            return self.keyring.open_verified(b);
        }
        Ok(Opened {
            kind: head.kind,
            endpoint: head.endpoint,
            fragment: head.fragment,
            payload: Vec::new(),
        })
    }

    /// The record to store for `p`, which takes the bundle's bytes, and what the
    /// engine keeps of it meanwhile.
    fn record_for(
        &self,
        p: Pending,
        opened: Option<&Result<Opened, OpenError>>,
    ) -> (Committing, NewRecord) {
        let b = &p.bundle;
        let h = b.header();
        let env = b.envelope();
        let expires_at = match (b.expires_at(), env.age, self.wall_secs()) {
            (Some(e), _, _) => Some(e),
            (None, Some(age), Some(w)) => {
                Some(w.saturating_add(u64::from(h.lifetime).saturating_sub(age)))
            }
            _ => None,
        };
        let holders = match p.origin {
            Origin::Peer { peer, .. } => vec![peer],
            _ => Vec::new(),
        };
        let copies_left = if env.hop_count >= h.hop_limit {
            0
        } else {
            p.copies
        };
        let meta = BundleMeta {
            priority: h.priority,
            destination: h.destination,
            source: h.source.hash(),
            expires_at,
            received_at: self.wall_secs().unwrap_or(0),
            routing: RoutingMeta {
                holders,
                copies_left,
                // A payload for a local app is stored already delivered, in the
                // same commit: after a crash it is delivered again.
                custody: match opened {
                    Some(Ok(o)) if o.kind != PayloadKind::Receipt => CustodyState::Delivered,
                    _ => CustodyState::Held,
                },
            },
        };
        let head = Head::of(b);
        let record = NewRecord {
            id: head.id,
            bytes: p.bundle.into_encoded(),
            meta,
        };
        let c = Committing {
            head,
            origin: p.origin,
            acks: p.acks,
            received: p.received,
            receipt_ids: p.receipt_ids,
        };
        (c, record)
    }

    /// Commits the buffer and the queued writes in one transaction (one
    /// `apply_batch`), then acknowledges, delivers and offers what was stored.
    pub(crate) fn flush(&mut self) -> Result<(), EngineError> {
        self.pending_since = None;
        self.pending_bytes = 0;
        self.pending_live = 0;
        self.pending_ids.clear();
        if self.pending.is_empty() {
            return self.flush_writes();
        }
        let batch = std::mem::take(&mut self.pending);
        // Bundles to deliver here are opened before the commit, so that they are
        // stored already marked delivered.
        let opened: Vec<Option<Result<Opened, OpenError>>> =
            batch.iter().map(|p| self.open_for_delivery(p)).collect();
        let mut ops = self.writes.take();
        let n = ops.len();
        let mut batch_c = Vec::with_capacity(batch.len());
        for (p, o) in batch.into_iter().zip(&opened) {
            let (c, r) = self.record_for(p, o.as_ref());
            batch_c.push(c);
            ops.push(WriteOp::Insert(r));
        }
        let batch = batch_c;
        self.stats.commits += 1;
        let mut acks: BTreeMap<LinkId, Vec<Key>> = BTreeMap::new();
        // The first error is returned once everything committed is acknowledged.
        let mut failure: Option<EngineError> = None;
        let result = match self.store.apply_batch(&ops) {
            Ok(out) => Ok(out
                .into_iter()
                .skip(n)
                .filter_map(|o| match o {
                    WriteOutcome::Inserted(i) => Some(i),
                    _ => None,
                })
                .collect::<Vec<_>>()),
            Err(e) => {
                let records: Vec<NewRecord> = ops
                    .drain(n..)
                    .filter_map(|op| match op {
                        WriteOp::Insert(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                if n == 0 {
                    Err((e, records))
                } else {
                    // The queued writes may be what failed: commit them alone, then
                    // the bundles alone (the writes may have made room).
                    self.stats.commits += 2;
                    if let Err(we) = self.store.apply_batch(&ops) {
                        failure.get_or_insert(we.into());
                    }
                    self.store.insert_batch(&records).map_err(|e| (e, records))
                }
            }
        };
        // A bundle stored now may expire before the purge planned for an idle node.
        if let Ok(due) = self.purge_due() {
            self.next_purge = self.next_purge.min(due);
        }
        match result {
            Ok(outcomes) => {
                for ((p, o), opened) in batch.into_iter().zip(outcomes).zip(opened) {
                    if let Err(e) = self.committed(p, o, opened, &mut acks) {
                        failure.get_or_insert(e);
                    }
                }
            }
            Err((StoreError::StoreFull { .. }, records)) => {
                // Store what still fits, one by one; refuse the rest.
                for ((p, r), opened) in batch.into_iter().zip(&records).zip(opened) {
                    self.stats.commits += 1;
                    match self.store.insert(r) {
                        Ok(o) => {
                            if let Err(e) = self.committed(p, o, opened, &mut acks) {
                                failure.get_or_insert(e);
                            }
                        }
                        Err(StoreError::StoreFull { .. }) => {
                            self.refuse(p, RefuseReason::StoreFull)
                        }
                        Err(e) => {
                            self.refuse(p, RefuseReason::NotAccepted);
                            failure.get_or_insert(e.into());
                        }
                    }
                }
            }
            Err((e, _)) => {
                for p in batch {
                    self.refuse(p, RefuseReason::NotAccepted);
                }
                failure = Some(e.into());
            }
        }
        for (link, keys) in acks {
            let budget = self.links.get(&link).map_or(0, |l| l.budget);
            let n = super::frame::items_per_frame(budget, super::frame::KEY_LEN);
            for chunk in keys.chunks(n) {
                self.send_frame(link, &Frame::Ack(chunk.to_vec()));
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn refuse(&mut self, p: Committing, reason: RefuseReason) {
        let id = p.head.id;
        if let Origin::Peer { link, .. } = p.origin {
            if self.is_carrier(&link) {
                self.refuse_peer(link, id, reason);
            }
        }
        for link in p.acks {
            self.refuse_peer(link, id, reason);
        }
        if !matches!(p.origin, Origin::Peer { .. }) {
            self.emit(Output::Refused {
                id,
                origin: p.origin,
                reason,
            });
        }
    }

    fn committed(
        &mut self,
        p: Committing,
        outcome: InsertOutcome,
        opened: Option<Result<Opened, OpenError>>,
        acks: &mut BTreeMap<LinkId, Vec<Key>>,
    ) -> Result<(), EngineError> {
        let id = p.head.id;
        for link in &p.acks {
            if self.links.get(link).is_some_and(|l| !l.closing) {
                acks.entry(*link).or_default().push(key_of(&id));
            }
        }
        if let Origin::Peer { link, .. } = p.origin {
            if self.is_carrier(&link) {
                let o = match outcome {
                    InsertOutcome::Inserted => super::ImportOutcome::Stored,
                    InsertOutcome::Duplicate { .. } => super::ImportOutcome::Duplicate,
                };
                self.emit_imported(link, id, o);
            }
        }
        match outcome {
            InsertOutcome::Inserted => {
                if let (Some(age), None) = (p.head.envelope.age, self.wall) {
                    let left = u64::from(p.head.header.lifetime).saturating_sub(age);
                    self.aging
                        .insert(id, p.received, p.received + Millis::from_secs(left));
                }
                match p.origin {
                    Origin::Receipt => self.emit(Output::ReceiptEmitted {
                        receipt: id,
                        ids: p.receipt_ids.clone(),
                    }),
                    origin => self.emit(Output::Stored { id, origin }),
                }
                self.after_store(&p, opened)
            }
            InsertOutcome::Duplicate { still_stored } => {
                if let Origin::Peer { peer, .. } = p.origin {
                    if still_stored {
                        self.queue_edit(id, RoutingEdit::AddHolder(peer));
                    }
                } else if p.origin == Origin::Local {
                    self.emit(Output::Stored {
                        id,
                        origin: Origin::Local,
                    });
                }
                Ok(())
            }
        }
    }

    /// Delivers what is for us and offers what may go on to the links up now.
    fn after_store(
        &mut self,
        p: &Committing,
        opened: Option<Result<Opened, OpenError>>,
    ) -> Result<(), EngineError> {
        let b = &p.head;
        let id = b.id;
        if let Some(opened) = opened {
            if !self.deliver_opened(b, opened)? {
                return Ok(());
            }
        }
        let forwardable = match b.header.destination {
            Destination::Group => true,
            Destination::Node(h) => h != self.own_hash,
        };
        // (No link up, e.g. during a drive import: nothing to offer, no store read.)
        if !forwardable || self.links.is_empty() {
            return Ok(());
        }
        let Some(info) = self.info(&id)? else {
            return Ok(());
        };
        let from = match p.origin {
            Origin::Peer { link, .. } => Some(link),
            _ => None,
        };
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            if Some(link) != from {
                self.offer_or_resync(link, &info)?;
            }
        }
        Ok(())
    }

    /// Acts on a bundle addressed here, opened: a receipt is applied, anything else
    /// delivered (its record is stored with custody `Delivered` already). Returns
    /// `false` if it could not be opened (it is then removed).
    fn deliver_opened(
        &mut self,
        b: &Head,
        opened: Result<Opened, OpenError>,
    ) -> Result<bool, EngineError> {
        let id = b.id;
        match opened {
            Ok(opened) if opened.kind == PayloadKind::Receipt => {
                self.apply_receipt(b, &opened.payload)?;
                Ok(true)
            }
            Ok(opened) => {
                if self.delivered_heads.len() < MAX_DELIVERED_HEADS {
                    self.delivered_heads
                        .insert(id, DeliveredHead::of(&b.header, &b.envelope));
                }
                let payload = if self.config.deliver_payload {
                    opened.payload
                } else {
                    Vec::new()
                };
                self.emit(Output::Deliver {
                    id,
                    source: b.header.source,
                    endpoint: opened.endpoint,
                    kind: opened.kind,
                    fragment: opened.fragment,
                    group: b.header.destination == Destination::Group,
                    payload,
                });
                Ok(true)
            }
            Err(_) => {
                if self.queue_remove(&id)? {
                    self.aging.remove(&id);
                    self.emit(Output::Removed {
                        id,
                        reason: RemoveReason::Unreadable,
                    });
                }
                Ok(false)
            }
        }
    }

    /// A receipt: remove the listed bundles whose destination signed it, remember
    /// the others as seen, tell the source's app.
    fn apply_receipt(&mut self, receipt: &Head, payload: &[u8]) -> Result<(), EngineError> {
        let Ok(ids) = decode_receipt(payload) else {
            self.stats.receipt_mismatches += 1;
            return Ok(());
        };
        let signer = Destination::Node(receipt.header.source.hash());
        let seen_until = receipt
            .header
            .expires_at()
            .or_else(|| {
                self.wall_secs()
                    .map(|w| w.saturating_add(u64::from(receipt.header.lifetime)))
            })
            .unwrap_or(u64::MAX);
        for id in ids {
            match self.info(&id)? {
                Some(info) if info.meta.destination == signer => {
                    if self.queue_remove(&id)? {
                        self.aging.remove(&id);
                        self.emit(Output::Removed {
                            id,
                            reason: RemoveReason::Receipt {
                                receipt: receipt.id,
                            },
                        });
                    }
                    if info.meta.source == self.own_hash {
                        self.emit(Output::Delivered {
                            id,
                            receipt: receipt.id,
                        });
                    }
                }
                Some(_) => self.stats.receipt_mismatches += 1,
                None => {
                    if !self.pending_ids.contains(&id) {
                        self.queue_mark_seen(id, seen_until);
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn on_app_ack(&mut self, id: &BundleId) -> Result<(), EngineError> {
        let Some(info) = self.info(id)? else {
            return Ok(());
        };
        if info.meta.routing.custody != CustodyState::Delivered {
            return Ok(());
        }
        if info.meta.destination == Destination::Group {
            self.queue_edit(*id, RoutingEdit::SetCustody(CustodyState::Held));
            return Ok(());
        }
        // Known since the delivery; otherwise (after a restart, or past the bound)
        // the record is read back for its header, decoded under its id rather than
        // hashed again (a 100 MiB bundle's id costs a pass over every byte).
        let head = match self.delivered_heads.remove(id) {
            Some(h) => Some(h),
            None => match self.record(id) {
                Ok(Some(rec)) => Bundle::decode_stored(rec.bytes, self.keyring.limits(), *id)
                    .ok()
                    .map(|b| DeliveredHead::of(b.header(), b.envelope())),
                Ok(None) | Err(StoreError::Quarantined { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let receipt = head.map(|h| (h.realm_tag, self.remaining_lifetime(id, &h, &info)));
        if self.queue_remove(id)? {
            self.aging.remove(id);
            self.emit(Output::Removed {
                id: *id,
                reason: RemoveReason::AppAcked,
            });
        }
        if let Some((tag, lifetime)) = receipt {
            let list = self.receipts.entry(tag).or_default();
            list.push((*id, lifetime));
            let full = list.len() >= MAX_RECEIPT_IDS;
            self.receipts_since.get_or_insert(self.now);
            if full {
                self.flush_receipts()?;
            }
        }
        Ok(())
    }

    /// Seconds the bundle has left (at least a minute, at most its lifetime).
    fn remaining_lifetime(&self, id: &BundleId, h: &DeliveredHead, info: &RecordInfo) -> u32 {
        let lifetime = h.lifetime;
        let left = match (h.expires_at, self.wall_secs(), h.age) {
            (Some(exp), Some(w), _) => exp.saturating_sub(w),
            (None, _, Some(age)) => u64::from(lifetime)
                .saturating_sub(age)
                .saturating_sub(self.held_secs(id, info)),
            _ => u64::from(self.config.receipt_lifetime),
        };
        let left = u32::try_from(left).unwrap_or(u32::MAX).min(lifetime);
        left.max(MIN_RECEIPT_LIFETIME)
    }

    /// Seals one receipt per realm (and per [`MAX_RECEIPT_IDS`] ids) for the
    /// acknowledged bundles and commits it.
    pub(crate) fn flush_receipts(&mut self) -> Result<(), EngineError> {
        self.receipts_since = None;
        let all = std::mem::take(&mut self.receipts);
        for (tag, list) in all {
            let Some(realm) = self.keyring.realm_of(tag).map(|r| r.name().to_owned()) else {
                continue;
            };
            for chunk in list.chunks(MAX_RECEIPT_IDS) {
                let ids: Vec<BundleId> = chunk.iter().map(|(id, _)| *id).collect();
                let lifetime = chunk
                    .iter()
                    .map(|(_, l)| *l)
                    .max()
                    .unwrap_or(MIN_RECEIPT_LIFETIME);
                let params = SealParams {
                    recipient: Recipient::Group { endpoint: None },
                    realm: realm.clone(),
                    created: self.wall,
                    sequence: self.next_sequence()?,
                    lifetime,
                    priority: Priority::Expedited,
                    hop_limit: self.config.hop_limit,
                    kind: PayloadKind::Receipt,
                    ephemeral: false,
                    fragment: None,
                };
                self.seal_counter += 1;
                let mut rng = SealRng::new(self.keyring.node_id().as_bytes(), self.seal_counter);
                // Sealing a group bundle of one of our realms cannot fail: the
                // realm exists, the lifetime is positive and the payload small.
                let Ok(bundle) = self.keyring.seal(&params, &encode_receipt(&ids), &mut rng) else {
                    continue;
                };
                self.pending_live += 1;
                self.pending_ids.insert(bundle.id());
                self.pending.push(Pending {
                    bundle,
                    origin: Origin::Receipt,
                    copies: 1,
                    acks: Vec::new(),
                    received: self.now,
                    receipt_ids: ids,
                });
            }
        }
        self.flush()
    }

    /// Removes expired bundles (wall clock, and the clockless age table) and old
    /// seen-set entries.
    pub(crate) fn purge(&mut self) -> Result<(), EngineError> {
        let mut more = false;
        // Queued removals first, so that a bundle is not reported removed twice.
        self.flush_writes()?;
        self.sweep_stale();
        if let Some(w) = self.wall_secs() {
            for round in 0..16 {
                let ids = self.store.purge_expired(w, PURGE_PAGE)?;
                let full_page = ids.len() == PURGE_PAGE;
                for id in ids {
                    self.aging.remove(&id);
                    self.emit(Output::Removed {
                        id,
                        reason: RemoveReason::Expired,
                    });
                }
                if !full_page {
                    break;
                }
                if round == 15 {
                    // More to do: come back at once rather than block this call.
                    more = true;
                }
            }
            self.store.purge_seen_before(w, 4096)?;
        }
        let mut n = 0;
        while let Some(id) = self.aging.pop_expired(self.now) {
            if self.queue_remove(&id)? {
                self.emit(Output::Removed {
                    id,
                    reason: RemoveReason::Expired,
                });
            }
            n += 1;
            if n == 4096 {
                more = true;
                break;
            }
        }
        self.next_purge = if more { self.now } else { self.purge_due()? };
        Ok(())
    }

    /// When the next purge is due (see the module docs' *Expiry*): every
    /// `purge_interval` while carriers are up, without a wall clock or with
    /// clockless bundles aging here; otherwise at the earliest stored expiry or the
    /// earliest time an answer a link awaits can go stale, at the latest
    /// `purge_max_interval` from now.
    pub(crate) fn purge_due(&self) -> Result<Millis, EngineError> {
        let regular = self.now + self.config.purge_interval;
        let Some(w) = self.wall_secs() else {
            return Ok(regular);
        };
        if !self.carriers.is_empty() || self.aging.len() > 0 {
            return Ok(regular);
        }
        let mut due = self.now
            + self
                .config
                .purge_max_interval
                .max(self.config.purge_interval);
        if let Some(a) = self.answer_due {
            due = due.min(a.max(self.now));
        }
        if let Some(e) = self.store.next_expiry()? {
            due = due.min(self.now + Millis(e.saturating_sub(w).saturating_mul(1000)));
        }
        Ok(due)
    }

    /// Delivers again, a page per call, bundles an earlier run delivered and the app
    /// never acknowledged.
    pub(crate) fn redeliver_step(&mut self) -> Result<(), EngineError> {
        if self.redeliver.done() {
            return Ok(());
        }
        if !self.room() {
            self.deferred = true;
            return Ok(());
        }
        let (dest, cursor) = match self.redeliver {
            Redeliver::Node(c) => (Destination::Node(self.own_hash), c),
            Redeliver::Group(c) => (Destination::Group, c),
            Redeliver::Done => return Ok(()),
        };
        let mut page = self.store.by_destination(&dest, cursor, REDELIVER_PAGE)?;
        self.patch_listing(&mut page.items);
        for info in &page.items {
            if info.meta.routing.custody != CustodyState::Delivered {
                continue;
            }
            let bundle = match self.record(&info.id) {
                Ok(Some(rec)) => Bundle::decode_vec(rec.bytes, self.keyring.limits()).ok(),
                Ok(None) | Err(StoreError::Quarantined { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            match bundle {
                Some(b) => {
                    let opened = self.open_here(&b);
                    self.deliver_opened(&Head::of(&b), opened)?;
                }
                None => {
                    if self.queue_remove(&info.id)? {
                        self.emit(Output::Removed {
                            id: info.id,
                            reason: RemoveReason::Unreadable,
                        });
                    }
                }
            }
        }
        self.redeliver = match (self.redeliver, page.next) {
            (Redeliver::Node(_), Some(c)) => Redeliver::Node(Some(c)),
            (Redeliver::Node(_), None) => Redeliver::Group(None),
            (Redeliver::Group(_), Some(c)) => Redeliver::Group(Some(c)),
            _ => Redeliver::Done,
        };
        Ok(())
    }
}

/// Records `peer` as a holder (oldest entries make room, at most `MAX_HOLDERS`).
#[cfg(test)]
pub(crate) fn add_holder(r: &mut RoutingMeta, peer: ferry_core::NodeHash) {
    r.add_holder(peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_table_orders_by_expiry() {
        let mut t = AgeTable::default();
        t.insert(BundleId([2; 32]), Millis(0), Millis(50));
        t.insert(BundleId([1; 32]), Millis(0), Millis(100));
        t.insert(BundleId([2; 32]), Millis(5), Millis(20));
        assert_eq!(t.len(), 2);
        assert_eq!(t.since(&BundleId([2; 32])), Some(Millis(5)));
        assert_eq!(t.pop_expired(Millis(19)), None);
        assert_eq!(t.pop_expired(Millis(20)), Some(BundleId([2; 32])));
        assert_eq!(t.pop_expired(Millis(99)), None);
        t.remove(&BundleId([1; 32]));
        assert_eq!(t.len(), 0);
        assert_eq!(t.pop_expired(Millis(1000)), None);
    }

    #[test]
    fn holders_are_bounded_and_unique() {
        let mut r = RoutingMeta::default();
        for n in 0..100u8 {
            add_holder(&mut r, ferry_core::NodeHash([n; 8]));
            add_holder(&mut r, ferry_core::NodeHash([n; 8]));
        }
        assert_eq!(r.holders.len(), ferry_storage::MAX_HOLDERS);
        assert_eq!(r.holders.last(), Some(&ferry_core::NodeHash([99; 8])));
    }

    #[test]
    fn seal_rng_is_deterministic() {
        let mut a = SealRng::new(&[1; 32], 7);
        let mut b = SealRng::new(&[1; 32], 7);
        let mut c = SealRng::new(&[1; 32], 8);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.next_u64(), c.next_u64());
        let mut buf = [0u8; 5];
        assert!(a.try_fill_bytes(&mut buf).is_ok());
        let _ = a.next_u32();
    }
}
