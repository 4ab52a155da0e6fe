//! `Bundle::decode` with default limits on arbitrary bytes. Whatever decodes must be
//! canonical (`encode` gives the input back, `decode(encode(b)) == b`), and every
//! accessor and envelope update must work on it. `Bundle::decode_vec` (owned bytes)
//! must agree with it, and hand the bytes back when it refuses them; so must
//! `Bundle::decode_stored` (a stored record's bytes under a given id), which then
//! differs at most in the id.
#![no_main]

use ferry_core::{Bundle, DtnTime, Limits};
use ferry_fuzz::assert_canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let by_ref = Bundle::decode(data, &Limits::default());
    match (Bundle::decode_vec(data.to_vec(), &Limits::default()), &by_ref) {
        (Ok(x), Ok(y)) => assert!(x == *y),
        (Err((e, back)), Err(f)) => assert!(e == *f && back == data),
        _ => panic!("decode and decode_vec disagree"),
    }
    let given = ferry_core::BundleId([7; 32]);
    match (
        Bundle::decode_stored(data.to_vec(), &Limits::default(), given),
        &by_ref,
    ) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x.id(), given);
            assert!(x.encode() == y.encode() && x.header() == y.header());
        }
        (Err((e, back)), Err(f)) => assert!(e == *f && back == data),
        _ => panic!("decode and decode_stored disagree"),
    }
    let Ok(b) = by_ref else {
        return;
    };
    assert_canonical(data, &b);

    // Accessors never panic and agree with each other.
    let signed = b.signed_bytes();
    assert!(signed.starts_with(b.header_bytes()));
    assert!(signed.ends_with(b.ciphertext()));
    assert!(data.starts_with(signed));
    let _ = b.signature();
    let _ = b.expires_at();
    let _ = b.is_expired(None);
    let _ = b.is_expired(Some(DtnTime(u32::MAX)));
    assert_eq!(b.header().created.is_none(), b.envelope().age.is_some());
    let _ = ferry_core::verify(&b);

    // Envelope updates keep the bundle valid and canonical; the id never changes.
    let mut hopped = b.clone();
    if hopped.add_hop().is_ok() {
        hopped.add_age(u64::MAX / 2);
        let enc = hopped.encode();
        let again = Bundle::decode(&enc, &Limits::default()).expect("hopped bundle decodes");
        assert!(again == hopped);
        assert_eq!(again.id(), b.id());
    } else {
        assert_eq!(b.envelope().hop_count, b.header().hop_limit);
    }
    // Tighter limits refuse it exactly when it is too large.
    let tight = Limits {
        max_bundle_bytes: data.len() - 1,
    };
    assert!(Bundle::decode(data, &tight).is_err());
});
