//! `ferry_cl_session::frame::Frame::decode_body` (serial and LoRa frames, check
//! removed) on arbitrary bytes. What decodes is canonical: encoding gives the input
//! back; with a check appended, `Frame::decode` accepts it and refuses it under another
//! realm's key.
#![no_main]

use ferry_cl_session::frame::{Frame, FrameError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode_body(data) else {
        return;
    };
    assert_eq!(frame.encode_body(), data, "accepted frames are canonical");
    let key = [7u8; 32];
    let wire = frame.encode(&key);
    assert_eq!(Frame::decode(&wire, &key, usize::MAX).as_ref(), Ok(&frame));
    assert_eq!(Frame::decode(&wire, &[8u8; 32], usize::MAX), Err(FrameError::BadCheck));
});
