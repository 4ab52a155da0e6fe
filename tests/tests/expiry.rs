//! An expired bundle is refused by `open` (a behaviour check: the test waits, bounded,
//! until the wall clock is past the bundle's expiry, then opens it).
#![allow(clippy::disallowed_methods)] // the test reads the wall clock to wait for expiry

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::time::DTN_EPOCH_UNIX_SECS;
use ferry_tests::{field_u64, inspect_ok, wait_until, Node};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[test]
fn expired_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);

    let short = a.seal(&["--to", &b.id, "--lifetime", "1s"], b"soon gone");
    let long = a.seal(&["--to", &b.id, "--lifetime", "1h"], b"still here");
    let v = inspect_ok(&short);
    assert_eq!(field_u64(&v, "lifetime_secs"), 1);
    let expires_unix = field_u64(&v, "created_dtn") + DTN_EPOCH_UNIX_SECS + 1;
    // Creation times are whole seconds, so the bundle expires at most 1 s after it was
    // sealed; wait (at most ~2.1 s plus slack) until the clock is safely past that.
    assert!(
        wait_until(Duration::from_secs(5), || unix_now()
            >= expires_unix as f64 + 0.1),
        "the clock did not pass the bundle's expiry within 5 s"
    );
    b.open(&short).failure_with("expired");
    // The long-lived one, sealed at the same time, still opens.
    assert_eq!(b.open(&long).success().stdout, b"still here");
    // inspect shows expired bundles (no key, no expiry check) with a valid signature.
    inspect_ok(&short);

    // A group bundle expires the same way.
    let group = a.seal(&["--group", "--lifetime", "1s"], b"gone");
    let v = inspect_ok(&group);
    let expires_unix = field_u64(&v, "created_dtn") + DTN_EPOCH_UNIX_SECS + 1;
    assert!(wait_until(Duration::from_secs(5), || unix_now()
        >= expires_unix as f64 + 0.1));
    b.open(&group).failure_with("expired");
}

#[test]
fn bad_lifetimes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &[]);
    for bad in ["0s", "0", "2y", "", "h", "5x", "99999999999999999999s"] {
        a.cmd(&["bundle", "seal", "--group", "--lifetime", bad])
            .stdin(b"x".to_vec())
            .run()
            .failure_with("lifetime");
    }
}
