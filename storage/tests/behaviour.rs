//! The behavioural suite, run against both `MemStore` and `LmdbStore`: each test is
//! a function of `&dyn CustodyStore`, and `both!` makes a `mem` and an `lmdb` test
//! of it.

mod common;

use common::{id, node, payload, rec, rec_with};
use ferry_core::{Destination, Priority};
use ferry_storage::{
    CustodyState, CustodyStore, InsertOutcome, QuotaKind, RecordInfo, RoutingEdit, RoutingMeta,
    StoreConfig, StoreError, WriteOp, WriteOutcome, MAX_HOLDERS,
};

const NEW: InsertOutcome = InsertOutcome::Inserted;
const DUP_STORED: InsertOutcome = InsertOutcome::Duplicate { still_stored: true };
const DUP_SEEN: InsertOutcome = InsertOutcome::Duplicate {
    still_stored: false,
};

fn small() -> StoreConfig {
    StoreConfig {
        max_bytes: 1 << 20,
        max_count: 10_000,
        map_size: None,
    }
}

macro_rules! both {
    ($name:ident) => {
        both!($name, small());
    };
    ($name:ident, $cfg:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn mem() {
                let store = ferry_storage::MemStore::new($cfg);
                super::$name(&store);
            }
            #[test]
            fn lmdb() {
                let dir = common::tmp();
                let store = ferry_storage::LmdbStore::open(dir.path().join("s"), $cfg).unwrap();
                super::$name(&store);
            }
        }
    };
}

both!(insert_get_remove);
fn insert_get_remove(s: &dyn CustodyStore) {
    let r = rec_with(
        1,
        300,
        Priority::Expedited,
        Destination::Node(node(5)),
        Some(99),
    );
    assert_eq!(s.insert(&r).unwrap(), NEW);
    let got = s.get(&r.id).unwrap().unwrap();
    assert_eq!(got.bytes, r.bytes);
    assert_eq!(got.info.id, r.id);
    assert_eq!(got.info.meta, r.meta);
    assert_eq!(got.info.size, 300);
    assert_eq!(got.info.insertion, 1);
    assert_eq!(s.get_info(&r.id).unwrap().unwrap(), got.info);
    assert!(s.contains(&r.id).unwrap());
    assert!(s.is_seen(&r.id).unwrap());
    assert!(s.get(&id(2)).unwrap().is_none());
    assert!(!s.contains(&id(2)).unwrap());
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes, st.seen), (1, 300, 1));

    assert!(s.remove(&r.id).unwrap());
    assert!(!s.remove(&r.id).unwrap());
    assert!(s.get(&r.id).unwrap().is_none());
    assert!(s.get_info(&r.id).unwrap().is_none());
    assert!(!s.contains(&r.id).unwrap());
    assert!(s.is_seen(&r.id).unwrap());
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes, st.seen), (0, 0, 1));
    assert!(s.by_priority(None, 10).unwrap().items.is_empty());
    assert!(s
        .by_destination(&Destination::Node(node(5)), None, 10)
        .unwrap()
        .items
        .is_empty());
    assert!(s.purge_expired(1000, 10).unwrap().is_empty());
}

both!(duplicates_are_recognised_and_not_counted);
fn duplicates_are_recognised_and_not_counted(s: &dyn CustodyStore) {
    let a = rec(1, 100);
    let b = rec(2, 100);
    assert_eq!(s.insert(&a).unwrap(), NEW);
    assert_eq!(s.insert(&a).unwrap(), DUP_STORED);
    // Within a batch, against the store and against itself.
    let out = s
        .insert_batch(&[b.clone(), a.clone(), b.clone(), rec(3, 50)])
        .unwrap();
    assert_eq!(out, vec![NEW, DUP_STORED, DUP_STORED, NEW]);
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes), (3, 250));
    // Still recognised after removal (the seen-set), without the bytes.
    assert!(s.remove(&a.id).unwrap());
    assert_eq!(s.insert(&a).unwrap(), DUP_SEEN);
    assert_eq!(
        s.insert_batch(std::slice::from_ref(&a)).unwrap(),
        vec![DUP_SEEN]
    );
    assert!(s.get(&a.id).unwrap().is_none());
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes, st.seen), (2, 150, 3));
    // An all-duplicate batch writes nothing, an empty one is fine.
    assert_eq!(
        s.insert_batch(&[a.clone(), b.clone()]).unwrap(),
        vec![DUP_SEEN, DUP_STORED]
    );
    assert!(s.insert_batch(&[]).unwrap().is_empty());
    // A copy with different bytes under the same id is still the same bundle.
    let mut other = b.clone();
    other.bytes = vec![1, 2, 3];
    assert_eq!(s.insert(&other).unwrap(), DUP_STORED);
    assert_eq!(s.get(&b.id).unwrap().unwrap().bytes, b.bytes);
}

