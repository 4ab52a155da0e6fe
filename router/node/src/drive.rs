//! Sneakernet: a USB drive as a carrier contact (`ferry drive sync`, the daemon's
//! drive watch and `POST /v1/drives/sync`).
//!
//! One sync is one contact: the drive's readers come from their signed manifests,
//! the engine hears `CarrierUp`, what the drive and its readers hold (`Holders`),
//! every bundle imported from it (`Carried`, verified here in batches first), then
//! runs an export pass whose writes go into packs (temp file, fsync, rename). Only
//! once a pack is durable on the drive does the engine hear `TransferDone` for its
//! bundles; nothing is ever released because of a drive — only a receipt does that.
//! The drive format is `ferry-cl-drive`'s, described in docs/sneakernet.md.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_cl_drive::{Drive, DriveError, DriveLimits, PackRef};
use ferry_core::rand_core::OsRng;
use ferry_core::{BundleId, NodeHash, OpenError, PayloadKind, Priority, Recipient, SealParams};
use ferry_router::engine::{ImportOutcome, Input};
use ferry_storage::CustodyStore;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::daemon::{accept_batch, now_dtn, CarrierOut, Cmd, Shared};

/// Carrier link ids live in their own range, apart from the QUIC link's.
static NEXT_CARRIER: AtomicU64 = AtomicU64::new(1 << 62);
/// Bundles verified as one batch on import.
const IMPORT_BATCH: usize = 128;
/// Bundle bytes verified as one batch at most (a batch closes at the first bundle
/// that reaches it).
const IMPORT_BATCH_BYTES: usize = 8 << 20;
/// Bundle bytes handed to the engine and not yet committed, at most (plus one bundle).
const IMPORT_BYTES_IN_FLIGHT: u64 = 32 << 20;
/// Ids per `Holders` input.
const HOLDERS_CHUNK: usize = 4096;
/// How long a manifest stays valid (seconds).
const MANIFEST_LIFETIME: u32 = 90 * 86_400;
/// Bundles written per pack at most (the engine's in-flight window on a drive).
const PACK_ENTRIES: u32 = 4096;
/// How long the export waits for the engine's next bundle before it finishes the
/// pack being written.
const BURST_GAP: std::time::Duration = std::time::Duration::from_millis(20);
/// Export passes retried with smaller packs after the drive filled up.
const FULL_RETRIES: u32 = 12;

/// What a sync may do.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Most bundle bytes to write to the drive.
    pub max_bytes: Option<u64>,
    /// Fault injection for tests: the drive behaves as full after this many bytes
    /// written through this sync (`FERRY_DRIVE_WRITE_BUDGET`).
    pub write_budget: Option<u64>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SyncSummary {
    /// The drive's id.
    pub drive: String,
    /// Nodes known to read the drive (valid manifests of this node's realms).
    pub readers: usize,
    /// Bundles taken into custody from the drive.
    pub imported: u64,
    /// Bundles on the drive this node already had.
    pub duplicates: u64,
    /// Bundles of realms this node is not in (left alone).
    pub foreign: u64,
    /// Expired bundles skipped.
    pub expired: u64,
    /// Bundles the router refused (store full, hop limit).
    pub refused: u64,
    /// Corrupt bundles and files set aside.
    pub quarantined: u64,
    /// Bundles written to the drive.
    pub exported: u64,
    /// Bundles the policy chose that did not fit (budget or drive full).
    pub not_exported: u64,
    /// Bundle bytes read from the drive.
    pub bytes_in: u64,
    /// Bundle bytes written to the drive.
    pub bytes_out: u64,
    /// The drive filled up.
    pub drive_full: bool,
    /// Packs deleted from the drive because every bundle in them had expired.
    pub packs_removed: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// What was quarantined, and why (one line each).
    pub messages: Vec<String>,
}

