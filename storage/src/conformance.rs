//! The behavioural suite every [`CustodyStore`] must pass, as functions of
//! `&dyn CustodyStore`, with the helpers they build records with (feature
//! `conformance`, off by default).
//!
//! `storage/tests/behaviour.rs` runs it against [`MemStore`](crate::MemStore) and
//! [`LmdbStore`](crate::LmdbStore), the simulator's tests against its own store.
//! Each test takes a fresh, empty store. Most need only room for a few kilobytes and
//! tens of records ([`small`] is what the built-in stores are opened with); they are
//! listed in [`GENERAL`], which a store without count or byte quotas (or with quotas
//! of its own kind) runs. The others check the built-in quotas and need the store
//! opened with a given [`StoreConfig`]: [`QUOTA`] lists them with it.
//!
//! A test fails by panicking (this is test code: `unwrap` and `assert!` throughout).

use ferry_core::{BundleId, Destination, NodeHash, Priority};

use crate::{
    BundleMeta, CustodyState, CustodyStore, InsertOutcome, NewRecord, QuotaKind, RecordInfo,
    RoutingEdit, RoutingMeta, StoreConfig, StoreError, WriteOp, WriteOutcome, MAX_HOLDERS,
    MAX_ROUTING_STATE,
};

/// One test of the suite.
pub type Test = fn(&dyn CustodyStore);

/// The tests that hold for any store with room for a few kilobytes and tens of
/// records, by name.
pub const GENERAL: &[(&str, Test)] = &[
    ("insert_get_remove", insert_get_remove),
    (
        "duplicates_are_recognised_and_not_counted",
        duplicates_are_recognised_and_not_counted,
    ),
    (
        "iterates_by_priority_then_age_with_pagination",
        iterates_by_priority_then_age_with_pagination,
    ),
    (
        "iterates_by_destination_with_pagination",
        iterates_by_destination_with_pagination,
    ),
    ("purges_expired_records", purges_expired_records),
    ("updates_routing_metadata", updates_routing_metadata),
    (
        "invalid_record_fails_the_whole_batch",
        invalid_record_fails_the_whole_batch,
    ),
    ("seen_set_is_purged_by_time", seen_set_is_purged_by_time),
    ("reserves_sequence_numbers", reserves_sequence_numbers),
    (
        "keeps_the_routing_state_in_the_batch",
        keeps_the_routing_state_in_the_batch,
    ),
    ("stats_and_errors", stats_and_errors),
    (
        "apply_batch_applies_ops_in_order_in_one_go",
        apply_batch_applies_ops_in_order_in_one_go,
    ),
    (
        "routing_edits_keep_holders_bounded",
        routing_edits_keep_holders_bounded,
    ),
];

/// The tests of the built-in quotas, by name, with the configuration each needs.
pub const QUOTA: &[(&str, Test, StoreConfig)] = &[
    ("byte_quota", byte_quota, BYTE_QUOTA),
    ("count_quota", count_quota, COUNT_QUOTA),
    (
        "apply_batch_is_all_or_nothing",
        apply_batch_is_all_or_nothing,
        BATCH_QUOTA,
    ),
    ("stats_and_limits", stats_and_limits, SMALL),
];

const SMALL: StoreConfig = StoreConfig {
    max_bytes: 1 << 20,
    max_count: 10_000,
    map_size: None,
};

/// The configuration of [`byte_quota`].
pub const BYTE_QUOTA: StoreConfig = StoreConfig {
    max_bytes: 10_000,
    max_count: 1_000,
    map_size: None,
};

/// The configuration of [`count_quota`].
pub const COUNT_QUOTA: StoreConfig = StoreConfig {
    max_bytes: 1 << 20,
    max_count: 5,
    map_size: None,
};

/// The configuration of [`apply_batch_is_all_or_nothing`].
pub const BATCH_QUOTA: StoreConfig = StoreConfig {
    max_bytes: 1000,
    max_count: 3,
    map_size: None,
};

