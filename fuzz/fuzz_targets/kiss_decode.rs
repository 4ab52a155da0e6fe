//! `ferry_cl_session::kiss::Decoder` on an arbitrary byte stream, fed in two pieces
//! split where the first byte says: never panics, never yields a frame above its
//! limit, and every frame it yields survives an encode/decode round trip.
#![no_main]

use ferry_cl_session::kiss::{self, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut d = Decoder::new(300);
    let mut frames: Vec<kiss::Frame> = d.feed(&data[..cut]).flatten().collect();
    frames.extend(d.feed(&data[cut..]).flatten());
    for f in frames {
        assert!(f.data.len() < 300);
        let wire = kiss::encode(f.command, &f.data);
        let mut again = Decoder::new(300);
        let back: Vec<_> = again.feed(&wire).collect();
        assert_eq!(back, vec![Ok(f)]);
    }
});
