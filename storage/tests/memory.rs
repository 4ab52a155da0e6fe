//! Memory stays flat as the store grows: the records live in LMDB, not in RAM.
//!
//! Measured as the process's anonymous resident memory (`RssAnon`): LMDB's memory
//! map is file-backed, so pages of the map that reads touch are page cache, not the
//! process's own memory. A mirror of the contents in RAM would show up here.
//! (Linux only; alone in its test binary so no other test's allocations interfere.)

mod common;

use common::{id_of, splitmix};
use ferry_core::{Destination, NodeHash, Priority};
use ferry_storage::{BundleMeta, CustodyStore, LmdbStore, NewRecord, RoutingMeta, StoreConfig};

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn small_record(n: u64) -> NewRecord {
    let id = id_of(77, n);
    let x = splitmix(n);
    NewRecord {
        id,
        bytes: id.0.repeat(3), // 96 bytes
        meta: BundleMeta {
            priority: Priority::from_u8((x % 3) as u8).unwrap_or_default(),
            destination: Destination::Node(NodeHash([(x >> 8) as u8 % 16; 8])),
            source: NodeHash([1; 8]),
            expires_at: Some(1_000_000 + x % 10_000),
            received_at: 0,
            routing: RoutingMeta::default(),
        },
    }
}

fn fill_and_check(total: u64) {
    const BATCH: u64 = 500;
    let dir = common::tmp();
    let store = LmdbStore::open(
        dir.path().join("s"),
        StoreConfig {
            max_bytes: 1 << 30,
            max_count: total,
            map_size: None,
        },
    )
    .unwrap();
    let mut baseline = None;
    let mut n = 0;
    while n < total {
        let batch: Vec<_> = (n..n + BATCH).map(small_record).collect();
        store.insert_batch(&batch).unwrap();
        n += BATCH;
        if n == total / 4 {
            baseline = Some(rss_anon_kib());
        }
    }
    let after_fill = rss_anon_kib();
    // Read everything: a full paginated scan and random gets.
    let mut seen = 0;
    let mut after = None;
    loop {
        let page = store.by_priority(after, 1000).unwrap();
        seen += page.items.len() as u64;
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, total);
    for k in 0..20_000 {
        let n = splitmix(k) % total;
        assert_eq!(
            store.get(&id_of(77, n)).unwrap().unwrap().bytes,
            id_of(77, n).0.repeat(3)
        );
    }
    let after_read = rss_anon_kib();
    let st = store.stats().unwrap();
    assert_eq!((st.count, st.bytes), (total, total * 96));
    let baseline = baseline.unwrap();
    // 75% of the records arrived after the baseline: ~100 bytes of payload and ~200
    // of metadata and index entries each, tens of MiB were they held in RAM. What
    // does grow early is LMDB's cache of freed dirty pages, which tracks the pages
    // one transaction touches: it levels off once the trees have many more leaves
    // than a batch has records (here after a few tens of thousands).
    let grown = after_fill.max(after_read).saturating_sub(baseline);
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{total} records: RssAnon {baseline} KiB at {}, {after_fill} KiB after the fill, \
             {after_read} KiB after reading everything",
            total / 4
        );
    }
    assert!(
        grown < 12 * 1024,
        "anonymous memory grew by {grown} KiB over {} records (baseline {baseline} KiB, \
         after fill {after_fill} KiB, after reads {after_read} KiB)",
        total - total / 4
    );
}

/// 200,000 records by default; the full-size check (about a minute) is
/// `FERRY_MEMORY_RECORDS=1000000 cargo test -p ferry-storage --test memory`.
#[test]
fn memory_does_not_grow_with_store_size() {
    let records = std::env::var("FERRY_MEMORY_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    fill_and_check(records);
}