/// The configuration the built-in stores run the general tests (and
/// [`stats_and_limits`]) with: 1 MiB, 10,000 records.
pub fn small() -> StoreConfig {
    SMALL
}

const NEW: InsertOutcome = InsertOutcome::Inserted;
const DUP_STORED: InsertOutcome = InsertOutcome::Duplicate { still_stored: true };
const DUP_SEEN: InsertOutcome = InsertOutcome::Duplicate {
    still_stored: false,
};

// Helpers.

/// A distinct, well-spread id for `n` (and `salt`, to keep runs apart).
pub fn id_of(salt: u64, n: u64) -> BundleId {
    let mut b = [0u8; 32];
    let mut x = splitmix(salt ^ n.rotate_left(17) ^ 0x5151_5151);
    for chunk in b.chunks_mut(8) {
        x = splitmix(x);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    b[24..].copy_from_slice(&n.to_be_bytes());
    BundleId(b)
}

/// The id of record `n` ([`id_of`] with salt 0).
pub fn id(n: u64) -> BundleId {
    id_of(0, n)
}

/// One step of SplitMix64.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bundle bytes that are a function of the id, so any mix-up is detected.
pub fn payload(id: &BundleId, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = u64::from_le_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
    while out.len() < len {
        x = splitmix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A node hash of eight `n` bytes.
pub fn node(n: u8) -> NodeHash {
    NodeHash([n; 8])
}

/// Metadata of a test record: source node 200, received at 7, holder node 201, 8 copies, custody held.
pub fn meta(priority: Priority, destination: Destination, expires_at: Option<u64>) -> BundleMeta {
    BundleMeta {
        priority,
        destination,
        source: node(200),
        expires_at,
        received_at: 7,
        routing: RoutingMeta {
            holders: vec![node(201)],
            copies_left: 8,
            custody: CustodyState::Held,
        },
    }
}

/// Record `n`: `len` bytes, normal priority, group destination, no expiry.
pub fn rec(n: u64, len: usize) -> NewRecord {
    rec_with(n, len, Priority::Normal, Destination::Group, None)
}

/// Record `n` with this priority, destination and expiry.
pub fn rec_with(
    n: u64,
    len: usize,
    priority: Priority,
    destination: Destination,
    expires_at: Option<u64>,
) -> NewRecord {
    let id = id(n);
    NewRecord {
        id,
        bytes: payload(&id, len),
        meta: meta(priority, destination, expires_at),
    }
}

// The tests.

/// Insert, read back, remove: records, stats and the seen-set. Needs a store without quotas below 300 bytes.
pub fn insert_get_remove(s: &dyn CustodyStore) {
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

/// Duplicates (stored, seen, repeated within a batch) are recognised and not counted.
pub fn duplicates_are_recognised_and_not_counted(s: &dyn CustodyStore) {
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

/// The byte quota refuses whole batches. Needs `max_bytes: 10_000, max_count: 1_000` (see [`BYTE_QUOTA`]).
pub fn byte_quota(s: &dyn CustodyStore) {
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

/// The count quota refuses whole batches. Needs `max_bytes: 1 MiB, max_count: 5` (see [`COUNT_QUOTA`]).
pub fn count_quota(s: &dyn CustodyStore) {
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

/// Every record of [`CustodyStore::by_priority`], following the pages of `limit`.
pub fn priority_order(s: &dyn CustodyStore, limit: usize) -> Vec<RecordInfo> {
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

/// Priority listing: highest priority first, then oldest, with pagination.
pub fn iterates_by_priority_then_age_with_pagination(s: &dyn CustodyStore) {
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

/// Destination listing: oldest first, with pagination; foreign cursors refused.
pub fn iterates_by_destination_with_pagination(s: &dyn CustodyStore) {
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

/// Expiry: `purge_expired` order and limit, `next_expiry`, purged ids stay seen.
pub fn purges_expired_records(s: &dyn CustodyStore) {
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

/// Routing updates: written back, validated, refused for unknown ids.
pub fn updates_routing_metadata(s: &dyn CustodyStore) {
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
    // Reading into a value that held another record gives what `get_info` gives;
    // an unknown id leaves the value as it was.
    let other = rec(3, 40);
    s.insert(&other).unwrap();
    let mut into = s.get_info(&other.id).unwrap().unwrap();
    into.meta.routing.holders = (0..5).map(node).collect();
    assert!(s.get_info_into(&r.id, &mut into).unwrap());
    assert_eq!(Some(&into), s.get_info(&r.id).unwrap().as_ref());
    assert!(!s.get_info_into(&id(2), &mut into).unwrap());
    assert_eq!(Some(&into), s.get_info(&r.id).unwrap().as_ref());
    s.remove(&other.id).unwrap();
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

/// An invalid record fails its whole batch.
pub fn invalid_record_fails_the_whole_batch(s: &dyn CustodyStore) {
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

/// The seen-set: times, `mark_seen`, `purge_seen_before` order and limit.
pub fn seen_set_is_purged_by_time(s: &dyn CustodyStore) {
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

/// Sequence numbers: ranges never returned twice, from 1.
pub fn reserves_sequence_numbers(s: &dyn CustodyStore) {
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

/// The routing policy's state is replaced by the last `SetRoutingState` of a
/// batch, read back as written, and a state over [`MAX_ROUTING_STATE`] fails the
/// whole batch.
pub fn keeps_the_routing_state_in_the_batch(s: &dyn CustodyStore) {
    assert_eq!(s.routing_state().unwrap(), None);
    let out = s
        .apply_batch(&[
            WriteOp::SetRoutingState(vec![1, 2, 3]),
            WriteOp::Insert(rec(1, 100)),
            WriteOp::SetRoutingState(vec![4; 1000]),
        ])
        .unwrap();
    assert_eq!(out[0], WriteOutcome::RoutingStateSet);
    assert_eq!(out[2], WriteOutcome::RoutingStateSet);
    assert_eq!(s.routing_state().unwrap(), Some(vec![4; 1000]));
    let full = vec![5; MAX_ROUTING_STATE];
    s.apply_batch(&[WriteOp::SetRoutingState(full.clone())])
        .unwrap();
    assert_eq!(s.routing_state().unwrap(), Some(full));
    assert!(matches!(
        s.apply_batch(&[
            WriteOp::Insert(rec(2, 100)),
            WriteOp::SetRoutingState(vec![6; MAX_ROUTING_STATE + 1]),
        ]),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(!s.contains(&id(2)).unwrap());
    assert_eq!(s.routing_state().unwrap().map(|v| v[0]), Some(5));
    s.apply_batch(&[WriteOp::SetRoutingState(Vec::new())])
        .unwrap();
    assert_eq!(s.routing_state().unwrap(), Some(Vec::new()));
}

/// Stats report the quotas of [`small`], then [`stats_and_errors`].
pub fn stats_and_limits(s: &dyn CustodyStore) {
    let st = s.stats().unwrap();
    assert_eq!((st.max_bytes, st.max_count), (1 << 20, 10_000));
    stats_and_errors(s);
}

/// Stats of an empty and a filled store, quarantine listing, refused zero limits, an
/// empty bundle. Needs no particular quota (room for 20 records of under 20 bytes).
pub fn stats_and_errors(s: &dyn CustodyStore) {
    let st = s.stats().unwrap();
    assert_eq!((st.count, st.bytes, st.quarantined), (0, 0, 0));
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

/// `apply_batch` applies its ops in order, with the outcome of each.
pub fn apply_batch_applies_ops_in_order_in_one_go(s: &dyn CustodyStore) {
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

/// `apply_batch` is all or nothing, quotas checked op by op. Needs `max_bytes: 1000, max_count: 3` (see [`BATCH_QUOTA`]).
pub fn apply_batch_is_all_or_nothing(s: &dyn CustodyStore) {
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

/// Routing edits keep the holder list within `MAX_HOLDERS`.
pub fn routing_edits_keep_holders_bounded(s: &dyn CustodyStore) {
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
