//! The storage crate's behavioural suite ([`ferry_storage::conformance`]) against
//! `SimStore` with an unlimited quota.
//!
//! The suite's quota tests ([`suite::QUOTA`]) check `StoreConfig`'s count and byte
//! quotas on real sizes, which `SimStore` does not have (its one quota is on
//! modelled sizes, tested in `tests/store.rs`), so only [`suite::GENERAL`] runs
//! here. With an empty [`Sizes`] table every bundle counts its real length, so the
//! suite's byte counts hold.

use std::sync::Arc;

use ferry_sim::model::BufferPolicy;
use ferry_sim::store::{SimStore, Sizes};
use ferry_storage::conformance as suite;

fn store() -> SimStore {
    SimStore::new(Arc::new(Sizes::new()), 0, BufferPolicy::Refuse)
}

macro_rules! sim {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                suite::$name(&store());
            }
        )*
        /// Every general test of the suite is instantiated above.
        #[test]
        fn the_whole_general_suite_runs() {
            let mine = [$(stringify!($name)),*];
            for (name, _) in suite::GENERAL {
                assert!(mine.contains(name), "{name} is not run against SimStore");
            }
        }
    };
}

sim!(
    insert_get_remove,
    duplicates_are_recognised_and_not_counted,
    iterates_by_priority_then_age_with_pagination,
    iterates_by_destination_with_pagination,
    purges_expired_records,
    updates_routing_metadata,
    invalid_record_fails_the_whole_batch,
    seen_set_is_purged_by_time,
    reserves_sequence_numbers,
    keeps_the_routing_state_in_the_batch,
    stats_and_errors,
    apply_batch_applies_ops_in_order_in_one_go,
    routing_edits_keep_holders_bounded,
);

/// The general tests again, with a quota no test reaches and drop-oldest: the quota
/// path must not change what a store that never fills does.
#[test]
fn general_suite_under_a_quota_it_never_reaches() {
    for (name, test) in suite::GENERAL {
        for policy in [BufferPolicy::Refuse, BufferPolicy::DropOldest] {
            let s = SimStore::new(Arc::new(Sizes::new()), 1 << 30, policy);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&s)));
            assert!(r.is_ok(), "{name} failed under {policy:?}");
        }
    }
}
