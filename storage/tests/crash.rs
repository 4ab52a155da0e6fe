//! Crash test: a child process inserts into an `LmdbStore` (singles and batches, one
//! record in 16 large enough for a payload file), removes some large records, and
//! reserves sequence numbers, printing each only after the call returned `Ok`; the
//! parent SIGKILLs it at random moments, reopens the store and checks that nothing
//! acknowledged was lost, that nothing acknowledged as removed came back, that every
//! batch is all-or-nothing, that exactly the stored large records have payload files
//! (no file left behind by a killed transaction or removal), and that no sequence
//! number was ever handed out twice.
//!
//! The child is this same test binary, re-executed with a filter for this test and
//! an environment variable that makes the test act as the child.
#![allow(clippy::disallowed_methods)] // the parent times the child with Instant::now

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{id_of, payload, splitmix};
use ferry_core::{BundleId, Destination, NodeHash, Priority};
use ferry_storage::lmdb::FILE_MIN;
use ferry_storage::{
    BundleMeta, CustodyStore, LmdbStore, NewRecord, RoutingMeta, StoreConfig, StoreError,
};

const TEST_NAME: &str = "sigkill_loses_no_acknowledged_write";
const CHILD_DIR: &str = "FERRY_STORAGE_CRASH_DIR";
const CHILD_RUN: &str = "FERRY_STORAGE_CRASH_RUN";
const KILLS: u64 = 24;
const TIME_BUDGET: Duration = Duration::from_secs(40);

fn config() -> StoreConfig {
    StoreConfig {
        max_bytes: 1 << 30,
        max_count: 1_000_000,
        map_size: None,
    }
}

/// Whether record `n` of a run is large (kept in a payload file).
fn large(n: u64) -> bool {
    n % 16 == 5
}

/// Record `n` of run `run`: id, bytes and metadata all derived from (run, n).
fn record(run: u64, n: u64) -> NewRecord {
    let id = id_of(run + 1, n);
    let len = usize::from(id.0[0]) * 8 + if large(n) { FILE_MIN } else { 64 };
    NewRecord {
        id,
        bytes: payload(&id, len),
        meta: BundleMeta {
            priority: Priority::from_u8(id.0[1] % 3).unwrap_or_default(),
            destination: Destination::Node(NodeHash([id.0[2]; 8])),
            source: NodeHash([id.0[3]; 8]),
            expires_at: Some(u64::from(id.0[4]) + 1_000_000),
            received_at: run,
            routing: RoutingMeta {
                holders: vec![NodeHash([id.0[5]; 8])],
                copies_left: u32::from(id.0[6]),
                custody: ferry_storage::CustodyState::Held,
            },
        },
    }
}

fn hex(id: &BundleId) -> String {
    id.to_string()
}

/// The child: insert, remove and reserve until killed. Lines:
/// `TRY run first len` before a batch, `ACK id` for each record after it returned Ok,
/// `DEL id` before a removal, `REM id` after it returned Ok, `SEQ start end` after a reservation returned
/// Ok.
fn child(dir: &str, run: u64) -> Result<(), StoreError> {
    let store = LmdbStore::open(dir, config())?;
    // Half the runs with data-file pre-allocation, which must not change durability.
    store.set_preallocation(run % 2 == 1);
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        // Write and flush each line on its own: what the parent reads was acknowledged.
        let ok = writeln!(out, "{line}").and_then(|_| out.flush());
        if ok.is_err() {
            std::process::exit(3);
        }
    };
    // The test harness may have left "test NAME ... " unterminated on stdout.
    say("\nREADY".into());
    let mut n = 0u64;
    for i in 1u64.. {
        if i % 4 == 0 {
            let r = store.reserve_sequence(1 + i % 5)?;
            say(format!("SEQ {} {}", r.start, r.end));
        }
        let len = if i % 3 == 0 {
            1
        } else {
            1 + splitmix(run * 1_000_003 + i) % 48
        };
        let recs: Vec<_> = (n..n + len).map(|k| record(run, k)).collect();
        say(format!("TRY {run} {n} {len}"));
        if len == 1 {
            store.insert(&recs[0])?;
        } else {
            store.insert_batch(&recs)?;
        }
        for r in &recs {
            say(format!("ACK {}", hex(&r.id)));
        }
        // Every other large record is removed again (its payload file must go).
        for (k, r) in (n..n + len).zip(&recs) {
            if large(k) && k % 32 == 5 {
                say(format!("DEL {}", hex(&r.id)));
                if store.remove(&r.id)? {
                    say(format!("REM {}", hex(&r.id)));
                }
            }
        }
        n += len;
    }
    Ok(())
}

struct ChildOutput {
    acked: Vec<String>,
    removing: Vec<String>,
    removed: Vec<String>,
    tries: Vec<(u64, u64, u64)>,
    seqs: Vec<Range<u64>>,
}

