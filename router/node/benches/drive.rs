//! Sneakernet figures: real `ferry drive sync` processes (no daemon running) importing
//! from and exporting to drive folders.
//!
//! `cargo bench -p ferry-node --bench drive` (several minutes at the default sizes).
//! Environment:
//! - `FERRY_DRIVE_SMALL`: number of 1 KiB-payload bundles (default 100000);
//! - `FERRY_DRIVE_LARGE_MIB`: MiB of 10 MiB-payload bundles (default 1024 → 102
//!   bundles);
//! - `FERRY_DRIVE_DIR`: where the temp folder (homes, drives, disk test file) is
//!   created (default: the system temp dir), e.g. a mounted USB drive.
//!
//! 1. Small bundles, sealed in-process by node A to node C (one realm), written as
//!    packs onto a source drive; then timed: `ferry drive sync --home A src` (import
//!    rate) and `ferry drive sync --home A out` to an empty folder with epidemic
//!    routing (export rate). Next to them, the in-process signature-verification rate
//!    of the same bundles (`Keyring::verify_many` in batches of 64, as import does,
//!    and `Keyring::verify` one by one), and the bytes on the drive per bundle beyond
//!    the bundle itself.
//! 2. Large bundles (10 MiB payloads): the same import and export into a fresh node.
//! 3. The disk's raw sequential write + fsync rate, and a read + write + fsync copy,
//!    of the same total, for context.
//!
//! For each timed process: wall time, the sync's own time (its JSON `millis`), CPU
//! time (user, system: the children's times of this process, exact), peak RSS and
//! bytes the process caused to be read from and written to storage, and its busiest
//! threads (sampled from /proc every 20 ms, so a few ms may be missing).
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_cl_drive::{Drive, DriveError, DriveLimits, PackWriter};
use ferry_core::rand_core::OsRng;
use ferry_core::{Bundle, DtnTime, Keyring, NodeId, PayloadKind, Priority, Recipient, SealParams};
use ferry_router::home::Home;
use ferry_storage::CustodyStore;

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const KIB: usize = 1024;
const MIB: f64 = 1024.0 * 1024.0;
/// Entries per pack on the prepared source drives.
const SOURCE_PACK_ENTRIES: usize = 4096;
/// Batch size of the verification figure (the import's batch).
const VERIFY_BATCH: usize = 64;
/// Bundle lifetime (seconds).
const LIFETIME: u32 = 86_400;
/// Clock ticks per second of /proc times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `ferry ARGS` quietly (RUST_LOG unset) and returns its stdout.
fn ferry(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A node home initialised for the bench (no network use: the daemon never runs).
fn init(home: &Path, realm: &str, extra: &[&str]) -> NodeId {
    let mut args = vec![
        "init",
        "--home",
        path_str(home),
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:1",
        "--no-discovery",
        "--realm",
        realm,
        "--routing",
        "epidemic",
    ];
    args.extend_from_slice(extra);
    ferry(&args).parse().expect("node id")
}

// ---------------------------------------------------------------------------------
// Measuring a child process
// ---------------------------------------------------------------------------------

/// The fields of a /proc stat line after the command name (field 3 onwards).
fn stat_fields(text: &str) -> Vec<&str> {
    text.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn stat_u64(f: &[&str], field: usize) -> u64 {
    // `field` counts from 1 as in proc(5); f[0] is field 3.
    f.get(field - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// This process's waited-for children's (user, system) CPU ticks.
fn children_ticks() -> (u64, u64) {
    let s = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f = stat_fields(&s);
    (stat_u64(&f, 16), stat_u64(&f, 17))
}

#[derive(Default)]
struct Sampled {
    hwm_kib: u64,
    read_bytes: u64,
    write_bytes: u64,
    /// tid → (thread name, user + system ticks).
    threads: BTreeMap<u32, (String, u64)>,
}

fn sample(pid: u32, s: &mut Sampled) {
    if let Ok(t) = fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(v) = t
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
        {
            s.hwm_kib = s.hwm_kib.max(v);
        }
    }
    if let Ok(t) = fs::read_to_string(format!("/proc/{pid}/io")) {
        for l in t.lines() {
            let v = |p: &str| l.strip_prefix(p).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(v) = v("read_bytes:") {
                s.read_bytes = s.read_bytes.max(v);
            }
            if let Some(v) = v("write_bytes:") {
                s.write_bytes = s.write_bytes.max(v);
            }
        }
    }
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(st) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let name = st
                .split_once('(')
                .and_then(|(_, r)| r.rsplit_once(')'))
                .map(|(n, _)| n.to_owned())
                .unwrap_or_default();
            let f = stat_fields(&st);
            let ticks = stat_u64(&f, 14) + stat_u64(&f, 15);
            let slot = s.threads.entry(tid).or_insert((name, 0));
            slot.1 = slot.1.max(ticks);
        }
    }
}

/// The block device the bench folder is on (its /sys/class/block/NAME/stat), found
/// once in `main`.
static DEVICE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The block device (its stat file) holding `dir`, if /proc/mounts names one.
fn device_of(dir: &Path) -> Option<PathBuf> {
    let dev = mount_of(dir)?.0;
    let name = Path::new(&dev).file_name()?.to_str()?.to_owned();
    let stat = PathBuf::from(format!("/sys/class/block/{name}/stat"));
    stat.exists().then_some(stat)
}

/// The device's (bytes written, write requests, cache flushes) so far.
fn device_counters() -> Option<[u64; 3]> {
    let path = DEVICE.get()?.as_ref()?;
    let text = fs::read_to_string(path).ok()?;
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields (0-based): 4 writes completed, 6 sectors written, 14 flushes completed.
    Some([f.get(6)? * 512, *f.get(4)?, f.get(14).copied().unwrap_or(0)])
}

/// A finished `ferry` process and what it cost.
struct Measured {
    cmd: String,
    stdout: String,
    wall: f64,
    user: f64,
    sys: f64,
    sampled: Sampled,
    /// The device's counters' growth during the run (whole device).
    device: Option<[u64; 3]>,
}

impl Measured {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).expect("sync JSON")
    }

    fn print(&self) {
        let j = self.json();
        let millis = j["millis"].as_f64().unwrap_or(0.0) / 1000.0;
        println!("  $ {}", self.cmd);
        println!(
            "  wall {:.2} s (the sync itself {:.2} s by its JSON; start + stop {:.2} s)",
            self.wall,
            millis,
            self.wall - millis
        );
        let cpu = self.user + self.sys;
        println!(
            "  CPU user {:.2} s + system {:.2} s = {:.2} s ({:.2} cores busy on average); peak RSS {:.1} MiB",
            self.user,
            self.sys,
            cpu,
            cpu / self.wall,
            self.sampled.hwm_kib as f64 / 1024.0
        );
        println!(
            "  storage I/O caused (/proc/PID/io): read {:.1} MiB, written {:.1} MiB",
            self.sampled.read_bytes as f64 / MIB,
            self.sampled.write_bytes as f64 / MIB
        );
        if let Some([bytes, writes, flushes]) = self.device {
            println!(
                "  the device meanwhile (all processes): {:.1} MiB written in {writes} write requests, {flushes} cache flushes",
                bytes as f64 / MIB
            );
        }
        let mut threads: Vec<(String, u64)> = self.sampled.threads.values().cloned().collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        let shown: Vec<String> = threads
            .iter()
            .filter(|(_, t)| *t > 0)
            .take(6)
            .map(|(n, t)| format!("{n} {:.2} s", *t as f64 / TICKS))
            .collect();
        let sampled: u64 = threads.iter().map(|(_, t)| t).sum();
        println!(
            "  busiest threads: {} (threads sampled {:.2} s of {:.2} s CPU)",
            if shown.is_empty() {
                "-".to_owned()
            } else {
                shown.join(", ")
            },
            sampled as f64 / TICKS,
            cpu
        );
    }
}