both!(
    byte_quota,
    StoreConfig {
        max_bytes: 10_000,
        max_count: 1_000,
        map_size: None
    }
);
fn byte_quota(s: &dyn CustodyStore) {
    let batch: Vec<_> = (0..9).map(|n| rec(n, 1000)).collect();
    assert!(s.insert_batch(&batch).unwrap().iter().all(|o| *o == NEW));
    // Two more would make 11,000: the whole batch is refused.
    let err = s.insert_batch(&[rec(9, 1000), rec(10, 1000)]).unwrap_err();
    match err {
        StoreError::StoreFull {
            kind,
            limit,
            used,
            requested,
        } => {
            assert_eq!(kind, QuotaKind::Bytes);
            assert_eq!((limit, used, requested), (10_000, 9_000, 2_000));
        }
        other => panic!("expected StoreFull, got {other:?}"),
    }
    assert!(!s.contains(&id(9)).unwrap());
    assert!(!s.is_seen(&id(9)).unwrap());
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes, st.max_bytes), (9, 9_000, 10_000));
    for r in &batch {
        assert_eq!(s.get(&r.id).unwrap().unwrap().bytes, r.bytes);
    }
    // Exactly up to the quota is fine; one byte more is not.
    assert_eq!(s.insert(&rec(9, 1000)).unwrap(), NEW);
    assert!(matches!(
        s.insert(&rec(10, 1)),
        Err(StoreError::StoreFull {
            kind: QuotaKind::Bytes,
            ..
        })
    ));
    // A duplicate is not refused: it adds nothing.
    assert_eq!(s.insert(&rec(3, 1000)).unwrap(), DUP_STORED);
    // Removing makes room again.
    assert!(s.remove(&id(0)).unwrap());
    assert_eq!(s.insert(&rec(10, 1000)).unwrap(), NEW);
    assert_eq!(s.stats().unwrap().bytes, 10_000);
}

both!(
    count_quota,
    StoreConfig {
        max_bytes: 1 << 20,
        max_count: 5,
        map_size: None
    }
);
fn count_quota(s: &dyn CustodyStore) {
    for n in 0..5 {
        assert_eq!(s.insert(&rec(n, 10)).unwrap(), NEW);
    }
    let err = s.insert_batch(&[rec(5, 10)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::StoreFull {
                kind: QuotaKind::Count,
                limit: 5,
                used: 5,
                requested: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.stats().unwrap().count, 5);
    for n in 0..5 {
        assert!(s.contains(&id(n)).unwrap());
    }
    assert!(s.remove(&id(2)).unwrap());
    assert_eq!(s.insert(&rec(5, 10)).unwrap(), NEW);
    assert!(s.insert(&rec(6, 10)).is_err());
}

fn priority_order(s: &dyn CustodyStore, limit: usize) -> Vec<RecordInfo> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s.by_priority(after, limit).unwrap();
        assert!(page.items.len() <= limit);
        assert!(page.quarantined.is_empty());
        out.extend(page.items);
        match page.next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}

both!(iterates_by_priority_then_age_with_pagination);
fn iterates_by_priority_then_age_with_pagination(s: &dyn CustodyStore) {
    let prios = [
        Priority::Normal,
        Priority::Bulk,
        Priority::Expedited,
        Priority::Normal,
        Priority::Expedited,
        Priority::Bulk,
        Priority::Normal,
    ];
    // Inserted in two batches and singles, interleaved priorities.
    let recs: Vec<_> = prios
        .iter()
        .enumerate()
        .map(|(n, p)| rec_with(n as u64, 10, *p, Destination::Group, None))
        .collect();
    s.insert_batch(&recs[..3]).unwrap();
    for r in &recs[3..] {
        s.insert(r).unwrap();
    }
    let expected: Vec<u64> = vec![2, 4, 0, 3, 6, 1, 5];
    for limit in [1, 2, 3, 7, 100] {
        let got: Vec<u64> = priority_order(s, limit)
            .iter()
            .map(|i| i.insertion - 1)
            .collect();
        assert_eq!(got, expected, "limit {limit}");
    }
    let page = s.by_priority(None, 3).unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next.unwrap().insertion(), page.items[2].insertion);
    assert_eq!(page.items[0].id, id(2));
    // Removal and an update do not disturb the order.
    s.remove(&id(4)).unwrap();
    s.update_routing(&id(0), &mut |r| r.copies_left = 1)
        .unwrap();
    let got: Vec<u64> = priority_order(s, 2)
        .iter()
        .map(|i| i.insertion - 1)
        .collect();
    assert_eq!(got, vec![2, 0, 3, 6, 1, 5]);
    assert!(matches!(
        s.by_priority(None, 0),
        Err(StoreError::InvalidArgument(_))
    ));
}

