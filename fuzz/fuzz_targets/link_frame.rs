//! `ferry_router::engine::decode_frame` (the router's link protocol) on arbitrary
//! bytes. Whatever decodes must be canonical: `encode` gives the input back, and
//! decoding that again gives the same frame. Reconciliation range lists that decode
//! are contiguous and end at infinity, so the engine can process them as they are.
#![no_main]

use ferry_router::engine::frame::{Bound, Frame};
use ferry_router::engine::decode_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = decode_frame(data) else {
        return;
    };
    let enc = frame.encode();
    assert_eq!(enc, data, "accepted frames are canonical");
    assert!(decode_frame(&enc).expect("re-encoded frame decodes") == frame);
    if let Frame::ReconRequest(ranges) | Frame::ReconReply(ranges) = &frame {
        assert!(!ranges.is_empty());
        assert_eq!(ranges.last().map(|r| r.upper), Some(Bound::Infinity));
        assert!(ranges.windows(2).all(|w| w[0].upper < w[1].upper));
    }
    let _ = frame.name();
});
