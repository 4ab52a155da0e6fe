//! `ferry_cl_drive::manifest::decode` on arbitrary payloads: never panics, and what
//! decodes re-encodes to the same bytes (the encoding is canonical).
#![no_main]

use ferry_cl_drive::manifest::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = decode(data) {
        assert_eq!(encode(&ids), data);
    }
});