both!(iterates_by_destination_with_pagination);
fn iterates_by_destination_with_pagination(s: &dyn CustodyStore) {
    let a = Destination::Node(node(1));
    let b = Destination::Node(node(2));
    let dests = [a, b, Destination::Group, a, a, b, a, Destination::Group, a];
    let recs: Vec<_> = dests
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let p = if n % 2 == 0 {
                Priority::Bulk
            } else {
                Priority::Expedited
            };
            rec_with(n as u64, 10, p, *d, None)
        })
        .collect();
    s.insert_batch(&recs).unwrap();
    let collect = |d: &Destination, limit: usize| {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = s.by_destination(d, after, limit).unwrap();
            assert!(page.items.len() <= limit);
            for i in &page.items {
                assert_eq!(i.meta.destination, *d);
            }
            out.extend(page.items.iter().map(|i| i.id));
            match page.next {
                Some(c) => after = Some(c),
                None => return out,
            }
        }
    };
    let ids = |ns: &[u64]| ns.iter().map(|n| id(*n)).collect::<Vec<_>>();
    for limit in [1, 2, 5, 100] {
        assert_eq!(collect(&a, limit), ids(&[0, 3, 4, 6, 8]));
        assert_eq!(collect(&b, limit), ids(&[1, 5]));
        assert_eq!(collect(&Destination::Group, limit), ids(&[2, 7]));
        assert!(collect(&Destination::Node(node(3)), limit).is_empty());
    }
    let page = s.by_destination(&a, None, 2).unwrap();
    assert!(matches!(
        s.by_destination(&b, page.next, 2),
        Err(StoreError::InvalidArgument(_))
    ));
    s.remove(&id(3)).unwrap();
    assert_eq!(collect(&a, 2), ids(&[0, 4, 6, 8]));
}

both!(purges_expired_records);
fn purges_expired_records(s: &dyn CustodyStore) {
    let exp = [Some(30), Some(10), None, Some(20), Some(10), Some(40)];
    let recs: Vec<_> = exp
        .iter()
        .enumerate()
        .map(|(n, e)| rec_with(n as u64, 100, Priority::Normal, Destination::Group, *e))
        .collect();
    assert_eq!(s.next_expiry().unwrap(), None);
    s.insert_batch(&recs).unwrap();
    assert_eq!(s.next_expiry().unwrap(), Some(10));
    assert!(s.purge_expired(9, 100).unwrap().is_empty());
    // `expires_at <= now` is expired; earliest expiry first, then insertion order.
    assert_eq!(s.purge_expired(20, 100).unwrap(), vec![id(1), id(4), id(3)]);
    assert_eq!(s.next_expiry().unwrap(), Some(30));
    assert_eq!(s.stats().unwrap().count, 3);
    assert!(!s.contains(&id(1)).unwrap());
    assert!(s.contains(&id(0)).unwrap());
    // Bounded by `limit`.
    assert_eq!(s.purge_expired(u64::MAX, 1).unwrap(), vec![id(0)]);
    assert_eq!(s.next_expiry().unwrap(), Some(40));
    assert_eq!(s.purge_expired(u64::MAX, 10).unwrap(), vec![id(5)]);
    assert!(s.purge_expired(u64::MAX, 10).unwrap().is_empty());
    // Only the record without expiry is left.
    assert_eq!(s.next_expiry().unwrap(), None);
    // The record without expiry stays; purged ids are still seen.
    assert!(s.contains(&id(2)).unwrap());
    assert_eq!(s.insert(&recs[1]).unwrap(), DUP_SEEN);
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes), (1, 100));
    assert_eq!(priority_order(s, 10).len(), 1);
}

