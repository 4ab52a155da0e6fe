//! `SimStore`: quotas on modelled sizes, refuse and drop-oldest.

use std::sync::Arc;

use ferry_core::{BundleId, Destination, NodeHash, Priority};
use ferry_sim::model::BufferPolicy;
use ferry_sim::store::{SimStore, Sizes};
use ferry_storage::{
    BundleMeta, CustodyStore, InsertOutcome, NewRecord, RoutingMeta, StoreError, WriteOp,
    WriteOutcome,
};

fn rec(i: u8) -> NewRecord {
    NewRecord {
        id: BundleId([i; 32]),
        bytes: vec![i; 100],
        meta: BundleMeta {
            priority: Priority::Normal,
            destination: Destination::Node(NodeHash([1; 8])),
            source: NodeHash([2; 8]),
            expires_at: Some(1000 + u64::from(i)),
            received_at: 0,
            routing: RoutingMeta::default(),
        },
    }
}

fn store(policy: BufferPolicy, quota: u64) -> (Arc<Sizes>, SimStore) {
    let sizes = Arc::new(Sizes::new());
    for i in 1..=9u8 {
        sizes.set(BundleId([i; 32]), 1_000_000);
    }
    (sizes.clone(), SimStore::new(sizes, quota, policy))
}

#[test]
fn refuse_counts_modelled_bytes() {
    let (_, s) = store(BufferPolicy::Refuse, 2_500_000);
    s.insert(&rec(1)).unwrap();
    s.insert(&rec(2)).unwrap();
    assert_eq!(s.occupancy(), 2_000_000);
    let err = s.insert(&rec(3)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::StoreFull {
                used: 2_000_000,
                requested: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!s.contains(&rec(3).id).unwrap());
    // A batch is all or nothing.
    s.remove(&rec(1).id).unwrap();
    assert!(s.insert_batch(&[rec(4), rec(5)]).is_err());
    assert_eq!(s.count(), 1);
    // Unmodelled bundles (receipts) count their real length.
    let mut r = rec(20);
    r.bytes = vec![0; 300];
    s.insert(&r).unwrap();
    assert_eq!(s.occupancy(), 1_000_300);
    assert_eq!(s.stats().unwrap().bytes, 1_000_300);
    // Duplicates are free.
    assert_eq!(
        s.insert(&rec(2)).unwrap(),
        InsertOutcome::Duplicate { still_stored: true }
    );
    assert_eq!(s.dropped_total(), 0);
}

#[test]
fn drop_oldest_makes_room_oldest_first() {
    let (_, s) = store(BufferPolicy::DropOldest, 2_500_000);
    for i in 1..=3u8 {
        s.insert(&rec(i)).unwrap();
    }
    assert_eq!(s.take_dropped(), vec![rec(1).id]);
    assert!(!s.contains(&rec(1).id).unwrap());
    assert!(s.is_seen(&rec(1).id).unwrap(), "a dropped id stays seen");
    // A batch of two drops the two oldest.
    s.insert_batch(&[rec(4), rec(5)]).unwrap();
    assert_eq!(s.take_dropped(), vec![rec(2).id, rec(3).id]);
    assert_eq!(s.occupancy(), 2_000_000);
    assert_eq!(s.dropped_total(), 3);
    // Larger than the whole buffer: refused, nothing dropped.
    let (sizes, s2) = store(BufferPolicy::DropOldest, 2_500_000);
    sizes.set(BundleId([9; 32]), 3_000_000);
    s2.insert(&rec(1)).unwrap();
    assert!(matches!(
        s2.insert(&rec(9)),
        Err(StoreError::StoreFull { .. })
    ));
    assert!(s2.take_dropped().is_empty());
}

#[test]
fn apply_batch_counts_removes_before_inserts() {
    let (_, s) = store(BufferPolicy::Refuse, 2_500_000);
    s.insert(&rec(1)).unwrap();
    s.insert(&rec(2)).unwrap();
    // Removing one first makes room for the insert in the same batch.
    let out = s
        .apply_batch(&[WriteOp::Remove(rec(1).id), WriteOp::Insert(rec(3))])
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Removed(true),
            WriteOutcome::Inserted(InsertOutcome::Inserted)
        ]
    );
    assert_eq!(s.occupancy(), 2_000_000);
    // The other way round it does not fit.
    assert!(s
        .apply_batch(&[WriteOp::Insert(rec(4)), WriteOp::Remove(rec(2).id)])
        .is_err());
    assert!(s.contains(&rec(2).id).unwrap());

    // Drop-oldest spares what the batch itself touches.
    let (_, d) = store(BufferPolicy::DropOldest, 2_500_000);
    d.insert(&rec(1)).unwrap();
    d.insert(&rec(2)).unwrap();
    d.apply_batch(&[
        WriteOp::Update(rec(1).id, ferry_storage::RoutingEdit::SpendCopies(1)),
        WriteOp::MarkSeen(rec(1).id, 5),
        WriteOp::Insert(rec(3)),
    ])
    .unwrap();
    // rec(1) was marked seen by the batch, so it was spared; rec(2) went.
    assert_eq!(d.take_dropped(), vec![rec(2).id]);
    assert_eq!(d.occupancy(), 2_000_000);
}

#[test]
fn expiry_and_ids_follow_the_records() {
    let (_, s) = store(BufferPolicy::Refuse, 0);
    for i in 1..=5u8 {
        s.insert(&rec(i)).unwrap();
    }
    s.remove(&rec(2).id).unwrap();
    let page = s.ids_after(None, 2).unwrap();
    assert_eq!(page.ids, vec![rec(1).id, rec(3).id]);
    let page = s.ids_after(page.next.as_ref(), 10).unwrap();
    assert_eq!(page.ids, vec![rec(4).id, rec(5).id]);
    assert_eq!(page.next, None);
    let gone = s.purge_expired(1003, 100).unwrap();
    assert_eq!(gone, vec![rec(1).id, rec(3).id]);
    assert_eq!(s.occupancy(), 2_000_000);
    assert_eq!(s.peak(), 5_000_000);
}