fn parse(lines: &[String]) -> ChildOutput {
    let mut out = ChildOutput {
        acked: Vec::new(),
        removing: Vec::new(),
        removed: Vec::new(),
        tries: Vec::new(),
        seqs: Vec::new(),
    };
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            ["ACK", id] => out.acked.push((*id).to_owned()),
            ["DEL", id] => out.removing.push((*id).to_owned()),
            ["REM", id] => out.removed.push((*id).to_owned()),
            ["TRY", run, first, len] => out.tries.push((
                run.parse().unwrap(),
                first.parse().unwrap(),
                len.parse().unwrap(),
            )),
            ["SEQ", a, b] => out.seqs.push(a.parse().unwrap()..b.parse().unwrap()),
            _ => {}
        }
    }
    out
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let run = std::env::var(CHILD_RUN)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let e = child(&dir, run);
        panic!("child stopped: {e:?}");
    }

    let dir = common::tmp();
    let path = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = splitmix(u64::from(std::process::id()) ^ started.elapsed().as_nanos() as u64);
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut most_files = 0;
    let mut tries = Vec::new();
    let mut seqs: Vec<Range<u64>> = Vec::new();
    let mut kills = 0;
    let mut runs_with_acks = 0;

    for run in 0..KILLS {
        if started.elapsed() > TIME_BUDGET {
            break;
        }
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &path)
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let reader = {
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut lines = Vec::new();
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => return lines,
                        // A line cut by the kill has no newline: it was not complete.
                        Ok(_) if buf.last() != Some(&b'\n') => return lines,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim().to_owned();
                            if line.ends_with("READY") {
                                ready.store(true, Ordering::Release);
                            }
                            lines.push(line);
                        }
                    }
                }
            })
        };
        let wait_start = Instant::now();
        while !ready.load(Ordering::Acquire) && wait_start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(ready.load(Ordering::Acquire), "child {run} never got ready");
        rng = splitmix(rng);
        std::thread::sleep(Duration::from_millis(5 + rng % 76));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "child {run} exited by itself: {status}");
        kills += 1;
        let out = parse(&reader.join().unwrap());
        if !out.acked.is_empty() {
            runs_with_acks += 1;
        }
        for a in out.acked {
            acked.insert(a, run);
        }
        // A removal the kill cut short may or may not have happened.
        for r in out.removing {
            acked.remove(&r);
        }
        for r in out.removed {
            removed.insert(r);
        }
        tries.extend(out.tries);
        seqs.extend(out.seqs);

        // Reopen after the crash and check everything acknowledged so far.
        let store = LmdbStore::open(&path, config()).unwrap();
        let stats = store.stats().unwrap();
        assert!(stats.count >= acked.len() as u64);
        assert_eq!(stats.quarantined, 0);
        for (hex_id, &r) in &acked {
            let id: BundleId = hex_id.parse().unwrap();
            let got = store.get(&id).unwrap().unwrap_or_else(|| {
                panic!("acknowledged {hex_id} (run {r}) lost after kill {kills}")
            });
            let n = u64::from_be_bytes(id.0[24..].try_into().unwrap());
            let want = record(r, n);
            assert_eq!(want.id, id);
            assert_eq!(got.bytes, want.bytes, "bytes of {hex_id}");
            assert_eq!(got.info.meta, want.meta, "metadata of {hex_id}");
        }
        for hex_id in &removed {
            let id: BundleId = hex_id.parse().unwrap();
            assert!(
                !store.contains(&id).unwrap(),
                "{hex_id} came back after its removal was acknowledged"
            );
        }
        // Every batch is all or nothing, acknowledged or not (a removal after the
        // batch may have taken one large record out).
        let mut large_stored = 0;
        for &(r, first, len) in &tries {
            let stored: Vec<u64> = (first..first + len)
                .filter(|&k| store.contains(&record(r, k).id).unwrap())
                .collect();
            let present = stored.len() as u64;
            let removable = (first..first + len).filter(|&k| k % 32 == 5).count() as u64;
            assert!(
                present == 0 || (len - removable..=len).contains(&present),
                "batch run {r} first {first}: {present} of {len} records present"
            );
            large_stored += stored.iter().filter(|&&k| large(k)).count();
        }
        // Exactly the stored large records have payload files.
        let files = std::fs::read_dir(path.join("payloads")).unwrap().count();
        assert_eq!(files, large_stored, "payload files after kill {kills}");
        most_files = most_files.max(files);
        drop(store);
    }

    // No sequence number was handed out twice, and the counter is past them all.
    seqs.sort_by_key(|r| r.start);
    for w in seqs.windows(2) {
        assert!(w[0].end <= w[1].start, "overlapping reservations {w:?}");
    }
    let store = LmdbStore::open(&path, config()).unwrap();
    let next = store.reserve_sequence(1).unwrap();
    if let Some(last) = seqs.last() {
        assert!(next.start >= last.end);
    }
    assert!(seqs.first().is_none_or(|r| r.start >= 1));

    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{kills} kills in {:?}: {} acknowledged records, {} removals, {} batches tried, \
             {} reservations",
            started.elapsed(),
            acked.len(),
            removed.len(),
            tries.len(),
            seqs.len()
        );
    }
    assert!(kills >= 20, "only {kills} kills within the time budget");
    assert!(
        runs_with_acks >= kills / 2,
        "too few runs acknowledged anything ({runs_with_acks} of {kills})"
    );
    assert!(!seqs.is_empty());
    assert!(most_files > 0, "no payload file was ever written");
    assert!(!removed.is_empty(), "no large record was ever removed");
}