impl SyncSummary {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "drive {}: imported {}, exported {}, skipped {} (duplicates {}, other realms {}, expired {}), refused {}, quarantined {}, {} in, {} out, {:.1} s{}{}{}",
            &self.drive[..8.min(self.drive.len())],
            self.imported,
            self.exported,
            self.duplicates + self.foreign + self.expired,
            self.duplicates,
            self.foreign,
            self.expired,
            self.refused,
            self.quarantined,
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.millis as f64 / 1000.0,
            if self.drive_full { ", drive full" } else { "" },
            if self.not_exported > 0 {
                format!(", {} left for another drive", self.not_exported)
            } else {
                String::new()
            },
            if self.packs_removed > 0 {
                format!(", {} expired packs removed", self.packs_removed)
            } else {
                String::new()
            },
        )
    }
}

/// Formats a byte count (KiB, MiB, GiB).
pub fn human_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / K / K)
    } else {
        format!("{:.2} GiB", f / K / K / K)
    }
}

/// Progress reports while a sync runs: (phase, done, total).
pub type Progress = Box<dyn FnMut(&str, u64, u64) + Send>;

/// The pseudo-peer hash the engine records for a drive.
pub fn drive_hash(drive: &Drive) -> NodeHash {
    let h = blake3::Hasher::new_derive_key("ferry v1 drive hash")
        .update(&drive.id().0)
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    NodeHash(out)
}

/// The engine side of one carrier contact: commands out, outputs in, without ever
/// blocking the engine thread on us (outputs that arrive while we wait to send are
/// kept in `backlog`).
struct Contact<'a> {
    shared: &'a Arc<Shared>,
    link: LinkId,
    rx: mpsc::Receiver<CarrierOut>,
    backlog: VecDeque<CarrierOut>,
}

impl Contact<'_> {
    async fn send(&mut self, cmd: Cmd) -> Result<()> {
        loop {
            tokio::select! {
                permit = self.shared.cmds.reserve() => {
                    permit.map_err(|_| anyhow!("the node is shutting down"))?.send(cmd);
                    return Ok(());
                }
                out = self.rx.recv() => match out {
                    Some(o) => self.backlog.push_back(o),
                    None => return Err(anyhow!("the engine closed the drive contact")),
                },
            }
        }
    }

    async fn input(&mut self, input: Input) -> Result<()> {
        self.send(Cmd::Input(input)).await
    }

    async fn next(&mut self) -> Result<CarrierOut> {
        if let Some(o) = self.backlog.pop_front() {
            return Ok(o);
        }
        self.rx
            .recv()
            .await
            .ok_or_else(|| anyhow!("the engine closed the drive contact"))
    }

    fn try_next(&mut self) -> Option<CarrierOut> {
        self.backlog.pop_front().or_else(|| self.rx.try_recv().ok())
    }
}

/// An entry being verified: its pack (index in the sync's list), its index in the
/// pack, the id the index claims, the spray copies written with it.
type EntryTag = (usize, usize, [u8; 32], u32);

/// Counts an import outcome.
fn count(s: &mut SyncSummary, id: BundleId, o: ImportOutcome) {
    tracing::debug!(bundle = %id.short(), outcome = ?o, "imported from drive");
    match o {
        ImportOutcome::Stored => s.imported += 1,
        ImportOutcome::Duplicate => s.duplicates += 1,
        ImportOutcome::Refused(_) => s.refused += 1,
    }
}

/// Runs blocking file work on this worker without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Syncs the drive mounted at `mount`: import, manifest, export. The contact ends
/// when it returns.
pub async fn sync(
    shared: &Arc<Shared>,
    home: &Path,
    mount: &Path,
    opts: &SyncOptions,
    progress: Option<Progress>,
) -> Result<SyncSummary> {
    sync_until(shared, home, mount, opts, progress, None).await
}

