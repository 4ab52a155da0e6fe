//! LmdbStore benchmark: this machine's fsync rate, durable inserts per second at
//! several batch sizes as a fraction of the fsync bound, and random gets.
//!
//! `cargo bench -p ferry-storage --bench lmdb` (about 90 s). Everything runs in a
//! temporary directory under the build's target directory, so on the file system
//! the store would use (the file-system type is printed; a tmpfs would make every
//! figure meaningless and is reported). Shorter runs: `FERRY_BENCH_SCALE=0.2`.
//!
//! A custom timing loop rather than criterion: fsync-bound figures need runs of
//! seconds, and the point is one table comparing them. Because the disk of a shared
//! machine changes speed from one second to the next, each insert run is
//! interleaved with fsync probes (rounds of: fsync (a), fsync (b), inserts), and its
//! fraction of the fsync bound uses the probes of its own rounds.
#![allow(clippy::disallowed_methods, clippy::print_stdout)] // a benchmark times and prints

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::{BundleId, Destination, NodeHash, Priority};
use ferry_storage::{BundleMeta, CustodyStore, LmdbStore, NewRecord, RoutingMeta, StoreConfig};

const BUNDLE: usize = 1024;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn scale() -> f64 {
    std::env::var("FERRY_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s * scale())
}

/// The type of the file system holding `path`, from /proc/self/mounts (longest
/// mount point that contains it).
fn fs_type(path: &Path) -> String {
    let Ok(path) = std::fs::canonicalize(path) else {
        return "unknown".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown (no /proc/self/mounts)".into();
    };
    let best = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt)
                .then(|| (mnt.len(), mnt.to_owned(), ty.to_owned()))
        })
        .max_by_key(|(len, _, _)| *len);
    match best {
        Some((_, mnt, ty)) if ty == "tmpfs" || ty == "ramfs" => {
            format!("{ty} on {mnt} (NOT a disk: fsync figures are meaningless)")
        }
        Some((_, mnt, ty)) => format!("{ty} on {mnt}"),
        None => "unknown".into(),
    }
}

struct Rate {
    per_sec: f64,
    n: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Latencies of repeated operations and the time they took.
#[derive(Default)]
struct Samples {
    lat: Vec<Duration>,
    busy: Duration,
    items: u64,
}

impl Samples {
    fn add(&mut self, d: Duration, items: u64) {
        self.lat.push(d);
        self.busy += d;
        self.items += items;
    }

