//! The behavioural suite ([`ferry_storage::conformance`]), run against both
//! `MemStore` and `LmdbStore`: each test is a function of `&dyn CustodyStore`, and
//! `both!` makes a `mem` and an `lmdb` test of it.

mod common;

use ferry_storage::conformance::{self as suite, small, BATCH_QUOTA, BYTE_QUOTA, COUNT_QUOTA};

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
                suite::$name(&store);
            }
            #[test]
            fn lmdb() {
                let dir = common::tmp();
                let store = ferry_storage::LmdbStore::open(dir.path().join("s"), $cfg).unwrap();
                suite::$name(&store);
            }
        }
    };
}

both!(insert_get_remove);
both!(duplicates_are_recognised_and_not_counted);
both!(byte_quota, BYTE_QUOTA);
both!(count_quota, COUNT_QUOTA);
both!(iterates_by_priority_then_age_with_pagination);
both!(iterates_by_destination_with_pagination);
both!(purges_expired_records);
both!(updates_routing_metadata);
both!(invalid_record_fails_the_whole_batch);
both!(seen_set_is_purged_by_time);
both!(reserves_sequence_numbers);
both!(keeps_the_routing_state_in_the_batch);
both!(stats_and_limits);
both!(stats_and_errors);
both!(apply_batch_applies_ops_in_order_in_one_go);
both!(apply_batch_is_all_or_nothing, BATCH_QUOTA);
both!(routing_edits_keep_holders_bounded);

/// Every test of the suite is instantiated above.
#[test]
fn the_whole_suite_runs() {
    let general: Vec<&str> = suite::GENERAL.iter().map(|(n, _)| *n).collect();
    let quota: Vec<&str> = suite::QUOTA.iter().map(|(n, ..)| *n).collect();
    assert_eq!(general.len() + quota.len(), 17);
}
