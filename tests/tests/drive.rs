//! End-to-end tests of sneakernet (`ferry drive sync`): USB drives (plain directories,
//! or a small tmpfs for a really full one) carried between nodes that never have a
//! network link. Real processes, real LMDB stores; `ferry run` daemons only where an
//! app has to receive (`ferry recv`) or the store has to be listed (`ferry bundles`).
//!
//! The drive format is docs/sneakernet.md; the sync is router/node/src/drive.rs; the
//! same scenarios at engine level are router/tests/engine_carrier.rs.
#![allow(clippy::disallowed_methods)] // the tests time their phases and kills
#![allow(clippy::print_stderr)] // and say which variant ran (tmpfs or write budget)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::nodes::{free_port, Daemon, SETTLE};
use ferry_tests::{field_u64, wait_bounded, wait_until, Ferry, Node, Output, Rng};
use serde_json::Value;

// ---------------------------------------------------------------------------------
// Nodes and daemons (after tests/tests/node.rs)
// ---------------------------------------------------------------------------------

/// A node with no network at all: QUIC on an ephemeral loopback port, no peers, no
/// discovery; only the local API (on its own port) for `send`, `recv`, `bundles`.
fn init_node(dir: &Path, name: &str, realm: &str) -> Node {
    let api = format!("127.0.0.1:{}", free_port());
    Node::init(
        dir.join(name),
        &[
            "--listen",
            "127.0.0.1:0",
            "--api",
            &api,
            "--no-discovery",
            "--realm",
            realm,
            "--routing",
            "epidemic",
        ],
    )
}

/// Nodes of one realm: the first founds `valley`, the others join it.
fn realm_nodes<const N: usize>(dir: &Path, names: [&str; N]) -> [Node; N] {
    let first = init_node(dir, names[0], "valley");
    let share = first.realm_share("valley");
    let mut first = Some(first);
    names.map(|name| match first.take() {
        Some(f) => f,
        None => init_node(dir, name, &share),
    })
}

/// `ferry send` through the running daemon; returns the bundle id.
fn send(node: &Node, to: &str, payload: &[u8]) -> String {
    let out = node
        .cmd(&["send", "--to", to, "--lifetime", "1h"])
        .stdin(payload)
        .run()
        .success();
    let id = out.stdout_text().trim().to_owned();
    assert_eq!(id.len(), 64, "send printed {id:?}");
    id
}

/// Starts `from`'s daemon, sends each payload to `to`, stops the daemon. Returns
/// bundle id → payload.
fn send_all(from: &Node, to: &Node, payloads: Vec<Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let d = Daemon::start(from);
    let mut sent = BTreeMap::new();
    for p in payloads {
        let id = send(from, &to.id, &p);
        assert!(sent.insert(id, p).is_none(), "send returned an id twice");
    }
    d.stop();
    sent
}

/// Ids in the running node's store.
fn stored_ids(node: &Node) -> BTreeSet<String> {
    let out = node
        .cmd(&["bundles", "--json", "--limit", "10000"])
        .run()
        .success();
    out.json()["bundles"]
        .as_array()
        .expect("bundles array")
        .iter()
        .filter_map(|b| b["id"].as_str().map(str::to_owned))
        .collect()
}

/// Stored realm-group bundles of the running node (receipts; manifests are never
/// stored).
fn stored_group_bundles(node: &Node) -> usize {
    let out = node
        .cmd(&["bundles", "--json", "--limit", "10000"])
        .run()
        .success();
    out.json()["bundles"]
        .as_array()
        .expect("bundles array")
        .iter()
        .filter(|b| b["destination"] == "realm-group")
        .count()
}

/// What an app received: payloads by bundle id, and how many deliveries `recv`
/// counted in all (more than the ids means some id was delivered twice).
#[derive(Debug, Default)]
struct Inbox {
    files: BTreeMap<String, Vec<u8>>,
    deliveries: usize,
}

/// One `ferry recv --wait W --out DIR`; adds its count to `inbox.deliveries`.
fn recv_once(node: &Node, dir: &Path, wait: u64, inbox: &mut Inbox) -> usize {
    let out = node
        .cmd(&[
            "recv",
            "--wait",
            &wait.to_string(),
            "--max",
            "100000",
            "--out",
        ])
        .arg_path(dir)
        .timeout(Duration::from_secs(wait + 60))
        .run()
        .success();
    let n: usize = out
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("ferry: received ")
                .and_then(|r| r.strip_suffix(" payload(s)"))
        })
        .unwrap_or_else(|| panic!("recv did not say how many: {}", out.stderr))
        .parse()
        .expect("count");
    inbox.deliveries += n;
    n
}