    fn rate(&mut self) -> Rate {
        self.lat.sort_unstable();
        let lat = &self.lat;
        let pick = |q: f64| {
            lat.get(((lat.len() as f64 - 1.0) * q) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Rate {
            per_sec: lat.len() as f64 / self.busy.as_secs_f64().max(1e-9),
            n: lat.len() as u64,
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
        }
    }

    fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

/// The fsync probes, on files beside the stores.
struct Probe {
    /// (a): 4 KiB rewritten in place, then fdatasync.
    a: File,
    a_next: u64,
    /// (b): a batch-sized chunk (64 x 1,100 B) appended, then fdatasync.
    b: File,
    b_path: std::path::PathBuf,
    b_off: u64,
    /// (c): the same chunk rewritten in place in a pre-allocated file: (b) without
    /// the file-size change.
    c: File,
    c_next: u64,
}

const CHUNK: usize = 64 * 1100;

impl Probe {
    fn new(dir: &Path) -> std::io::Result<Self> {
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(dir.join(name))
        };
        let a = open("fsync-a")?;
        a.write_all_at(&vec![0u8; 1 << 20], 0)?;
        a.sync_all()?;
        let c = open("fsync-c")?;
        for i in 0..64u64 {
            c.write_all_at(&[0u8; CHUNK], i * CHUNK as u64)?;
        }
        c.sync_all()?;
        Ok(Self {
            a,
            a_next: 0,
            b: open("fsync-b")?,
            b_path: dir.join("fsync-b"),
            b_off: 0,
            c,
            c_next: 0,
        })
    }

    fn run_a(&mut self, run: Duration, out: &mut Samples) -> std::io::Result<()> {
        let buf = [0xA5u8; 4096];
        let start = Instant::now();
        while start.elapsed() < run {
            let t = Instant::now();
            self.a.write_all_at(&buf, (self.a_next % 256) * 4096)?;
            self.a.sync_data()?;
            out.add(t.elapsed(), 1);
            self.a_next += 1;
        }
        Ok(())
    }

    fn run_b(&mut self, run: Duration, out: &mut Samples) -> std::io::Result<()> {
        let chunk = [0x5Au8; CHUNK];
        let start = Instant::now();
        while start.elapsed() < run {
            if self.b_off > 256 << 20 {
                self.b = OpenOptions::new()
                    .truncate(true)
                    .write(true)
                    .open(&self.b_path)?;
                self.b.sync_all()?;
                self.b_off = 0;
            }
            let t = Instant::now();
            self.b.write_all_at(&chunk, self.b_off)?;
            self.b.sync_data()?;
            out.add(t.elapsed(), 1);
            self.b_off += CHUNK as u64;
        }
        Ok(())
    }

    fn run_c(&mut self, run: Duration, out: &mut Samples) -> std::io::Result<()> {
        let chunk = [0x3Cu8; CHUNK];
        let start = Instant::now();
        while start.elapsed() < run {
            let t = Instant::now();
            self.c
                .write_all_at(&chunk, (self.c_next % 64) * CHUNK as u64)?;
            self.c.sync_data()?;
            out.add(t.elapsed(), 1);
            self.c_next += 1;
        }
        Ok(())
    }
}

/// Bundle `n`: random id and contents, 256 destinations; received one second per
/// 100 bundles, with a lifetime of one hour, one day or one week (so expiry times
/// grow with arrival, as they do for a relay).
fn record(n: u64) -> NewRecord {
    let x = splitmix(n);
    let mut id = [0u8; 32];
    for (i, c) in id.chunks_mut(8).enumerate() {
        c.copy_from_slice(&splitmix(x ^ i as u64).to_le_bytes());
    }
    let mut bytes = Vec::with_capacity(BUNDLE);
    let mut y = x;
    while bytes.len() < BUNDLE {
        y = splitmix(y);
        bytes.extend_from_slice(&y.to_le_bytes());
    }
    NewRecord {
        id: BundleId(id),
        bytes,
        meta: BundleMeta {
            priority: Priority::from_u8((x % 3) as u8).unwrap_or_default(),
            destination: Destination::Node(NodeHash([(x >> 8) as u8; 8])),
            source: NodeHash([(x >> 16) as u8; 8]),
            expires_at: Some(
                800_000_000 + (n & 0xff_ffff) / 100 + [3600, 86_400, 604_800][(x % 3) as usize],
            ),
            received_at: 800_000_000 + (n & 0xff_ffff) / 100,
            routing: RoutingMeta {
                holders: vec![NodeHash([(x >> 24) as u8; 8])],
                copies_left: 8,
                custody: ferry_storage::CustodyState::Held,
            },
        },
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        max_bytes: 2 << 30,
        max_count: 4_000_000,
        map_size: None,
    }
}

struct InsertRun {
    commits: Samples,
    a: Samples,
    b: Samples,
    ids: Vec<BundleId>,
    store: LmdbStore,
    _dir: tempfile::TempDir,
}

/// Durable inserts of 1 KiB bundles, `batch` per transaction, on a fresh store, in
/// `rounds` rounds of (fsync (a) probe, fsync (b) probe, inserts).
fn inserts(base: &Path, probe: &mut Probe, batch: usize, prealloc: bool, rounds: u32) -> InsertRun {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = LmdbStore::open(dir.path().join("store"), config()).expect("open store");
    store.set_preallocation(prealloc);
    let mut run = InsertRun {
        commits: Samples::default(),
        a: Samples::default(),
        b: Samples::default(),
        ids: Vec::new(),
        store,
        _dir: dir,
    };
    let mut n = (batch as u64) << 40;
    for _ in 0..rounds {
        probe.run_a(secs(0.35), &mut run.a).expect("fsync (a)");
        probe.run_b(secs(0.35), &mut run.b).expect("fsync (b)");
        let start = Instant::now();
        // Bounded by time and by volume (about 300 MB of bundles at most).
        while start.elapsed() < secs(1.2) && run.ids.len() < 300_000 {
            let recs: Vec<_> = (n..n + batch as u64).map(record).collect();
            n += batch as u64;
            let t = Instant::now();
            let out = run.store.insert_batch(&recs).expect("insert");
            run.commits.add(t.elapsed(), batch as u64);
            assert_eq!(out.len(), batch);
            run.ids.extend(recs.iter().map(|r| r.id));
        }
    }
    run
}

fn gets(store: &LmdbStore, ids: &[BundleId], run: Duration) -> (f64, u64) {
    let mut x = 1u64;
    let mut bytes = 0usize;
    // Warm up: touch every record once.
    for id in ids {
        bytes += store.get(id).expect("get").map_or(0, |r| r.bytes.len());
    }
    assert_eq!(bytes, ids.len() * BUNDLE);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        for _ in 0..1000 {
            x = splitmix(x);
            let id = &ids[(x % ids.len() as u64) as usize];
            let r = store.get(id).expect("get").expect("present");
            bytes = bytes.wrapping_add(r.bytes.len());
            n += 1;
        }
    }
    std::hint::black_box(bytes);
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

fn main() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-storage-bench");
    std::fs::create_dir_all(&base).expect("bench dir");
    let scratch = tempfile::tempdir_in(&base).expect("temp dir");
    let mut probe = Probe::new(scratch.path()).expect("fsync probe files");
    println!("ferry-storage LMDB benchmark (figures are indicative: the machine is shared)");
    println!("directory:   {}", base.display());
    println!("file system: {}", fs_type(&base));
    println!(
        "LMDB: default sync flags (a commit = write pages, fdatasync the data file, \
         write the meta page O_DSYNC)"
    );
    println!();

    let (mut a, mut b, mut c) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..3 {
        probe.run_a(secs(1.0), &mut a).expect("fsync (a)");
        probe.run_b(secs(1.0), &mut b).expect("fsync (b)");
        probe.run_c(secs(1.0), &mut c).expect("fsync (c)");
    }
    println!("fsync rate (3 interleaved rounds of 1 s each)      per s   p50 ms   p99 ms        n");
    for (name, s) in [
        ("(a) 4 KiB in place + fdatasync", &mut a),
        ("(b) 64 x 1,100 B appended + fdatasync", &mut b),
        (
            "(c) 64 x 1,100 B in place (pre-allocated) + fdatasync",
            &mut c,
        ),
    ] {
        let r = s.rate();
        println!(
            "{name:<52} {:>6.0} {:>8.2} {:>8.2} {:>8}",
            r.per_sec, r.p50_ms, r.p99_ms, r.n
        );
    }
    println!();

    println!(
        "durable inserts of 1 KiB bundles, fresh store each; bound = fsyncs/s x batch, with \
         the fsync rates probed between the insert rounds of the same row"
    );
    println!(
        "batch prealloc commits/s p50 ms p99 ms  inserts/s  fsync(a)/s    of (a)  fsync(b)/s    of (b)"
    );
    let mut keep = None;
    for (batch, prealloc, rounds) in [
        (1, false, 5),
        (64, false, 7),
        (64, true, 7),
        (1024, false, 7),
        (1024, true, 5),
    ] {
        let mut r = inserts(&base, &mut probe, batch, prealloc, rounds);
        let commits = r.commits.rate();
        let inserts_per_sec = r.commits.items_per_sec();
        let fa = r.a.rate().per_sec;
        let fb = r.b.rate().per_sec;
        println!(
            "{batch:>5} {:>8} {:>9.0} {:>6.2} {:>6.2} {:>10.0} {:>11.0} {:>8.0}% {:>11.0} {:>8.0}%",
            if prealloc { "on" } else { "off" },
            commits.per_sec,
            commits.p50_ms,
            commits.p99_ms,
            inserts_per_sec,
            fa,
            100.0 * inserts_per_sec / (fa * batch as f64),
            fb,
            100.0 * inserts_per_sec / (fb * batch as f64),
        );
        if batch == 1024 && !prealloc {
            keep = Some(r);
        }
    }
    println!(
        "(LMDB syncs twice per commit, so about 50% of the one-fsync bound is its ceiling for \
         small commits)"
    );
    println!();

    if let Some(r) = keep {
        let (per_sec, n) = gets(&r.store, &r.ids, secs(3.0));
        println!(
            "gets (random ids, warm, {} records of 1 KiB): {per_sec:.0}/s over {n} gets",
            r.ids.len()
        );
        let st = r.store.stats().expect("stats");
        println!(
            "that store: {} records, {} MiB of bundles, data file {} MiB",
            st.count,
            st.bytes >> 20,
            std::fs::metadata(r.store.path().join("data.mdb")).map_or(0, |m| m.len() >> 20)
        );
    }
}