both!(updates_routing_metadata);
fn updates_routing_metadata(s: &dyn CustodyStore) {
    let r = rec(1, 500);
    s.insert(&r).unwrap();
    let new = s
        .update_routing(&r.id, &mut |m| {
            m.holders.push(node(9));
            m.copies_left -= 3;
            m.custody = CustodyState::InTransit {
                to: node(9),
                since: 1234,
            };
        })
        .unwrap();
    assert_eq!(new.holders, vec![node(201), node(9)]);
    assert_eq!(new.copies_left, 5);
    let got = s.get(&r.id).unwrap().unwrap();
    assert_eq!(got.info.meta.routing, new);
    assert_eq!(got.bytes, r.bytes);
    assert_eq!(got.info.meta.priority, r.meta.priority);
    assert_eq!(priority_order(s, 10)[0].meta.routing, new);
    // Too many holders is refused and changes nothing.
    let err = s
        .update_routing(&r.id, &mut |m| {
            m.holders = (0..=MAX_HOLDERS).map(|n| node(n as u8)).collect();
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRecord { .. }), "{err:?}");
    assert_eq!(s.get_info(&r.id).unwrap().unwrap().meta.routing, new);
    // Unknown and removed ids.
    assert!(matches!(
        s.update_routing(&id(2), &mut |_| {}),
        Err(StoreError::NotFound { .. })
    ));
    s.remove(&r.id).unwrap();
    assert!(matches!(
        s.update_routing(&r.id, &mut |_| {}),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.stats().unwrap().bytes, 0);
}

both!(invalid_record_fails_the_whole_batch);
fn invalid_record_fails_the_whole_batch(s: &dyn CustodyStore) {
    let mut bad = rec(2, 10);
    bad.meta.routing.holders = (0..=MAX_HOLDERS).map(|n| node(n as u8)).collect();
    let err = s.insert_batch(&[rec(1, 10), bad]).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRecord { .. }), "{err:?}");
    assert_eq!(s.stats().unwrap().count, 0);
    assert!(!s.is_seen(&id(1)).unwrap());
    let mut ok = rec(3, 10);
    ok.meta.routing.holders = (0..MAX_HOLDERS).map(|n| node(n as u8)).collect();
    assert_eq!(s.insert(&ok).unwrap(), NEW);
    assert_eq!(
        s.get_info(&ok.id)
            .unwrap()
            .unwrap()
            .meta
            .routing
            .holders
            .len(),
        MAX_HOLDERS
    );
}

both!(seen_set_is_purged_by_time);
fn seen_set_is_purged_by_time(s: &dyn CustodyStore) {
    let early = rec_with(1, 10, Priority::Normal, Destination::Group, Some(10));
    let late = rec_with(2, 10, Priority::Normal, Destination::Group, Some(50));
    let kept = rec_with(3, 10, Priority::Normal, Destination::Group, Some(5));
    s.insert_batch(&[early.clone(), late.clone(), kept.clone()])
        .unwrap();
    s.remove(&early.id).unwrap();
    s.remove(&late.id).unwrap();
    s.mark_seen(&id(4), 30).unwrap();
    s.mark_seen(&id(5), 20).unwrap();
    s.mark_seen(&id(5), 60).unwrap(); // the later time wins
    s.mark_seen(&id(5), 15).unwrap();
    assert!(s.is_seen(&id(4)).unwrap());
    assert_eq!(s.insert(&rec(4, 10)).unwrap(), DUP_SEEN);
    assert_eq!(s.stats().unwrap().seen, 5);

    // Forgets 1 (t=10) and 4 (t=30); not 2 (t=50), 5 (t=60) or the stored 3.
    assert_eq!(s.purge_seen_before(31, 1).unwrap(), 1);
    assert_eq!(s.purge_seen_before(31, 100).unwrap(), 1);
    assert_eq!(s.purge_seen_before(31, 100).unwrap(), 0);
    assert!(!s.is_seen(&early.id).unwrap());
    assert!(!s.is_seen(&id(4)).unwrap());
    assert!(s.is_seen(&late.id).unwrap());
    assert!(s.is_seen(&id(5)).unwrap());
    assert!(s.is_seen(&kept.id).unwrap());
    assert_eq!(s.stats().unwrap().seen, 3);
    // A forgotten id can be stored again.
    assert_eq!(s.insert(&early).unwrap(), NEW);
    // A stored record's seen entry is never purged, whatever its time.
    assert_eq!(s.purge_seen_before(u64::MAX, 100).unwrap(), 2);
    assert_eq!(s.insert(&kept).unwrap(), DUP_STORED);
    assert_eq!(s.insert(&early).unwrap(), DUP_STORED);
    // mark_seen on a stored record sets the time its tombstone will carry.
    s.mark_seen(&kept.id, 1000).unwrap();
    s.remove(&kept.id).unwrap();
    assert_eq!(s.purge_seen_before(1000, 100).unwrap(), 0);
    assert_eq!(s.purge_seen_before(1001, 100).unwrap(), 1);
}