/// Receives until `expected` distinct payloads are in `dir` (bounded by SETTLE), then
/// once more (1 s) to catch anything extra. Returns every payload in `dir`.
fn recv_expect(node: &Node, dir: &Path, expected: usize, inbox: &mut Inbox) {
    let deadline = Instant::now() + SETTLE;
    loop {
        recv_once(node, dir, 2, inbox);
        if read_files(dir).len() >= expected || Instant::now() >= deadline {
            break;
        }
    }
    recv_once(node, dir, 1, inbox);
    inbox.files = read_files(dir);
}

fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            m.insert(name, std::fs::read(e.path()).expect("read payload"));
        }
    }
    m
}

/// Asserts the app got exactly `want` (ids and bytes), each delivered once.
#[track_caller]
fn assert_inbox(inbox: &Inbox, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let got: BTreeSet<&String> = inbox.files.keys().collect();
    let exp: BTreeSet<&String> = want.keys().collect();
    assert_eq!(
        got.len(),
        exp.len(),
        "{what}: {} payloads received, {} expected; missing {:?}, extra {:?}",
        got.len(),
        exp.len(),
        exp.difference(&got).collect::<Vec<_>>(),
        got.difference(&exp).collect::<Vec<_>>()
    );
    assert_eq!(got, exp, "{what}: other bundle ids than sent");
    for (id, p) in want {
        assert!(inbox.files[id] == *p, "{what}: payload of {id} differs");
    }
    assert_eq!(
        inbox.deliveries,
        want.len(),
        "{what}: {} deliveries for {} bundles (one delivered twice)",
        inbox.deliveries,
        want.len()
    );
}

// ---------------------------------------------------------------------------------
// Syncs
// ---------------------------------------------------------------------------------

/// `ferry drive sync --home H DRIVE --json` (with extra env), asserting success.
#[track_caller]
fn sync_env(node: &Node, drive: &Path, env: &[(&str, &str)]) -> Value {
    let mut f = node
        .cmd(&["drive", "sync"])
        .arg_path(drive)
        .arg("--json")
        .timeout(Duration::from_secs(60));
    for (k, v) in env {
        f = f.env(k, v);
    }
    let out = f.run().success();
    let v = out.json();
    for key in SUMMARY_COUNTS {
        assert!(v[key].is_u64(), "summary has no {key}: {v}");
    }
    v
}

#[track_caller]
fn sync(node: &Node, drive: &Path) -> Value {
    sync_env(node, drive, &[])
}

const SUMMARY_COUNTS: [&str; 12] = [
    "readers",
    "imported",
    "duplicates",
    "foreign",
    "expired",
    "refused",
    "quarantined",
    "exported",
    "not_exported",
    "bytes_in",
    "bytes_out",
    "millis",
];

#[track_caller]
fn n(v: &Value, key: &str) -> u64 {
    field_u64(v, key)
}

/// Deterministic payload `i` of `len` bytes (distinct for distinct `(seed, i)`).
fn payload(seed: u64, i: usize, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    r.bytes(len)
}

// ---------------------------------------------------------------------------------
// The drive, read independently of the product (docs/sneakernet.md)
// ---------------------------------------------------------------------------------