/// Runs `ferry ARGS` (RUST_LOG unset), timing it and sampling its /proc entries.
fn measure(args: &[&str]) -> Measured {
    let cmd = format!("ferry {}", args.join(" "));
    let (u0, s0) = children_ticks();
    let dev0 = device_counters();
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            let status = child.wait().expect("wait");
            let wall = start.elapsed().as_secs_f64();
            done.store(true, Ordering::SeqCst);
            (status, wall, s)
        })
    };
    let mut sampled = Sampled::default();
    while !done.load(Ordering::SeqCst) {
        sample(pid, &mut sampled);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, wall, stdout) = waiter.join().expect("waiter");
    let stderr = reader.join().unwrap_or_default();
    assert!(status.success(), "{cmd}: {status}\n{stderr}");
    let (u1, s1) = children_ticks();
    let device = device_counters()
        .zip(dev0)
        .map(|(b, a)| [0, 1, 2].map(|i| b[i].saturating_sub(a[i])));
    Measured {
        cmd,
        stdout,
        wall,
        user: (u1 - u0) as f64 / TICKS,
        sys: (s1 - s0) as f64 / TICKS,
        sampled,
        device,
    }
}

// ---------------------------------------------------------------------------------
// Preparing bundles and drives
// ---------------------------------------------------------------------------------