both!(reserves_sequence_numbers);
fn reserves_sequence_numbers(s: &dyn CustodyStore) {
    assert_eq!(s.reserve_sequence(1).unwrap(), 1..2);
    assert_eq!(s.reserve_sequence(10).unwrap(), 2..12);
    assert_eq!(s.reserve_sequence(1).unwrap(), 12..13);
    assert!(matches!(
        s.reserve_sequence(0),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.reserve_sequence(u64::MAX),
        Err(StoreError::SequenceExhausted)
    ));
    assert_eq!(s.reserve_sequence(2).unwrap(), 13..15);
}

both!(stats_and_limits);
fn stats_and_limits(s: &dyn CustodyStore) {
    let st = s.stats().unwrap();
    assert_eq!(
        (
            st.count,
            st.bytes,
            st.max_bytes,
            st.max_count,
            st.quarantined
        ),
        (0, 0, 1 << 20, 10_000, 0)
    );
    for n in 0..20 {
        s.insert(&rec(n, n as usize)).unwrap();
    }
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes), (20, (0..20).sum::<u64>()));
    assert!(s.quarantined(None, 10).unwrap().is_empty());
    assert!(!s.discard_quarantined(1).unwrap());
    assert!(matches!(
        s.purge_expired(0, 0),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        s.purge_seen_before(0, 0),
        Err(StoreError::InvalidArgument(_))
    ));
    // An empty bundle is stored and read back as empty.
    assert_eq!(s.get(&id(0)).unwrap().unwrap().bytes, payload(&id(0), 0));
}

both!(apply_batch_applies_ops_in_order_in_one_go);
fn apply_batch_applies_ops_in_order_in_one_go(s: &dyn CustodyStore) {
    assert!(s.apply_batch(&[]).unwrap().is_empty());
    s.insert_batch(&[rec(1, 100), rec(2, 100), rec(3, 100)])
        .unwrap();
    let before = s.stats().unwrap();
    let out = s
        .apply_batch(&[
            WriteOp::Update(id(1), RoutingEdit::AddHolder(node(7))),
            WriteOp::Update(id(1), RoutingEdit::AddHolder(node(7))),
            WriteOp::Update(id(1), RoutingEdit::SpendCopies(3)),
            WriteOp::Update(id(2), RoutingEdit::SetCustody(CustodyState::Delivered)),
            WriteOp::Remove(id(3)),
            WriteOp::Remove(id(3)),
            WriteOp::Update(id(3), RoutingEdit::SpendCopies(1)),
            WriteOp::Remove(id(9)),
            WriteOp::Update(id(9), RoutingEdit::AddHolder(node(7))),
            WriteOp::MarkSeen(id(10), 50),
            WriteOp::Insert(rec(10, 100)),
            WriteOp::Insert(rec(11, 100)),
            WriteOp::Insert(rec(11, 100)),
            WriteOp::Insert(rec(3, 100)),
            WriteOp::Remove(id(11)),
        ])
        .unwrap();
    let r1 = s.get_info(&id(1)).unwrap().unwrap().meta.routing;
    assert_eq!(r1.holders, vec![node(201), node(7)]);
    assert_eq!(r1.copies_left, 5);
    assert_eq!(
        out,
        vec![
            WriteOutcome::Updated(Some(RoutingMeta {
                holders: vec![node(201), node(7)],
                copies_left: 8,
                custody: CustodyState::Held,
            })),
            WriteOutcome::Updated(Some(RoutingMeta {
                holders: vec![node(201), node(7)],
                copies_left: 8,
                custody: CustodyState::Held,
            })),
            WriteOutcome::Updated(Some(r1)),
            WriteOutcome::Updated(Some(RoutingMeta {
                holders: vec![node(201)],
                copies_left: 8,
                custody: CustodyState::Delivered,
            })),
            WriteOutcome::Removed(true),
            WriteOutcome::Removed(false),
            WriteOutcome::Updated(None),
            WriteOutcome::Removed(false),
            WriteOutcome::Updated(None),
            WriteOutcome::MarkedSeen,
            WriteOutcome::Inserted(DUP_SEEN),
            WriteOutcome::Inserted(NEW),
            WriteOutcome::Inserted(DUP_STORED),
            WriteOutcome::Inserted(DUP_SEEN),
            WriteOutcome::Removed(true),
        ]
    );
    assert_eq!(
        s.get_info(&id(2)).unwrap().unwrap().meta.routing.custody,
        CustodyState::Delivered
    );
    assert!(!s.contains(&id(3)).unwrap() && s.is_seen(&id(3)).unwrap());
    assert!(!s.contains(&id(10)).unwrap() && s.is_seen(&id(10)).unwrap());
    assert!(!s.contains(&id(11)).unwrap() && s.is_seen(&id(11)).unwrap());
    let after = s.stats().unwrap();
    assert_eq!(after.count, before.count - 1);
    assert_eq!(after.bytes, before.bytes - 100);
    // The bundle bytes were not touched by the updates.
    assert_eq!(s.get(&id(1)).unwrap().unwrap().bytes, payload(&id(1), 100));
}

