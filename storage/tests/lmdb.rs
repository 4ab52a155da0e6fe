//! LmdbStore: persistence across reopen, the one-open-per-process rule, directory
//! creation, and sharing between threads.

mod common;

use std::sync::Arc;

use common::{id, node, rec, rec_with};
use ferry_core::{Destination, Priority};
use ferry_storage::{
    CustodyState, CustodyStore, InsertOutcome, LmdbStore, StoreConfig, StoreError,
};

fn cfg() -> StoreConfig {
    StoreConfig {
        max_bytes: 1 << 20,
        max_count: 1000,
        map_size: None,
    }
}

#[test]
fn everything_survives_reopen() {
    let dir = common::tmp();
    let path = dir.path().join("store");
    let recs: Vec<_> = (0..50)
        .map(|n| {
            let p = [Priority::Bulk, Priority::Normal, Priority::Expedited][n as usize % 3];
            let d = if n % 2 == 0 {
                Destination::Group
            } else {
                Destination::Node(node(n as u8 % 4))
            };
            rec_with(n, 100 + n as usize, p, d, Some(1000 + n))
        })
        .collect();
    let (before, seq) = {
        let s = LmdbStore::open(&path, cfg()).unwrap();
        s.insert_batch(&recs[..40]).unwrap();
        for r in &recs[40..] {
            s.insert(r).unwrap();
        }
        s.remove(&id(7)).unwrap();
        s.mark_seen(&id(999), 5000).unwrap();
        s.update_routing(&id(3), &mut |m| {
            m.copies_left = 1;
            m.holders.push(node(77));
            m.custody = CustodyState::Delivered;
        })
        .unwrap();
        let seq = s.reserve_sequence(100).unwrap();
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = s.by_priority(after, 7).unwrap();
            all.extend(page.items);
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        (all, seq)
    };
    assert_eq!(seq, 1..101);
    assert_eq!(before.len(), 49);

    let s = LmdbStore::open(&path, cfg()).unwrap();
    let st = s.stats().unwrap();
    assert_eq!(st.count, 49);
    assert_eq!(
        st.bytes,
        recs.iter().map(|r| r.bytes.len() as u64).sum::<u64>() - 107
    );
    assert_eq!(st.seen, 51);
    // Records, bytes and metadata.
    for r in &recs {
        match s.get(&r.id).unwrap() {
            None => assert_eq!(r.id, id(7)),
            Some(got) => {
                assert_eq!(got.bytes, r.bytes);
                if r.id == id(3) {
                    assert_eq!(got.info.meta.routing.copies_left, 1);
                    assert_eq!(got.info.meta.routing.custody, CustodyState::Delivered);
                    assert_eq!(got.info.meta.routing.holders, vec![node(201), node(77)]);
                } else {
                    assert_eq!(got.info.meta, r.meta);
                }
            }
        }
    }
    // Same order, same insertion numbers.
    let page = s.by_priority(None, 100).unwrap();
    assert_eq!(page.items, before);
    // The seen-set, including the removed record and the marked id.
    assert_eq!(
        s.insert(&recs[7]).unwrap(),
        InsertOutcome::Duplicate {
            still_stored: false
        }
    );
    assert!(s.is_seen(&id(999)).unwrap());
    assert_eq!(
        s.insert(&recs[8]).unwrap(),
        InsertOutcome::Duplicate { still_stored: true }
    );
    // The counters continue.
    assert_eq!(s.reserve_sequence(1).unwrap(), 101..102);
    assert_eq!(s.insert(&rec(100, 10)).unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.get_info(&id(100)).unwrap().unwrap().insertion, 51);
    // The expiry index too.
    assert_eq!(s.purge_expired(1001, 10).unwrap(), vec![id(0), id(1)]);
    // The destination index too.
    let to1: Vec<_> = s
        .by_destination(&Destination::Node(node(1)), None, 100)
        .unwrap()
        .items
        .iter()
        .map(|i| i.id)
        .collect();
    let want: Vec<_> = (0..50u64)
        .filter(|n| n % 2 == 1 && n % 4 == 1 && *n != 1)
        .map(id)
        .collect();
    assert_eq!(to1, want);
}

#[test]
fn a_path_opens_once_per_process() {
    let dir = common::tmp();
    let path = dir.path().join("store");
    let s = LmdbStore::open(&path, cfg()).unwrap();
    let err = LmdbStore::open(&path, cfg()).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyOpen { .. }), "{err:?}");
    // The same directory under another spelling.
    let other = dir.path().join(".").join("store").join("..").join("store");
    assert!(matches!(
        LmdbStore::open(&other, cfg()),
        Err(StoreError::AlreadyOpen { .. })
    ));
    // Another store is fine, and so is the first path once closed.
    let t = LmdbStore::open(dir.path().join("other"), cfg()).unwrap();
    drop(s);
    let s = LmdbStore::open(&path, cfg()).unwrap();
    assert_eq!(s.path(), std::fs::canonicalize(&path).unwrap());
    drop(t);
}

#[test]
fn creates_missing_directories_and_refuses_bad_config() {
    let dir = common::tmp();
    let path = dir.path().join("a").join("b").join("c");
    let s = LmdbStore::open(&path, cfg()).unwrap();
    assert!(path.join("data.mdb").exists());
    assert_eq!(s.map_size() as u64, cfg().required_map_size());
    drop(s);
    let bad = StoreConfig {
        map_size: Some(1 << 20),
        ..cfg()
    };
    assert!(matches!(
        LmdbStore::open(dir.path().join("bad"), bad),
        Err(StoreError::InvalidConfig(_))
    ));
    // A file where the directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        LmdbStore::open(&file, cfg()),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn reopening_with_other_quotas_applies_them() {
    let dir = common::tmp();
    let path = dir.path().join("store");
    {
        let s = LmdbStore::open(&path, cfg()).unwrap();
        for n in 0..10 {
            s.insert(&rec(n, 100)).unwrap();
        }
    }
    let tight = StoreConfig {
        max_count: 10,
        ..cfg()
    };
    let s = LmdbStore::open(&path, tight).unwrap();
    assert!(matches!(
        s.insert(&rec(10, 1)),
        Err(StoreError::StoreFull { .. })
    ));
    assert_eq!(s.stats().unwrap().max_count, 10);
}

#[test]
fn shared_between_threads() {
    let dir = common::tmp();
    let s = Arc::new(LmdbStore::open(dir.path().join("s"), cfg()).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..10 {
                    let n = t * 100 + i;
                    assert_eq!(s.insert(&rec(n, 64)).unwrap(), InsertOutcome::Inserted);
                    seqs.push(s.reserve_sequence(3).unwrap());
                    assert!(s.get(&id(n)).unwrap().is_some());
                    let _ = s.by_priority(None, 5).unwrap();
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = Vec::new();
    for h in handles {
        for r in h.join().unwrap() {
            all.extend(r);
        }
    }
    all.sort_unstable();
    assert_eq!(all, (1..=120).collect::<Vec<_>>());
    assert_eq!(s.stats().unwrap().count, 40);
    assert_eq!(
        s.insert(&rec(0, 64)).unwrap(),
        InsertOutcome::Duplicate { still_stored: true }
    );
}