fn now_dtn() -> DtnTime {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    DtnTime::from_unix_secs(unix).expect("clock after the DTN epoch")
}

/// Seal parameters for bundles from the home's node to `to` in `realm`.
fn params(to: NodeId, realm: &str) -> SealParams {
    SealParams {
        recipient: Recipient::Node {
            id: to,
            endpoint: None,
        },
        realm: realm.to_owned(),
        created: Some(now_dtn()),
        sequence: 0,
        lifetime: LIFETIME,
        priority: Priority::Normal,
        hop_limit: 32,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    }
}

/// The home's keyring, with `n` sequence numbers reserved in its store (the store is
/// closed again before any `ferry` process opens it).
fn keyring_with_sequences(home: &Path, n: u64) -> (Keyring, std::ops::Range<u64>) {
    let h = Home::open(home).expect("open home");
    let seqs = {
        let store = h.open_store().expect("store");
        store.reserve_sequence(n.max(1)).expect("reserve sequences")
    };
    let (_, _, keyring) = h.into_parts();
    (keyring, seqs)
}

/// Writes bundles onto a drive as packs of up to [`SOURCE_PACK_ENTRIES`] (or fewer,
/// where the pack size limit ends a pack first).
struct SourceDrive<'d> {
    drive: &'d Drive,
    writer: Option<PackWriter<'d>>,
    packs: usize,
}

impl<'d> SourceDrive<'d> {
    fn new(drive: &'d Drive) -> Self {
        Self {
            drive,
            writer: None,
            packs: 0,
        }
    }

    fn push(&mut self, b: &Bundle, bytes: &[u8]) {
        let id = b.id().0;
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.len() >= SOURCE_PACK_ENTRIES)
        {
            self.finish();
        }
        let w = match self.writer.as_mut() {
            Some(w) => w,
            None => self
                .writer
                .insert(self.drive.pack_writer().expect("pack writer")),
        };
        match w.push(&id, 1, bytes) {
            Ok(()) => {}
            Err(DriveError::PackLimit { .. }) => {
                self.finish();
                let w = self
                    .writer
                    .insert(self.drive.pack_writer().expect("pack writer"));
                w.push(&id, 1, bytes).expect("push into a new pack");
            }
            Err(e) => panic!("writing the source drive: {e}"),
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            if w.finish().expect("finish pack").is_some() {
                self.packs += 1;
            }
        }
    }
}

/// What a drive folder holds, by part.
#[derive(Default, Debug)]
struct DriveBytes {
    packs: u64,
    pack_files: u64,
    nodes: u64,
    format: u64,
    other: u64,
    /// Allocated (st_blocks × 512) over all files.
    allocated: u64,
    /// Entries in all pack indexes, their summed body lengths, and their ids.
    entries: u64,
    bodies: u64,
    ids: HashSet<[u8; 32]>,
}

impl DriveBytes {
    fn total(&self) -> u64 {
        self.packs + self.nodes + self.format + self.other
    }
}

fn dir_files(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            dir_files(&e.path(), out);
        } else {
            out.push((e.path(), m));
        }
    }
}

