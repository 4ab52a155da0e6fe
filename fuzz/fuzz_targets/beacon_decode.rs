//! LAN discovery beacons (`ferry_cl_quic::discovery`) on arbitrary bytes: the strict
//! parse never panics; whatever parses re-encodes to the input once verified; realm
//! checks and signature checks never panic on parsed input.
#![no_main]

use ferry_cl_quic::discovery::{Beacon, UnverifiedBeacon, MAX_BEACON_BYTES, MIN_BEACON_BYTES};
use ferry_core::Realm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = UnverifiedBeacon::parse(data);
    // The full decoder agrees with parse + verify.
    let decoded = Beacon::decode(data);
    let Ok(u) = parsed else {
        assert!(decoded.is_err());
        return;
    };
    assert!(data.len() >= MIN_BEACON_BYTES && data.len() <= MAX_BEACON_BYTES);
    assert_ne!(u.port(), 0);
    let realm = Realm::new("fuzz", [7; 32]).expect("valid realm");
    let _ = u.admitted_by(std::slice::from_ref(&realm));
    match u.verify() {
        Ok(b) => {
            assert_eq!(b.encode(), data, "a verified beacon is canonical");
            assert_eq!(decoded.as_ref().ok(), Some(&b));
        }
        Err(_) => assert!(decoded.is_err()),
    }
});