/// Like [`sync`], but the contact stays up after the export until `removed`
/// resolves (the drive was unplugged): the watch mode's contact.
pub async fn sync_until(
    shared: &Arc<Shared>,
    home: &Path,
    mount: &Path,
    opts: &SyncOptions,
    mut progress: Option<Progress>,
    removed: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> Result<SyncSummary> {
    let started = shared.clock.now();
    let limits = DriveLimits {
        max_body_bytes: shared.config.store.max_bundle_bytes as u64,
        ..DriveLimits::default()
    };
    let mut drive = blocking(|| Drive::open_or_init(mount, limits))?;
    drive.set_write_budget(opts.write_budget);
    let stale = blocking(|| drive.clean_tmp())?;
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temp files left by an interrupted sync"
        );
    }
    let mut sum = SyncSummary {
        drive: drive.id().to_string(),
        ..SyncSummary::default()
    };
    let carrier = drive_hash(&drive);
    let own = shared.keyring.node_id();

    // Readers: the valid manifests of our realms.
    let mut holders: Vec<(NodeHash, Vec<BundleId>)> = Vec::new();
    let manifests = blocking(|| drive.read_manifests())?;
    for e in &manifests.errors {
        sum.messages.push(format!("unreadable manifest: {e}"));
    }
    for path in &manifests.stray {
        quarantine_drive_file(&drive, path, "not a manifest", &mut sum);
    }
    for m in &manifests.manifests {
        match shared.keyring.accept(&m.bytes, now_dtn()) {
            Ok(b) => match shared.keyring.open(&b) {
                Ok(o) if o.kind == PayloadKind::Manifest && b.header().source != own => {
                    match ferry_cl_drive::manifest::decode(&o.payload) {
                        Ok(ids) => holders.push((
                            b.header().source.hash(),
                            ids.into_iter().map(BundleId).collect(),
                        )),
                        Err(e) => sum.messages.push(format!("manifest {}: {e}", m.name)),
                    }
                }
                Ok(_) => {}
                Err(e) => sum.messages.push(format!("manifest {}: {e}", m.name)),
            },
            Err(OpenError::ForeignRealm) | Err(OpenError::Expired) => {}
            Err(e) => {
                let path = drive
                    .ferry_dir()
                    .join("nodes")
                    .join(format!("{}.fm", m.name));
                quarantine_drive_file(&drive, &path, &e.to_string(), &mut sum);
            }
        }
    }
    let reach: Vec<NodeHash> = holders.iter().map(|(h, _)| *h).collect();
    sum.readers = reach.len();

    // The contact.
    let link = LinkId(NEXT_CARRIER.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = mpsc::channel(1024);
    let mut contact = Contact {
        shared,
        link,
        rx,
        backlog: VecDeque::new(),
    };
    let caps = LinkCaps {
        mtu: None,
        reliable: true,
        bitrate_bps: None,
        duty_cycle: None,
        broadcast: false,
        medium: None,
        max_bundle_bytes: limits.max_body_bytes,
        max_in_flight: PACK_ENTRIES,
    };
    contact
        .send(Cmd::CarrierUp {
            link,
            out: tx,
            input: Input::CarrierUp {
                link,
                carrier,
                caps,
                reach,
            },
        })
        .await?;
    tracing::info!(drive = %sum.drive, %link, readers = sum.readers, "drive contact up");
    let result = run_contact(
        &mut contact,
        &drive,
        home,
        carrier,
        holders,
        opts,
        &mut sum,
        &mut progress,
    )
    .await;
    sum.millis = shared.clock.now().0.saturating_sub(started.0);
    if let (Ok(()), Some(removed)) = (&result, removed) {
        tracing::info!(drive = %sum.drive, "{}", sum.line());
        removed.await;
    }
    let _ = contact.input(Input::ContactDown { link }).await;
    tracing::info!(drive = %sum.drive, %link, "drive contact down");
    result?;
    Ok(sum)
}

/// Moves a corrupt file on the drive into its quarantine folder and reports it.
fn quarantine_drive_file(drive: &Drive, path: &Path, why: &str, sum: &mut SyncSummary) {
    sum.quarantined += 1;
    match blocking(|| drive.quarantine_file(path)) {
        Ok(to) => sum.messages.push(format!(
            "quarantined {} ({why}): moved to {}",
            path.display(),
            to.display()
        )),
        Err(e) => sum.messages.push(format!(
            "quarantined {} ({why}): could not move it: {e}",
            path.display()
        )),
    }
}

/// The packs this node finished importing from a drive, kept in the home so a later
/// sync does not read them again.
fn state_path(home: &Path, drive: &Drive) -> PathBuf {
    home.join("drives").join(drive.id().to_string())
}