fn drive_bytes(mount: &Path) -> DriveBytes {
    let ferry = mount.join(ferry_cl_drive::FERRY_DIR);
    let mut files = Vec::new();
    dir_files(&ferry, &mut files);
    let mut d = DriveBytes::default();
    for (p, m) in &files {
        let rel = p.strip_prefix(&ferry).unwrap_or(p);
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("");
        match top {
            "packs" => {
                d.packs += m.len();
                d.pack_files += 1;
            }
            "nodes" => d.nodes += m.len(),
            "FORMAT" => d.format += m.len(),
            _ => d.other += m.len(),
        }
        d.allocated += m.blocks() * 512;
    }
    let limits = DriveLimits {
        max_body_bytes: 1 << 30,
        ..DriveLimits::default()
    };
    let drive = Drive::open(mount, limits).expect("open drive");
    let list = drive.list_packs().expect("list packs");
    assert!(list.stray.is_empty(), "stray files: {:?}", list.stray);
    for p in &list.packs {
        let ix = drive.read_index(p).expect("read index");
        d.entries += ix.len() as u64;
        d.bodies += ix.body_bytes();
        d.ids.extend(ix.entries.iter().map(|e| e.id));
    }
    d
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "nproc {cpus}, {model}, {:.1} GiB RAM",
        mem as f64 / 1024.0 / 1024.0
    )
}