both!(
    apply_batch_is_all_or_nothing,
    StoreConfig {
        max_bytes: 1000,
        max_count: 3,
        map_size: None,
    }
);
fn apply_batch_is_all_or_nothing(s: &dyn CustodyStore) {
    s.insert_batch(&[rec(1, 100), rec(2, 100)]).unwrap();
    let snapshot = |s: &dyn CustodyStore| {
        (
            s.stats().unwrap(),
            s.get_info(&id(1)).unwrap(),
            s.get_info(&id(2)).unwrap(),
            s.is_seen(&id(8)).unwrap(),
            s.is_seen(&id(4)).unwrap(),
        )
    };
    let before = snapshot(s);
    // The third insert would pass the count quota: nothing of the batch happens,
    // not the updates, removes and marks before it.
    let full = s.apply_batch(&[
        WriteOp::Update(id(1), RoutingEdit::AddHolder(node(9))),
        WriteOp::Remove(id(2)),
        WriteOp::MarkSeen(id(8), 5),
        WriteOp::Insert(rec(3, 100)),
        WriteOp::Insert(rec(4, 100)),
        WriteOp::Insert(rec(5, 100)),
    ]);
    assert!(
        matches!(
            full,
            Err(StoreError::StoreFull {
                kind: QuotaKind::Count,
                ..
            })
        ),
        "{full:?}"
    );
    assert_eq!(snapshot(s), before);
    // An invalid record fails it too.
    let mut bad = rec(6, 10);
    bad.meta.routing.holders = (0..=MAX_HOLDERS as u8).map(node).collect();
    assert!(matches!(
        s.apply_batch(&[WriteOp::Remove(id(1)), WriteOp::Insert(bad)]),
        Err(StoreError::InvalidRecord { .. })
    ));
    assert_eq!(snapshot(s), before);
    // A remove earlier in the batch makes room for a later insert, and the byte
    // quota is checked as well as the count.
    let out = s
        .apply_batch(&[
            WriteOp::Remove(id(2)),
            WriteOp::Insert(rec(3, 100)),
            WriteOp::Insert(rec(4, 100)),
        ])
        .unwrap();
    assert_eq!(out[2], WriteOutcome::Inserted(NEW));
    assert_eq!(s.stats().unwrap().count, 3);
    assert!(matches!(
        s.apply_batch(&[WriteOp::Remove(id(1)), WriteOp::Insert(rec(5, 901))]),
        Err(StoreError::StoreFull {
            kind: QuotaKind::Bytes,
            ..
        })
    ));
    assert!(s.contains(&id(1)).unwrap());
}

both!(routing_edits_keep_holders_bounded);
fn routing_edits_keep_holders_bounded(s: &dyn CustodyStore) {
    s.insert(&rec(1, 10)).unwrap();
    let ops: Vec<WriteOp> = (0..100u8)
        .map(|n| WriteOp::Update(id(1), RoutingEdit::AddHolder(node(n))))
        .collect();
    s.apply_batch(&ops).unwrap();
    let r = s.get_info(&id(1)).unwrap().unwrap().meta.routing;
    assert_eq!(r.holders.len(), MAX_HOLDERS);
    assert_eq!(r.holders.last(), Some(&node(99)));
    s.apply_batch(&[WriteOp::Update(id(1), RoutingEdit::SpendCopies(100))])
        .unwrap();
    assert_eq!(
        s.get_info(&id(1))
            .unwrap()
            .unwrap()
            .meta
            .routing
            .copies_left,
        0
    );
}