fn load_done(home: &Path, drive: &Drive) -> BTreeSet<String> {
    std::fs::read_to_string(state_path(home, drive))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn save_done(home: &Path, drive: &Drive, done: &BTreeSet<String>) -> Result<()> {
    let path = state_path(home, drive);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = String::new();
    for n in done {
        text.push_str(n);
        text.push('\n');
    }
    ferry_router::home::write_atomic(&path, text.as_bytes(), 0o600)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_contact(
    c: &mut Contact<'_>,
    drive: &Drive,
    home: &Path,
    carrier: NodeHash,
    holders: Vec<(NodeHash, Vec<BundleId>)>,
    opts: &SyncOptions,
    sum: &mut SyncSummary,
    progress: &mut Option<Progress>,
) -> Result<()> {
    let shared = c.shared;

    // What the drive holds.
    let list = blocking(|| drive.list_packs())?;
    for path in &list.stray {
        quarantine_drive_file(drive, path, "not a pack", sum);
    }
    let mut packs: Vec<(PackRef, ferry_cl_drive::PackIndex)> = Vec::new();
    let now = now_dtn().map(|t| u64::from(t.0));
    for p in list.packs {
        match blocking(|| drive.read_index(&p)) {
            Ok(ix) if now.is_some_and(|now| all_expired(&ix, now)) => {
                // Nobody can use it any more: free the space.
                match blocking(|| drive.remove_pack(&p)) {
                    Ok(()) => sum.packs_removed += 1,
                    Err(e) => sum
                        .messages
                        .push(format!("could not remove expired pack: {e}")),
                }
            }
            Ok(ix) => packs.push((p, ix)),
            Err(e) if e.is_corrupt() => quarantine_drive_file(drive, &p.path, &e.to_string(), sum),
            Err(e) if e.is_over_limit() => sum
                .messages
                .push(format!("left in place, over this node's limits: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    let inventory: Vec<BundleId> = packs
        .iter()
        .flat_map(|(_, ix)| ix.entries.iter().map(|e| BundleId(e.id)))
        .collect();
    for chunk in inventory.chunks(HOLDERS_CHUNK) {
        c.input(Input::Holders {
            peer: carrier,
            ids: chunk.to_vec(),
        })
        .await?;
    }
    for (peer, ids) in holders {
        for chunk in ids.chunks(HOLDERS_CHUNK) {
            c.input(Input::Holders {
                peer,
                ids: chunk.to_vec(),
            })
            .await?;
        }
    }

    // Import what is new to us, pack by pack.
    let mut done = load_done(home, drive);
    let total: u64 = packs
        .iter()
        .filter(|(p, _)| !done.contains(&p.name))
        .map(|(_, ix)| ix.len() as u64)
        .sum();
    let store = shared.store.clone();
    // Reading and batch verification overlap: up to VERIFY_DEPTH batches are verified
    // on the blocking pool while the next one is read, and the engine commits on its
    // own thread.
    let mut verifying: VecDeque<tokio::task::JoinHandle<Verified>> = VecDeque::new();
    let mut ctx = Applied {
        outstanding: 0,
        in_flight: std::collections::HashMap::new(),
        in_flight_bytes: 0,
        seen: 0,
    };
    for (pi, (pack, index)) in packs.iter().enumerate() {
        if done.contains(&pack.name) {
            continue;
        }
        let mut batch: Vec<(EntryTag, Vec<u8>)> = Vec::with_capacity(IMPORT_BATCH);
        let mut yielded = 0u64;
        let mut entries = blocking(|| {
            drive.read_entries(pack, index, |e| {
                !store.is_seen(&BundleId(e.id)).unwrap_or(false)
            })
        })?;
        let mut failed = false;
        loop {
            let next = blocking(|| entries.next());
            let last = next.is_none();
            yielded += u64::from(!last);
            match next {
                Some(Ok(e)) => {
                    sum.bytes_in += e.bytes.len() as u64;
                    batch.push(((pi, e.index, e.id, e.copies), e.bytes));
                }
                Some(Err(e)) => {
                    sum.quarantined += 1;
                    sum.messages.push(format!("pack {}: {e}", pack.name));
                    failed |= !matches!(e, ferry_cl_drive::EntryError::Truncated { .. });
                }
                None => {}
            }
            let batch_bytes: usize = batch.iter().map(|(_, b)| b.len()).sum();
            if batch.len() >= IMPORT_BATCH
                || batch_bytes >= IMPORT_BATCH_BYTES
                || (last && !batch.is_empty())
            {
                let keyring = shared.keyring.clone();
                let items = std::mem::take(&mut batch);
                verifying.push_back(tokio::task::spawn_blocking(move || {
                    accept_batch(&keyring, items)
                }));
                while verifying.len() >= VERIFY_DEPTH {
                    if let Some(h) = verifying.pop_front() {
                        let v = h.await.context("verifying bundles")?;
                        apply_verified(c, drive, home, &packs, v, sum, &mut ctx).await?;
                    }
                }
                if let Some(p) = progress.as_mut() {
                    p("importing", ctx.seen, total);
                }
            }
            if last {
                break;
            }
        }
        drop(entries);
        let dup = (index.len() as u64).saturating_sub(yielded);
        sum.duplicates += dup;
        ctx.seen += dup;
        if !failed {
            done.insert(pack.name.clone());
        }
    }
    while let Some(h) = verifying.pop_front() {
        let v = h.await.context("verifying bundles")?;
        apply_verified(c, drive, home, &packs, v, sum, &mut ctx).await?;
    }
    while ctx.outstanding > 0 {
        if let CarrierOut::Imported(id, o) = c.next().await? {
            ctx.answered(sum, id, o);
        }
    }

    let names: BTreeSet<String> = packs.iter().map(|(p, _)| p.name.clone()).collect();
    done.retain(|n| names.contains(n));
    blocking(|| save_done(home, drive, &done))?;
    // Our manifest: what of the drive's contents we hold now (custody is committed:
    // every import above was answered).
    write_manifests(c, drive, &inventory, sum).await?;

    export(c, drive, opts, sum, progress).await
}

/// Batches verified at once during an import (reading continues meanwhile).
const VERIFY_DEPTH: usize = 4;

/// One verified batch.
type Verified = Vec<(EntryTag, Result<ferry_core::Bundle, crate::daemon::Refusal>)>;

/// Import progress: bundles handed to the engine and not yet answered (with their
/// sizes), entries done.
struct Applied {
    outstanding: u64,
    in_flight: std::collections::HashMap<BundleId, u64>,
    in_flight_bytes: u64,
    seen: u64,
}

impl Applied {
    fn answered(&mut self, sum: &mut SyncSummary, id: BundleId, o: ImportOutcome) {
        count(sum, id, o);
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(n) = self.in_flight.remove(&id) {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(n);
        }
    }
}

/// Hands a verified batch to the engine; counts and quarantines the rest.
async fn apply_verified(
    c: &mut Contact<'_>,
    drive: &Drive,
    home: &Path,
    packs: &[(PackRef, ferry_cl_drive::PackIndex)],
    verified: Verified,
    sum: &mut SyncSummary,
    ctx: &mut Applied,
) -> Result<()> {
    let link = c.link;
    for ((pi, index, claimed, copies), r) in verified {
        ctx.seen += 1;
        let pack = &packs[pi].0;
        match r {
            Ok(b) if b.id().0 == claimed => {
                // Bounded memory: wait for the engine to commit what it holds before
                // handing it more than IMPORT_BYTES_IN_FLIGHT.
                while ctx.in_flight_bytes > IMPORT_BYTES_IN_FLIGHT {
                    if let CarrierOut::Imported(id, o) = c.next().await? {
                        ctx.answered(sum, id, o);
                    }
                }
                let size = b.encoded_len() as u64;
                ctx.in_flight.insert(b.id(), size);
                ctx.in_flight_bytes += size;
                c.input(Input::Carried {
                    link,
                    bundle: b,
                    copies,
                })
                .await?;
                ctx.outstanding += 1;
            }
            Ok(b) => {
                let why = "its id does not match the pack index";
                quarantine_entry(home, drive, pack, index, &b.encode(), why, sum)
            }
            Err((OpenError::ForeignRealm, _)) => sum.foreign += 1,
            Err((OpenError::Expired, _)) => sum.expired += 1,
            Err((e, bytes)) => {
                quarantine_entry(home, drive, pack, index, &bytes, &e.to_string(), sum)
            }
        }
    }
    while let Some(o) = c.try_next() {
        if let CarrierOut::Imported(id, o) = o {
            ctx.answered(sum, id, o);
        }
    }
    Ok(())
}

/// Whether every bundle of a pack has expired by `now` (DTN seconds), by its index.
fn all_expired(ix: &ferry_cl_drive::PackIndex, now: u64) -> bool {
    !ix.is_empty()
        && ix
            .entries
            .iter()
            .all(|e| e.expires.is_some_and(|t| t <= now))
}

/// Copies a corrupt bundle from a pack into the home's quarantine folder.
fn quarantine_entry(
    home: &Path,
    drive: &Drive,
    pack: &PackRef,
    index: usize,
    bytes: &[u8],
    why: &str,
    sum: &mut SyncSummary,
) {
    sum.quarantined += 1;
    let dir = home.join("quarantine");
    let name = format!(
        "drive-{}-{}-{index}.bundle",
        &drive.id().to_string()[..8],
        pack.name
    );
    let path = dir.join(&name);
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, bytes))
        .is_ok();
    sum.messages.push(format!(
        "pack {} entry {index}: {why}{}",
        pack.name,
        if saved {
            format!("; copied to {}", path.display())
        } else {
            String::new()
        }
    ));
}

async fn write_manifests(
    c: &mut Contact<'_>,
    drive: &Drive,
    inventory: &[BundleId],
    sum: &mut SyncSummary,
) -> Result<()> {
    let shared = c.shared;
    let store = shared.store.clone();
    // What of the drive's contents this node holds or has seen (stored, delivered).
    let held: Vec<[u8; 32]> = blocking(|| {
        inventory
            .iter()
            .filter(|id| store.is_seen(id).unwrap_or(false))
            .map(|id| id.0)
            .collect()
    });
    let payload = ferry_cl_drive::manifest::encode(&held);
    let own = shared.keyring.node_id().hash();
    for realm in shared.keyring.realms() {
        let (reply, rx) = oneshot::channel();
        c.send(Cmd::NextSequence { reply }).await?;
        let sequence = rx
            .await
            .map_err(|_| anyhow!("the node is shutting down"))?
            .map_err(|e| anyhow!("reserving a sequence number: {e}"))?;
        let params = SealParams {
            recipient: Recipient::Group { endpoint: None },
            realm: realm.name().to_owned(),
            created: now_dtn(),
            sequence,
            lifetime: MANIFEST_LIFETIME,
            priority: Priority::Bulk,
            hop_limit: 1,
            kind: PayloadKind::Manifest,
            ephemeral: false,
            fragment: None,
        };
        let bundle = shared.keyring.seal(&params, &payload, &mut OsRng)?;
        let name = format!("{own}-{}", realm.tag());
        let bytes = bundle.encode();
        match blocking(|| drive.write_manifest(&name, &bytes)) {
            Ok(()) => {}
            // The imports are committed all the same; the export will find the
            // drive full too and report it.
            Err(e) if e.is_full() => {
                sum.drive_full = true;
                sum.messages
                    .push(format!("manifest not written, the drive is full: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e).context("writing this node's manifest"),
        }
    }
    Ok(())
}

/// Writes what the engine exports, a pack per burst; reports each bundle done only
/// once its pack is durable. When the drive fills up, the rest of the pass is
/// failed and a new pass tries again with smaller packs, so what fits is written.
async fn export(
    c: &mut Contact<'_>,
    drive: &Drive,
    opts: &SyncOptions,
    sum: &mut SyncSummary,
    progress: &mut Option<Progress>,
) -> Result<()> {
    let link = c.link;
    let mut pack_cap = PACK_ENTRIES as usize;
    let mut budget_left = opts.max_bytes;
    let mut passes = 0u32;
    'pass: loop {
        passes += 1;
        sum.not_exported = 0;
        c.input(Input::CarrierExport { link }).await?;
        let mut pack = Pack::new(drive)?;
        let mut failed: Vec<TransferId> = Vec::new();
        let mut hit_full = false;
        loop {
            // A pack is finished when the engine stops handing out bundles for a
            // moment: it waits for our reports (its in-flight limits), or the pass
            // is over.
            let out = if pack.is_empty() && failed.is_empty() {
                Some(c.next().await?)
            } else {
                match tokio::time::timeout(BURST_GAP, c.next()).await {
                    Ok(o) => Some(o?),
                    Err(_) => None,
                }
            };
            match out {
                Some(CarrierOut::Export {
                    transfer,
                    id,
                    copies,
                    expires_at,
                    bytes,
                }) => {
                    let len = bytes.len() as u64;
                    if hit_full || budget_left.is_some_and(|b| len > b) {
                        failed.push(transfer);
                        continue;
                    }
                    if pack.transfers.len() >= pack_cap {
                        hit_full |= pack.flush(c, drive, sum, &mut failed).await?;
                    }
                    let mut r = pack.push(transfer, &id, copies, expires_at, &bytes);
                    if matches!(r, Err(DriveError::PackLimit { .. })) {
                        hit_full |= pack.flush(c, drive, sum, &mut failed).await?;
                        r = pack.push(transfer, &id, copies, expires_at, &bytes);
                    }
                    match r {
                        Ok(()) => {
                            if let Some(b) = budget_left.as_mut() {
                                *b -= len;
                            }
                        }
                        Err(e) if e.is_full() => {
                            // Nothing of this pack reached the drive.
                            hit_full = true;
                            failed.push(transfer);
                            pack.fail(drive, &mut failed)?;
                        }
                        Err(e) => {
                            failed.push(transfer);
                            pack.fail(drive, &mut failed)?;
                            for t in failed.drain(..) {
                                c.input(Input::TransferFailed { link, transfer: t }).await?;
                            }
                            return Err(e).context("writing to the drive");
                        }
                    }
                    if hit_full {
                        sum.drive_full = true;
                    }
                }
                Some(CarrierOut::Imported(id, o)) => count(sum, id, o),
                Some(CarrierOut::Idle) => {
                    // Nothing in flight: the pass is over.
                    if hit_full && pack_cap > 1 && passes < FULL_RETRIES {
                        pack_cap = (pack_cap / 4).max(1);
                        continue 'pass;
                    }
                    break 'pass;
                }
                None => {
                    // The burst is over: make it durable, then tell the engine.
                    if !pack.is_empty() && pack.flush(c, drive, sum, &mut failed).await? {
                        hit_full = true;
                        sum.drive_full = true;
                    }
                    // Failed bundles count as not exported (a later pass may still
                    // write them: the count restarts with each pass).
                    sum.not_exported += failed.len() as u64;
                    if let Some(b) = budget_left.as_mut() {
                        *b += std::mem::take(&mut pack.refund);
                    }
                    for t in failed.drain(..) {
                        c.input(Input::TransferFailed { link, transfer: t }).await?;
                    }
                    if let Some(p) = progress.as_mut() {
                        p("exporting", sum.exported, sum.exported + sum.not_exported);
                    }
                }
            }
        }
    }
    if sum.drive_full {
        tracing::info!(drive = %sum.drive, not_exported = sum.not_exported, "drive full");
    }
    Ok(())
}

/// The pack being written and the transfers in it.
struct Pack<'d> {
    writer: ferry_cl_drive::PackWriter<'d>,
    transfers: Vec<TransferId>,
    /// Bundle bytes in it (given back to the byte budget if it fails).
    body: u64,
    /// Bundle bytes of failed packs, to give back to the budget.
    refund: u64,
}

impl<'d> Pack<'d> {
    fn new(drive: &'d Drive) -> Result<Self> {
        Ok(Pack {
            writer: blocking(|| drive.pack_writer())?,
            transfers: Vec::new(),
            body: 0,
            refund: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    fn push(
        &mut self,
        transfer: TransferId,
        id: &BundleId,
        copies: u32,
        expires_at: Option<u64>,
        bytes: &[u8],
    ) -> Result<(), DriveError> {
        let w = &mut self.writer;
        blocking(|| w.push_expiring(&id.0, copies, expires_at, bytes))?;
        self.transfers.push(transfer);
        self.body += bytes.len() as u64;
        Ok(())
    }

    /// Drops the pack (nothing of it is on the drive): its transfers fail.
    fn fail(&mut self, drive: &'d Drive, failed: &mut Vec<TransferId>) -> Result<()> {
        self.writer = blocking(|| drive.pack_writer())?;
        failed.append(&mut self.transfers);
        self.refund += std::mem::take(&mut self.body);
        Ok(())
    }

    /// Finishes the pack (fsync, rename, dir fsync) and reports its bundles done.
    /// Returns `true` if the drive was full (its transfers are then in `failed`).
    async fn flush(
        &mut self,
        c: &mut Contact<'_>,
        drive: &'d Drive,
        sum: &mut SyncSummary,
        failed: &mut Vec<TransferId>,
    ) -> Result<bool> {
        let link = c.link;
        let done = std::mem::replace(&mut self.writer, blocking(|| drive.pack_writer())?);
        let size = done.bytes();
        match blocking(|| done.finish()) {
            Ok(_) => {
                sum.exported += self.transfers.len() as u64;
                sum.bytes_out += size;
                self.body = 0;
                for t in std::mem::take(&mut self.transfers) {
                    c.input(Input::TransferDone { link, transfer: t }).await?;
                }
                Ok(false)
            }
            Err(e) if e.is_full() => {
                failed.append(&mut self.transfers);
                self.refund += std::mem::take(&mut self.body);
                Ok(true)
            }
            Err(e) => {
                for t in std::mem::take(&mut self.transfers) {
                    c.input(Input::TransferFailed { link, transfer: t }).await?;
                }
                Err(e).context("finishing a pack on the drive")
            }
        }
    }
}

/// The directories under the watched roots that hold a Ferry drive: `ROOT/NAME/ferry`
/// or `ROOT/USER/NAME/ferry` (udisks mounts under /media/USER).
pub fn find_drives(roots: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let subdirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for root in roots {
        for a in subdirs(root) {
            if a.join(ferry_cl_drive::FERRY_DIR).is_dir() {
                found.insert(a);
                continue;
            }
            for b in subdirs(&a) {
                if b.join(ferry_cl_drive::FERRY_DIR).is_dir() {
                    found.insert(b);
                }
            }
        }
    }
    found
}

/// `ferry run`'s drive watch: a drive that appears under a watched root is a
/// contact (synced at once), its removal ends the contact.
pub async fn watch(shared: Arc<Shared>) {
    let cfg = shared.config.drives.clone();
    if cfg.watch.is_empty() {
        return;
    }
    let period = std::time::Duration::from_secs(u64::from(cfg.poll_secs));
    let opts = SyncOptions {
        max_bytes: (cfg.max_bytes > 0).then_some(cfg.max_bytes),
        write_budget: None,
    };
    let mut present: BTreeSet<PathBuf> = BTreeSet::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(roots = cfg.watch.len(), "watching for drives");
    loop {
        tick.tick().await;
        let roots = cfg.watch.clone();
        let found = tokio::task::spawn_blocking(move || find_drives(&roots))
            .await
            .unwrap_or_default();
        present.retain(|p| found.contains(p));
        for mount in found {
            if !present.insert(mount.clone()) {
                continue;
            }
            let shared = shared.clone();
            let opts = opts.clone();
            tokio::spawn(async move {
                let probe = mount.join(ferry_cl_drive::FERRY_DIR);
                let removed = Box::pin(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        if !probe.is_dir() {
                            return;
                        }
                    }
                });
                let home = shared.home.clone();
                match sync_until(&shared, &home, &mount, &opts, None, Some(removed)).await {
                    Ok(s) => tracing::info!(drive = %s.drive, "drive removed"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "drive sync failed"),
                }
            });
        }
    }
}