/// The mount holding `dir` (longest mount point that is a prefix): (device, mount
/// point, file system type).
fn mount_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .max_by_key(|(_, m, _)| m.len())
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn field(j: &serde_json::Value, k: &str) -> u64 {
    j[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {j}"))
}

// ---------------------------------------------------------------------------------
// The phases
// ---------------------------------------------------------------------------------

/// In-process verification of the same bundles: (batch, single, decode + checks +
/// batch) in bundles/s.
fn verification_rates(keyring: &Keyring, bundles: &[Bundle], encoded: &[Vec<u8>]) -> [f64; 3] {
    let n = bundles.len() as f64;
    let t = Instant::now();
    for chunk in bundles.chunks(VERIFY_BATCH) {
        let refs: Vec<&Bundle> = chunk.iter().collect();
        let r = keyring.verify_many(&refs);
        assert!(r.iter().all(Result::is_ok), "batch verification failed");
    }
    let batch = n / secs(t);
    let t = Instant::now();
    for b in bundles {
        keyring.verify(b).expect("verify");
    }
    let single = n / secs(t);
    // What the import's `accept_batch` does per batch: decode, realm and expiry
    // checks, batch verification.
    let now = Some(now_dtn());
    let t = Instant::now();
    for chunk in encoded.chunks(VERIFY_BATCH) {
        let decoded: Vec<Bundle> = chunk
            .iter()
            .map(|bytes| {
                let b = Bundle::decode(bytes, keyring.limits()).expect("decode");
                keyring.check_realm(&b).expect("realm");
                assert!(!b.is_expired(now), "expired");
                b
            })
            .collect();
        let refs: Vec<&Bundle> = decoded.iter().collect();
        let r = keyring.verify_many(&refs);
        assert!(r.iter().all(Result::is_ok), "batch verification failed");
    }
    let accept = n / secs(t);
    [batch, single, accept]
}

fn small_phase(dir: &Path, n: usize) {
    println!("\n== 1. small bundles: {n} × 1 KiB payload, A → C, one realm ==");
    let t = Instant::now();
    let a_home = dir.join("a");
    let c_home = dir.join("c");
    init(&a_home, "valley", &[]);
    let share = ferry(&["realm", "--home", path_str(&a_home), "valley"]);
    let c = init(&c_home, &share, &[]);
    let (keyring, seqs) = keyring_with_sequences(&a_home, n as u64);
    let src = dir.join("src");
    let out = dir.join("out");
    fs::create_dir_all(&src).expect("mkdir src");
    fs::create_dir_all(&out).expect("mkdir out");
    let mut p = params(c, "valley");
    let mut bundles = Vec::with_capacity(n);
    let mut encoded = Vec::with_capacity(n);
    let mut payload = vec![0u8; KIB];
    let drive = Drive::open_or_init(&src, DriveLimits::default()).expect("source drive");
    let mut source = SourceDrive::new(&drive);
    for (i, seq) in seqs.take(n).enumerate() {
        p.sequence = seq;
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let b = keyring.seal(&p, &payload, &mut OsRng).expect("seal");
        let bytes = b.encode();
        source.push(&b, &bytes);
        bundles.push(b);
        encoded.push(bytes);
    }
    source.finish();
    let body_len: u64 = encoded.iter().map(|b| b.len() as u64).sum();
    println!(
        "(setup: 2 nodes, {n} bundles sealed and written as {} packs onto the source drive in {:.1} s; mean bundle {:.1} bytes = payload + {:.1})",
        source.packs,
        secs(t),
        body_len as f64 / n as f64,
        body_len as f64 / n as f64 - KIB as f64
    );

    // Pure verification, measured now (no ferry process running).
    let [batch, single, accept] = verification_rates(&keyring, &bundles, &encoded);
    drop(bundles);
    drop(encoded);
    println!("\n-- signature verification in-process, one thread, same bundles --");
    println!(
        "verify_many, batches of {VERIFY_BATCH}: {batch:.0} bundles/s ({:.1} us each)",
        1e6 / batch
    );
    println!(
        "verify, one by one:           {single:.0} bundles/s ({:.1} us each)",
        1e6 / single
    );
    println!(
        "decode + checks + verify_many (the import's accept_batch): {accept:.0} bundles/s ({:.1} us each)",
        1e6 / accept
    );

    // Import.
    println!("\n-- import: A takes {n} bundles from the source drive (A's daemon not running) --");
    let imp = measure(&[
        "drive",
        "sync",
        "--home",
        path_str(&a_home),
        path_str(&src),
        "--json",
    ]);
    let j = imp.json();
    let imported = field(&j, "imported");
    assert_eq!(imported, n as u64, "imported count: {j}");
    assert_eq!(field(&j, "quarantined"), 0, "{j}");
    let bytes_in = field(&j, "bytes_in");
    imp.print();
    let rate = n as f64 / imp.wall;
    let sync_rate = n as f64 / (field(&j, "millis") as f64 / 1000.0).max(1e-3);
    println!(
        "import: {imported} bundles in {:.2} s: {rate:.0} bundles/s, {:.1} MiB/s of bundles ({sync_rate:.0} bundles/s within the sync)",
        imp.wall,
        bytes_in as f64 / MIB / imp.wall
    );
    println!(
        "import rate / batch verification rate: {:.1}% (within the sync: {:.1}%; target >= 70%)",
        100.0 * rate / batch,
        100.0 * sync_rate / batch
    );
    println!(
        "import rate / decode + checks + verify_many rate: {:.1}%",
        100.0 * rate / accept
    );
    let src_bytes = drive_bytes(&src);
    println!(
        "(A's manifest written to the source drive: {} bytes, {:.1} per imported bundle)",
        src_bytes.nodes,
        src_bytes.nodes as f64 / n as f64
    );

    // Export.
    println!("\n-- export: A writes everything to an empty folder (epidemic routing) --");
    let exp = measure(&[
        "drive",
        "sync",
        "--home",
        path_str(&a_home),
        path_str(&out),
        "--json",
    ]);
    let j = exp.json();
    let exported = field(&j, "exported");
    assert_eq!(exported, n as u64, "exported count: {j}");
    exp.print();
    let d = drive_bytes(&out);
    assert_eq!(d.entries, n as u64, "entries on the drive");
    assert_eq!(d.ids.len(), n, "distinct ids on the drive");
    println!(
        "export: {exported} bundles in {:.2} s: {:.0} bundles/s, {:.1} MiB/s of pack files written",
        exp.wall,
        n as f64 / exp.wall,
        d.packs as f64 / MIB / exp.wall
    );

    println!("\n-- bytes on the drive (apparent sizes) --");
    println!(
        "{} pack files {} bytes, bundles in them {} bytes ({} entries), nodes/ {} bytes, FORMAT {} bytes, other {} bytes; allocated {} bytes",
        d.pack_files, d.packs, d.bodies, d.entries, d.nodes, d.format, d.other, d.allocated
    );
    println!(
        "per 1 KiB bundle beyond the bundle, packs only: {:.2} bytes (target <= 64)",
        (d.packs - d.bodies) as f64 / n as f64
    );
    println!(
        "per 1 KiB bundle beyond the bundle, with nodes/ and FORMAT: {:.2} bytes",
        (d.total() - d.bodies) as f64 / n as f64
    );
    println!(
        "per 1 KiB bundle beyond the bundle, allocated blocks: {:.2} bytes",
        (d.allocated as f64 - d.bodies as f64) / n as f64
    );
    println!(
        "bundle overhead over its 1,024-byte payload (for reference): {:.2} bytes",
        d.bodies as f64 / n as f64 - KIB as f64
    );

    // The fixed cost of one sync.
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).expect("mkdir");
    let e = measure(&[
        "drive",
        "sync",
        "--home",
        path_str(&c_home),
        path_str(&empty),
        "--json",
    ]);
    println!(
        "\n(fixed cost of one sync: empty store, empty folder: wall {:.3} s, sync itself {:.3} s)",
        e.wall,
        field(&e.json(), "millis") as f64 / 1000.0
    );
    for p in [&src, &out, &empty] {
        let _ = fs::remove_dir_all(p);
    }
}