/// One entry of a pack index.
#[derive(Debug, Clone)]
struct PackEntry {
    id: String,
    offset: usize,
    len: usize,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos).ok_or("index ends inside a varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses a complete pack (magics, index, sizes adding up exactly); the BLAKE3 check
/// is left to the product. Entry = id [32] | len | copies | expires (varints).
fn parse_pack(b: &[u8]) -> Result<Vec<PackEntry>, String> {
    let s = b.len();
    if s < 21 {
        return Err(format!("{s} bytes: shorter than any pack"));
    }
    if &b[..4] != b"FPK1" || &b[s - 4..] != b"FPK1" {
        return Err("bad magic".into());
    }
    let index_len = u32::from_le_bytes(b[s - 16..s - 12].try_into().expect("4 bytes")) as usize;
    if index_len == 0 || index_len > s - 20 {
        return Err(format!("index length {index_len} in a {s}-byte file"));
    }
    let index = &b[s - 16 - index_len..s - 16];
    let mut pos = 0;
    let count = varint(index, &mut pos)?;
    let mut entries = Vec::new();
    let mut off = 4usize;
    for _ in 0..count {
        let id = index.get(pos..pos + 32).ok_or("index ends inside an id")?;
        pos += 32;
        let len = varint(index, &mut pos)? as usize;
        let _copies = varint(index, &mut pos)?;
        let _expires = varint(index, &mut pos)?;
        entries.push(PackEntry {
            id: hex(id),
            offset: off,
            len,
        });
        off += len;
    }
    if pos != index.len() {
        return Err("bytes after the last index entry".into());
    }
    if off + index_len + 16 != s {
        return Err(format!(
            "bodies and index make {} bytes, the file has {s}",
            off + index_len + 16
        ));
    }
    Ok(entries)
}

fn is_pack_name(name: &str) -> bool {
    name.len() == 20
        && name.ends_with(".fpk")
        && name[..16]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Every file in `<drive>/ferry/packs`, asserted to be a complete, well-named pack.
#[track_caller]
fn drive_packs(drive: &Path) -> BTreeMap<String, Vec<PackEntry>> {
    let dir = drive.join("ferry/packs");
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("packs dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            is_pack_name(&name) && e.file_type().expect("type").is_file(),
            "{}: not a pack name in packs/",
            e.path().display()
        );
        let bytes = std::fs::read(e.path()).expect("read pack");
        let entries = parse_pack(&bytes)
            .unwrap_or_else(|err| panic!("{}: incomplete pack: {err}", e.path().display()));
        m.insert(name, entries);
    }
    m
}

/// Distinct bundle ids held by the packs of a drive.
fn drive_ids(drive: &Path) -> BTreeSet<String> {
    drive_packs(drive)
        .values()
        .flatten()
        .map(|e| e.id.clone())
        .collect()
}

/// Every directory and file under `root`: relative path → contents (`None` for a
/// directory).
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return; // not there (yet): empty
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if e.file_type().expect("type").is_dir() {
                out.insert(format!("{rel}/"), None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).expect("read file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

// ---------------------------------------------------------------------------------
// A real small file system (tmpfs in a user + mount namespace), when available
// ---------------------------------------------------------------------------------

/// `unshare -Urm` works here (set `FERRY_TESTS_NO_TMPFS` to test the fallback).
fn tmpfs_available() -> bool {
    std::env::var_os("FERRY_TESTS_NO_TMPFS").is_none()
        && Command::new("unshare")
            .args(["-Urm", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Runs `script` under `unshare -Urm sh -c` with `$F` the ferry binary and `$1..`
/// `args`, the environment a `Ferry` run gets; asserts exit 0 and no panic.
fn in_namespace(script: &str, args: &[&Path], scratch: &Path) -> String {
    let out_path = scratch.join("ns.out");
    let err_path = scratch.join("ns.err");
    let mut cmd = Command::new("unshare");
    cmd.args(["-Urm", "sh", "-c", script, "sh"])
        .args(args)
        .env("F", ferry_tests::ferry_bin())
        .env_remove("FERRY_HOME")
        .env("HOME", "/nonexistent/ferry-tests-home")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(std::fs::File::create(&err_path).expect("err"));
    let mut child = cmd.spawn().expect("unshare");
    let status = wait_bounded(&mut child, Duration::from_secs(120)).expect("namespace timed out");
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success() && !stderr.contains("panicked"),
        "namespace script failed ({status}):\n{script}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    );
    stdout
}

// ---------------------------------------------------------------------------------
// 1. Two drives, three nodes, and the receipt all the way back
// ---------------------------------------------------------------------------------

/// A → d1 → B → d2 → C with no network anywhere; C's app gets the three payloads
/// intact; C's receipt goes d2 → B → d1 → A, and only its arrival releases A's copies.
/// A syncs through its running daemon (the API path), B standalone, C both ways.
#[test]
fn three_nodes_by_drive_with_receipt_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b, c] = realm_nodes(dir.path(), ["a", "b", "c"]);
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    std::fs::create_dir_all(&d1).expect("d1");
    std::fs::create_dir_all(&d2).expect("d2");

    let da = Daemon::start(&a);
    let mut sent = BTreeMap::new();
    for (i, len) in [1usize, 4_000, 100_000].into_iter().enumerate() {
        let p = payload(1, i, len);
        sent.insert(send(&a, &c.id, &p), p);
    }
    let ids: BTreeSet<String> = sent.keys().cloned().collect();
    assert_eq!(stored_ids(&a), ids);

    // A → d1 (through A's daemon).
    let s = sync(&a, &d1);
    assert_eq!(n(&s, "exported"), 3, "{s}");
    assert_eq!(n(&s, "imported"), 0, "{s}");
    assert_eq!(drive_ids(&d1), ids, "d1 holds exactly the three bundles");
    // B: d1 → store → d2.
    let s = sync(&b, &d1);
    assert_eq!(n(&s, "imported"), 3, "{s}");
    assert_eq!(n(&s, "readers"), 1, "A's manifest: {s}");
    let s = sync(&b, &d2);
    assert_eq!(n(&s, "exported"), 3, "{s}");
    assert_eq!(drive_ids(&d2), ids);
    // C, standalone: imports (and delivers once its daemon runs).
    let s = sync(&c, &d2);
    assert_eq!(n(&s, "imported"), 3, "{s}");
    assert_eq!(
        n(&s, "exported"),
        0,
        "nothing acked yet, nothing to write: {s}"
    );

    let dc = Daemon::start(&c);
    let inbox_dir = dir.path().join("c-in");
    let mut inbox = Inbox::default();
    recv_expect(&c, &inbox_dir, 3, &mut inbox);
    assert_inbox(&inbox, &sent, "C's app");
    // The acks become receipts (realm-group bundles) in C's store: acks within one
    // commit delay share one, so one to three; wait until none is being added.
    assert!(
        wait_until(SETTLE, || stored_group_bundles(&c) >= 1),
        "C made no receipt:\n{}",
        dc.log_text()
    );
    let mut receipts = stored_group_bundles(&c);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = stored_group_bundles(&c);
        if now == receipts {
            break;
        }
        receipts = now;
    }
    assert!(
        (1..=3).contains(&receipts),
        "{receipts} receipts for 3 acks"
    );
    let receipts = receipts as u64;
    assert!(stored_ids(&c).is_disjoint(&ids), "C keeps acked bundles");
    // C → d2 through its daemon: the receipts.
    let s = sync(&c, &d2);
    assert_eq!(n(&s, "exported"), receipts, "C writes its receipts: {s}");
    assert_eq!(n(&s, "imported"), 0, "{s}");
    dc.stop();

    // B carries the receipts back; it is released of its copies on the way.
    let s = sync(&b, &d2);
    assert_eq!(n(&s, "imported"), receipts, "B takes the receipts: {s}");
    let s = sync(&b, &d1);
    assert_eq!(
        n(&s, "exported"),
        receipts,
        "B writes only the receipts to d1 (its copies are released): {s}"
    );

    // Only now is A released, and only by its own sync of d1.
    assert_eq!(
        stored_ids(&a),
        ids,
        "A released copies before the receipt reached it"
    );
    let s = sync(&a, &d1);
    assert_eq!(n(&s, "imported"), receipts, "A takes the receipts: {s}");
    assert!(
        wait_until(SETTLE, || stored_ids(&a).is_disjoint(&ids)),
        "A still holds {:?} after the receipt:\n{}",
        stored_ids(&a),
        da.log_text()
    );
    // Nothing more for C's app: a last round trip delivers nothing twice.
    let s = sync(&c, &d2);
    assert_eq!(n(&s, "imported"), 0, "{s}");
    let dc = Daemon::start(&c);
    recv_once(&c, &inbox_dir, 1, &mut inbox);
    assert_eq!(inbox.deliveries, 3, "a payload was delivered again");
    dc.stop();
    da.stop();
}

// ---------------------------------------------------------------------------------
// 2. SIGKILL during export
// ---------------------------------------------------------------------------------

/// A sync killed at random points (start-up, import, manifest, mid-pack, rename)
/// leaves only complete packs in `packs/` (at most temp files in `tmp/`): a reader
/// never quarantines anything, and the destination gets every payload exactly once.
#[test]
fn killed_exports_leave_the_drive_readable() {
    const BUNDLES: usize = 300;
    const KILLS: usize = 30;
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c, c2] = realm_nodes(dir.path(), ["a", "c", "c2"]);
    let sent = send_all(&a, &c, (0..BUNDLES).map(|i| payload(2, i, 2_000)).collect());

    // How long a whole sync of these takes here (process start included): the
    // median of three, each on a drive of its own; the kills are spread over it.
    let mut drives = Vec::new();
    let mut times = Vec::new();
    for i in 0..3 {
        let probe = dir.path().join(format!("probe{i}"));
        std::fs::create_dir_all(&probe).expect("probe");
        // Spawned and waited for as the kills below are (a `Ferry::run` polls).
        let mut cmd = Ferry::new(["drive", "sync", "--home"])
            .arg_path(&a.home)
            .arg_path(&probe)
            .command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let status = cmd.spawn().expect("spawn sync").wait().expect("wait");
        times.push(t0.elapsed().as_micros() as usize);
        assert!(status.success(), "probe sync: {status}");
        assert_eq!(drive_ids(&probe).len(), BUNDLES);
        drives.push(probe);
    }
    times.sort_unstable();
    // Kill delays in microseconds, over most of a whole sync.
    let full_us = times[1].clamp(2_000, 400_000);
    let (min_delay, max_delay) = (full_us / 4, full_us * 11 / 10);

    // Kills: three attempts per drive, so each drive also sees syncs that start
    // after a killed one (and clean its temp files); a fresh drive then, so there is
    // always an export to interrupt.
    let mut rng = Rng::new(0x5eed_d21e);
    let (mut killed, mut finished, mut mid_write, mut after_pack) = (0, 0, 0, 0);
    for round in 0..KILLS {
        if round % 3 == 0 {
            let d = dir.path().join(format!("d{}", round / 3));
            std::fs::create_dir_all(&d).expect("drive");
            drives.push(d);
        }
        let d = drives.last().expect("drive").clone();
        let delay = min_delay + rng.below(max_delay - min_delay + 1);
        let err_path = dir.path().join(format!("kill-{round}.err"));
        let mut cmd = Ferry::new(["drive", "sync", "--home"])
            .arg_path(&a.home)
            .arg_path(&d)
            .arg("--json")
            .command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).expect("stderr file"));
        let mut child = cmd.spawn().expect("spawn sync");
        std::thread::sleep(Duration::from_micros(delay as u64));
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                finished += 1;
                assert!(status.success(), "round {round}: sync failed: {status}");
            }
            None => {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                killed += 1;
                // Where it landed: a temp file left means mid-write; a pack with
                // all bundles, after the rename (the engine never heard it).
                let tmp = tree(&d.join("ferry/tmp"));
                mid_write += usize::from(!tmp.is_empty());
                after_pack += usize::from(
                    tmp.is_empty()
                        && d.join("ferry/packs").is_dir()
                        && drive_ids(&d).len() == BUNDLES,
                );
            }
        }
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(!err.contains("panicked"), "round {round}: {err}");
        // Only complete packs in packs/ (checked here byte by byte), and a reader
        // of the realm agrees. It reads a copy: its manifest on the drive itself
        // would tell A that C2 reads it (and what C2 holds), and A writes to a
        // drive only what its known readers lack.
        if d.join("ferry/packs").is_dir() {
            drive_packs(&d);
            let copy = dir.path().join(format!("check-{round}"));
            copy_dir(&d, &copy);
            let s = sync(&c2, &copy);
            assert_eq!(
                n(&s, "quarantined"),
                0,
                "round {round} (killed after {delay} µs): a reader found damage: {s}"
            );
        }
    }
    eprintln!(
        "killed_exports: full sync {times:?} µs, kills spread over {min_delay}..={max_delay} µs: \
         {killed} killed ({mid_write} with a temp file being written, {after_pack} with \
         the whole pack already renamed), {finished} finished first"
    );
    assert!(
        killed >= KILLS / 4,
        "only {killed} of {KILLS} syncs were killed: the test proves little"
    );

    // One sync to completion on the last drive: then everything is on it.
    let d = drives.last().expect("drive").clone();
    let s = sync(&a, &d);
    assert_eq!(n(&s, "quarantined"), 0, "{s}");
    let on_drive = drive_ids(&d);
    let want: BTreeSet<String> = sent.keys().cloned().collect();
    assert!(
        on_drive == want,
        "the drive holds {} bundles, not exactly the {BUNDLES} sent, after a full sync: {s}",
        on_drive.len()
    );
    assert!(
        tree(&d.join("ferry/tmp")).is_empty(),
        "a completed sync leaves temp files"
    );

    // The destination syncs every drive (the last one complete, the others partial,
    // all overlapping): every payload, once.
    let mut imported = 0;
    for (i, drive) in drives.iter().enumerate() {
        let s = sync(&c, drive);
        assert_eq!(n(&s, "quarantined"), 0, "{s}");
        imported += n(&s, "imported");
        if i == 0 {
            assert_eq!(n(&s, "imported"), BUNDLES as u64, "{s}");
        }
    }
    assert_eq!(imported, BUNDLES as u64, "C imported some bundle twice");
    let dc = Daemon::start(&c);
    let mut inbox = Inbox::default();
    recv_expect(&c, &dir.path().join("c-in"), BUNDLES, &mut inbox);
    assert_inbox(&inbox, &sent, "C's app");
    dc.stop();
    eprintln!("killed_exports: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------
// 3. A full drive
// ---------------------------------------------------------------------------------

/// More bundles than the drive holds: the sync writes what fits, says the drive is
/// full, and leaves no partial pack; the destination receives exactly what was on the
/// drive; with room again, the next sync writes the rest, and nothing arrives twice.
///
/// With `unshare`, the drive is a 300 KiB tmpfs (remounted 2 MiB for the second
/// visit, by copying the drive into it: same drive id, same files); without, the
/// `FERRY_DRIVE_WRITE_BUDGET` fault injection plays the full drive.
#[test]
fn full_drive_exports_what_fits() {
    const BUNDLES: usize = 24;
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c] = realm_nodes(dir.path(), ["a", "c"]);
    let sent = send_all(
        &a,
        &c,
        (0..BUNDLES).map(|i| payload(3, i, 30_000)).collect(),
    );
    let total_bytes: usize = sent.values().map(Vec::len).sum();
    assert!(total_bytes > 2 * 300 * 1024);

    let tmpfs = tmpfs_available();
    eprintln!(
        "full_drive_exports_what_fits: {}",
        if tmpfs {
            "300 KiB tmpfs in a user namespace"
        } else {
            "FERRY_DRIVE_WRITE_BUDGET=300K (no unshare, or FERRY_TESTS_NO_TMPFS set)"
        }
    );
    let visit1 = dir.path().join("visit1");
    let visit2 = dir.path().join("visit2");
    std::fs::create_dir_all(&visit1).expect("visit1");
    let first: Value = if tmpfs {
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mnt");
        let out = in_namespace(
            r#"set -e
mount -t tmpfs -o size=300k tmpfs "$2"
"$F" drive sync --home "$1" "$2" --json
cp -a "$2/ferry" "$3/""#,
            &[&a.home, &mnt, &visit1],
            dir.path(),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    } else {
        sync_env(&a, &visit1, &[("FERRY_DRIVE_WRITE_BUDGET", "300K")])
    };

    let exported = n(&first, "exported");
    assert_eq!(first["drive_full"], true, "{first}");
    assert!(
        exported > 0 && exported < BUNDLES as u64,
        "exported {exported} of {BUNDLES}: {first}"
    );
    assert_eq!(n(&first, "quarantined"), 0, "{first}");
    // Only complete packs, holding exactly what the sync says it exported.
    let on_drive = drive_ids(&visit1);
    assert_eq!(on_drive.len() as u64, exported, "{first}");
    assert!(on_drive.iter().all(|id| sent.contains_key(id)));
    assert!(
        tree(&visit1.join("ferry/tmp")).is_empty(),
        "temp files left"
    );

    // C imports what is there and its app receives exactly those.
    let s = sync(&c, &visit1);
    assert_eq!(n(&s, "imported"), exported, "{s}");
    assert_eq!(n(&s, "quarantined"), 0, "{s}");
    let dc = Daemon::start(&c);
    let inbox_dir = dir.path().join("c-in");
    let mut inbox = Inbox::default();
    let want1: BTreeMap<String, Vec<u8>> = sent
        .iter()
        .filter(|(id, _)| on_drive.contains(*id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    recv_expect(&c, &inbox_dir, want1.len(), &mut inbox);
    assert_inbox(&inbox, &want1, "C's app after the full drive");
    dc.stop();

    // Room again: the same drive (now with C's manifest and receipt) exports the rest.
    let second: Value = if tmpfs {
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&visit2).expect("visit2");
        let out = in_namespace(
            r#"set -e
mount -t tmpfs -o size=2m tmpfs "$2"
cp -a "$3/ferry" "$2/"
"$F" drive sync --home "$1" "$2" --json
cp -a "$2/ferry" "$4/""#,
            &[&a.home, &mnt, &visit1, &visit2],
            dir.path(),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    } else {
        copy_dir(&visit1, &visit2);
        sync(&a, &visit2)
    };
    let rest = BUNDLES as u64 - exported;
    assert_eq!(
        n(&second, "exported"),
        rest,
        "the rest, and only it: {second}"
    );
    assert_eq!(second["drive_full"], false, "{second}");
    assert_eq!(n(&second, "quarantined"), 0, "{second}");
    let all: BTreeSet<String> = sent.keys().cloned().collect();
    assert_eq!(drive_ids(&visit2), all);

    let s = sync(&c, &visit2);
    assert_eq!(n(&s, "imported"), rest, "{s}");
    let dc = Daemon::start(&c);
    recv_expect(&c, &inbox_dir, BUNDLES, &mut inbox);
    assert_inbox(&inbox, &sent, "C's app after both visits");
    dc.stop();
}

// ---------------------------------------------------------------------------------
// 4. A damaged drive
// ---------------------------------------------------------------------------------

/// A drive with a bit-flipped bundle body, a truncated pack, stray files, a garbage
/// manifest and another realm's pack: the sync does not fail, imports every valid
/// bundle, counts the foreign ones, quarantines the rest and names it.
#[test]
fn corrupt_drive_imports_the_valid_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c] = realm_nodes(dir.path(), ["a", "c"]);
    let d_node = init_node(dir.path(), "d", "other");
    let e_node = init_node(dir.path(), "e", &d_node.realm_share("other"));

    // A's packs: three syncs of 10, 5 and 5 bundles (a sync writes one pack per
    // burst of the engine's exports, so at least one pack each).
    let good = dir.path().join("good");
    std::fs::create_dir_all(&good).expect("good");
    let mut sent = BTreeMap::new();
    for (batch, count) in [10usize, 5, 5].into_iter().enumerate() {
        let more = send_all(
            &a,
            &c,
            (0..count)
                .map(|i| payload(4, batch * 100 + i, 1_500 + 97 * i))
                .collect(),
        );
        let s = sync(&a, &good);
        assert_eq!(n(&s, "exported"), count as u64, "{s}");
        sent.extend(more);
    }
    let packs = drive_packs(&good);
    assert!(packs.len() >= 3, "{packs:?}");
    assert_eq!(drive_ids(&good).len(), 20);
    // The biggest pack gets a damaged body; the smallest other one is truncated.
    let mut by_size: Vec<(&String, usize)> = packs.iter().map(|(k, v)| (k, v.len())).collect();
    by_size.sort_by_key(|(k, len)| (std::cmp::Reverse(*len), (*k).clone()));
    let p1 = by_size[0].0.clone();
    let p2 = by_size[by_size.len() - 1].0.clone();
    assert!(packs[&p1].len() >= 2, "{packs:?}");
    // Another realm's pack (D's bundles for E), exported by D to a drive of its own.
    let foreign_drive = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign_drive).expect("foreign");
    send_all(
        &d_node,
        &e_node,
        (0..3).map(|i| payload(5, i, 800)).collect(),
    );
    let s = sync(&d_node, &foreign_drive);
    assert_eq!(n(&s, "exported"), 3, "{s}");
    let foreign_packs = drive_packs(&foreign_drive);
    assert!(!foreign_packs.is_empty());

    // The damaged copy.
    let bad = dir.path().join("bad");
    copy_dir(&good, &bad);
    let packs_dir = bad.join("ferry/packs");
    // Flip bits in the middle of one entry's body.
    let victim = packs[&p1][packs[&p1].len() / 2].clone();
    let mut bytes = std::fs::read(packs_dir.join(&p1)).expect("read");
    let at = victim.offset + victim.len / 2;
    bytes[at] ^= 0x5a;
    bytes[at + 1] ^= 0xff;
    std::fs::write(packs_dir.join(&p1), &bytes).expect("write");
    // Cut off the second half of another pack (index and trailer gone).
    let len = std::fs::metadata(packs_dir.join(&p2)).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(packs_dir.join(&p2))
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    // Pack 3 stays intact. Garbage beside them.
    let mut rng = Rng::new(44);
    std::fs::write(packs_dir.join("zzzz.fpk"), rng.bytes(3_000)).expect("zzzz");
    std::fs::write(packs_dir.join("notes.txt"), b"drive for the valley\n").expect("notes");
    std::fs::write(bad.join("ferry/nodes/x.fm"), rng.bytes(700)).expect("x.fm");
    for name in foreign_packs.keys() {
        std::fs::copy(
            foreign_drive.join("ferry/packs").join(name),
            packs_dir.join(name),
        )
        .expect("copy foreign pack");
    }

    // Expected: every bundle of A's but the damaged one and the truncated pack's.
    let mut want_ids = drive_ids(&good);
    want_ids.remove(&victim.id);
    for e in &packs[&p2] {
        want_ids.remove(&e.id);
    }
    let expected = want_ids.len();
    assert!(expected >= 10, "{expected}");

    let out = c
        .cmd(&["drive", "sync"])
        .arg_path(&bad)
        .arg("--json")
        .timeout(Duration::from_secs(60))
        .run();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let s = out.success().json();
    assert_eq!(
        n(&s, "imported"),
        expected as u64,
        "every valid bundle: {s}"
    );
    assert_eq!(n(&s, "foreign"), 3, "D's bundles are another realm's: {s}");
    assert!(
        n(&s, "quarantined") >= 5,
        "a bundle, a truncated pack, two stray files, a manifest: {s}"
    );
    let messages: Vec<String> = s["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m.as_str().expect("message").to_owned())
        .collect();
    let text = messages.join("\n");
    let stem = |p: &str| p.trim_end_matches(".fpk").to_owned();
    for name in [
        stem(&p1),
        stem(&p2),
        "zzzz.fpk".into(),
        "notes.txt".into(),
        "x.fm".into(),
    ] {
        assert!(text.contains(&name), "no message names {name}:\n{text}");
    }
    // Moved aside on the drive (files) or copied into C's home (the bad bundle).
    let q: BTreeSet<String> = std::fs::read_dir(bad.join("ferry/quarantine"))
        .expect("drive quarantine")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in [p2.as_str(), "zzzz.fpk", "notes.txt", "x.fm"] {
        assert!(
            q.iter().any(|f| f.starts_with(&format!("{name}."))),
            "{name} not in ferry/quarantine: {q:?}"
        );
        let original = if name.ends_with(".fm") {
            bad.join("ferry/nodes").join(name)
        } else {
            packs_dir.join(name)
        };
        assert!(!original.exists(), "{name} still in place");
    }
    let home_q: Vec<String> = std::fs::read_dir(c.home.join("quarantine"))
        .expect("home quarantine")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        home_q.iter().any(|f| f.contains(&stem(&p1))),
        "the bad bundle of {p1} not copied to C's quarantine: {home_q:?}"
    );
    assert!(
        packs_dir.join(&p1).exists(),
        "a pack with one bad body stays"
    );
    assert!(
        foreign_packs.keys().all(|p| packs_dir.join(p).exists()),
        "another realm's pack is left alone"
    );

    // Again: nothing new, nothing crashes.
    let s2 = sync(&c, &bad);
    assert_eq!(n(&s2, "imported"), 0, "{s2}");

    // And the app gets exactly the valid ones.
    let dc = Daemon::start(&c);
    let mut inbox = Inbox::default();
    recv_expect(&c, &dir.path().join("c-in"), expected, &mut inbox);
    let want: BTreeMap<String, Vec<u8>> = sent
        .iter()
        .filter(|(id, _)| want_ids.contains(*id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_inbox(&inbox, &want, "C's app from the damaged drive");
    dc.stop();
}

// ---------------------------------------------------------------------------------
// 5. Idempotence
// ---------------------------------------------------------------------------------

/// Syncing again changes nothing: no bundle written or imported twice, every pack
/// byte-identical, the same manifests (rewritten, by name).
#[test]
fn second_sync_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c] = realm_nodes(dir.path(), ["a", "c"]);
    let sent = send_all(&a, &c, (0..6).map(|i| payload(6, i, 3_000)).collect());
    let d = dir.path().join("d");
    std::fs::create_dir_all(&d).expect("d");

    let a1 = sync(&a, &d);
    let c1 = sync(&c, &d);
    assert_eq!(n(&a1, "exported"), 6, "{a1}");
    assert_eq!(n(&c1, "imported"), 6, "{c1}");
    let before = tree(&d);

    let a2 = sync(&a, &d);
    let c2 = sync(&c, &d);
    assert_eq!(n(&a2, "exported"), 0, "{a2}");
    assert_eq!(n(&a2, "imported"), 0, "{a2}");
    assert_eq!(n(&a2, "bytes_out"), 0, "{a2}");
    assert_eq!(n(&c2, "imported"), 0, "{c2}");
    assert_eq!(n(&c2, "exported"), 0, "{c2}");
    for s in [&a2, &c2] {
        assert_eq!(n(s, "quarantined"), 0, "{s}");
        assert_eq!(s["drive"], a1["drive"]);
    }
    let after = tree(&d);

    let is_manifest = |p: &String| p.starts_with("ferry/nodes/") && p.ends_with(".fm");
    let names =
        |t: &BTreeMap<String, Option<Vec<u8>>>| -> BTreeSet<String> { t.keys().cloned().collect() };
    assert_eq!(
        names(&before),
        names(&after),
        "the drive's set of files changed"
    );
    for (path, content) in &before {
        if !is_manifest(path) {
            assert!(after[path] == *content, "{path} changed on the second sync");
        }
    }
    let manifests: Vec<&String> = before.keys().filter(|p| is_manifest(p)).collect();
    assert_eq!(manifests.len(), 2, "one manifest per node: {manifests:?}");
    assert_eq!(drive_ids(&d).len(), sent.len());
}