fn large_phase(dir: &Path, mib: usize) -> u64 {
    let payload_len = 10usize << 20;
    let n = (mib / 10).max(1);
    println!(
        "\n== 2. large bundles: {n} × 10 MiB payload ({} MiB), A2 → C, one realm ==",
        n * 10
    );
    let t = Instant::now();
    let a_home = dir.join("a");
    let share = ferry(&["realm", "--home", path_str(&a_home), "valley"]);
    let c: NodeId = ferry(&["id", "--home", path_str(&dir.join("c"))])
        .parse()
        .expect("C's id");
    let a2_home = dir.join("a2");
    let total = (n * payload_len) as u64;
    let quota = (2 * total).max(4 << 30);
    init(&a2_home, &share, &["--max-store-bytes", &quota.to_string()]);
    {
        let h = Home::open(&a2_home).expect("home");
        let s = &h.config().store;
        println!(
            "(A2's [store]: max_bundle_bytes {} (need > {payload_len}), max_bytes {} (need > {total}), max_bundles {})",
            s.max_bundle_bytes, s.max_bytes, s.max_bundles
        );
        assert!(s.max_bundle_bytes > payload_len + 4096);
        assert!(s.max_bytes > total + total / 8);
    }
    let (keyring, seqs) = keyring_with_sequences(&a2_home, n as u64);
    let src = dir.join("src-large");
    let out = dir.join("out-large");
    fs::create_dir_all(&src).expect("mkdir src");
    fs::create_dir_all(&out).expect("mkdir out");
    let mut payload: Vec<u8> = (0..payload_len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut p = params(c, "valley");
    let drive = Drive::open_or_init(&src, DriveLimits::default()).expect("source drive");
    let mut source = SourceDrive::new(&drive);
    let mut body_len = 0u64;
    for (i, seq) in seqs.take(n).enumerate() {
        p.sequence = seq;
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let b = keyring.seal(&p, &payload, &mut OsRng).expect("seal");
        let bytes = b.encode();
        body_len += bytes.len() as u64;
        source.push(&b, &bytes);
    }
    source.finish();
    drop(payload);
    println!(
        "(setup: node A2, {n} bundles sealed and written as {} packs ({:.1} MiB) onto the source drive in {:.1} s; they are in the page cache, so the import reads them from memory)",
        source.packs,
        body_len as f64 / MIB,
        secs(t)
    );

    println!("\n-- import: A2 takes {n} bundles from the source drive --");
    let imp = measure(&[
        "drive",
        "sync",
        "--home",
        path_str(&a2_home),
        path_str(&src),
        "--json",
    ]);
    let j = imp.json();
    assert_eq!(field(&j, "imported"), n as u64, "imported count: {j}");
    let bytes_in = field(&j, "bytes_in");
    imp.print();
    println!(
        "import: {n} bundles, {:.1} MiB in {:.2} s: {:.1} MiB/s ({:.1} MiB/s within the sync)",
        bytes_in as f64 / MIB,
        imp.wall,
        bytes_in as f64 / MIB / imp.wall,
        bytes_in as f64 / MIB / (field(&j, "millis") as f64 / 1000.0).max(1e-3)
    );

    println!("\n-- export: A2 writes everything to an empty folder --");
    let exp = measure(&[
        "drive",
        "sync",
        "--home",
        path_str(&a2_home),
        path_str(&out),
        "--json",
    ]);
    let j = exp.json();
    assert_eq!(field(&j, "exported"), n as u64, "exported count: {j}");
    exp.print();
    let d = drive_bytes(&out);
    assert_eq!(d.entries, n as u64);
    println!(
        "export: {n} bundles, {:.1} MiB of packs ({} files) in {:.2} s: {:.1} MiB/s (target >= 150; {:.1} MiB/s within the sync)",
        d.packs as f64 / MIB,
        d.pack_files,
        exp.wall,
        d.packs as f64 / MIB / exp.wall,
        d.packs as f64 / MIB / (field(&j, "millis") as f64 / 1000.0).max(1e-3)
    );
    for p in [&src, &out] {
        let _ = fs::remove_dir_all(p);
    }
    let _ = fs::remove_dir_all(&a2_home);
    total
}

/// Raw sequential write + fsync, then a copy (read + write + fsync), of `total` bytes
/// in 8 MiB chunks, in `dir`.
fn disk_phase(dir: &Path, total: u64) {
    let total = total.max(64 << 20);
    let chunk_len = 8usize << 20;
    let chunks = total.div_ceil(chunk_len as u64);
    let mib = (chunks * chunk_len as u64) as f64 / MIB;
    println!("\n== 3. the disk, for context: {mib:.0} MiB in 8 MiB chunks ==");
    let chunk: Vec<u8> = (0..chunk_len as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    let a = dir.join("disk-a");
    let b = dir.join("disk-b");
    let t = Instant::now();
    {
        let mut f = File::create(&a).expect("create");
        for _ in 0..chunks {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("fsync");
    }
    let w = secs(t);
    println!("write + fsync: {w:.2} s, {:.1} MiB/s", mib / w);
    let t = Instant::now();
    {
        let mut r = File::open(&a).expect("open");
        let mut f = File::create(&b).expect("create");
        let mut buf = vec![0u8; chunk_len];
        loop {
            let k = r.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            f.write_all(&buf[..k]).expect("write");
        }
        f.sync_all().expect("fsync");
    }
    let cp = secs(t);
    println!(
        "copy (read, likely from the page cache, + write + fsync): {cp:.2} s, {:.1} MiB/s",
        mib / cp
    );
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
}

fn main() {
    let small = env_usize("FERRY_DRIVE_SMALL", 100_000);
    let large_mib = env_usize("FERRY_DRIVE_LARGE_MIB", 1024);
    let dir = match std::env::var_os("FERRY_DRIVE_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let started = Instant::now();
    println!("== machine ==");
    println!("{}", machine());
    let fs_line = mount_of(dir.path()).map_or_else(
        || "unknown".to_owned(),
        |(dev, at, kind)| format!("{dev} on {at} ({kind})"),
    );
    let _ = DEVICE.set(device_of(dir.path()));
    println!("folder: {} on {fs_line}", dir.path().display());
    println!(
        "kernel: {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!("ferry: {BIN}");
    println!("FERRY_DRIVE_SMALL={small} FERRY_DRIVE_LARGE_MIB={large_mib}");

    let t = Instant::now();
    small_phase(dir.path(), small);
    println!("(phase 1 wall time {:.1} s)", secs(t));
    let t = Instant::now();
    let total = large_phase(dir.path(), large_mib);
    println!("(phase 2 wall time {:.1} s)", secs(t));
    let t = Instant::now();
    disk_phase(dir.path(), total);
    println!("(phase 3 wall time {:.1} s)", secs(t));
    println!("\n(total wall time {:.1} s)", secs(started));
}