// ---------------------------------------------------------------------------------
// A full drive
// ---------------------------------------------------------------------------------

/// A drive that fills up while a pack smaller than the writer's 256 KiB buffer is
/// finished (ENOSPC or the budget surfaces in `finish`, not in `push`): the sync
/// should retry with smaller packs, as it does when `push` hits the full drive, and
/// count the bundles it could not write in `not_exported`.
#[test]
fn full_drive_at_pack_finish_fills_what_fits_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c] = realm_nodes(dir.path(), ["a", "c"]);
    // 5 × ~30 KB: 3 fit in 100,000 bytes.
    send_all(&a, &c, (0..5).map(|i| payload(7, i, 30_000)).collect());
    let d = dir.path().join("d");
    std::fs::create_dir_all(&d).expect("d");
    let s = sync_env(&a, &d, &[("FERRY_DRIVE_WRITE_BUDGET", "100000")]);
    assert_eq!(s["drive_full"], true, "{s}");
    assert_eq!(
        n(&s, "exported") + n(&s, "not_exported"),
        5,
        "every chosen bundle is exported or counted as not exported: {s}"
    );
    assert_eq!(n(&s, "exported"), 3, "what fits is written: {s}");
}

/// A node that only imports from a full drive (the usual case: the drive was filled
/// at the previous site) takes custody of its bundles, then fails to write its
/// manifest: the sync should still succeed, report `drive_full`, and not exit 1.
#[test]
fn full_drive_still_imports_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, c] = realm_nodes(dir.path(), ["a", "c"]);
    send_all(&a, &c, (0..3).map(|i| payload(8, i, 1_000)).collect());
    let d = dir.path().join("d");
    std::fs::create_dir_all(&d).expect("d");
    assert_eq!(n(&sync(&a, &d), "exported"), 3);
    // Nothing more fits on the drive when C syncs.
    let out: Output = c
        .cmd(&["drive", "sync"])
        .arg_path(&d)
        .arg("--json")
        .env("FERRY_DRIVE_WRITE_BUDGET", "0")
        .run();
    if out.code() != Some(0) {
        // Show what the failed sync had done all the same: with room again, C finds
        // the bundles already in its store (custody was taken).
        let again = sync(&c, &d);
        panic!(
            "an importing sync failed on a full drive ({}): {}\nthe next sync with room: {again}",
            out.status, out.stderr
        );
    }
    let s = out.json();
    assert_eq!(n(&s, "imported"), 3, "{s}");
    assert_eq!(s["drive_full"], true, "{s}");
}
