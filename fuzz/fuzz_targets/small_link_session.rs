//! A `ferry_cl_session::Session` fed arbitrary frames from a neighbour that said a
//! valid hello: the input is cut into length-prefixed frame bodies, each gets a valid
//! check (the pair key of the two for frames to one neighbour, the realm key for the
//! others, so the session's logic, not only the decoder, sees them), and time moves
//! on between them. The session must never panic, and keep its memory bounded.
#![no_main]

use ferry_cl_session::frame::{mic, Frame, MIC_LEN};
use ferry_cl_session::{frame_key, pair_key, Config, Kind, Medium, Session};
use ferry_core::{Identity, Realm};
use libfuzzer_sys::fuzz_target;

struct Air;
impl Medium for Air {
    fn airtime_us(&self, len: usize) -> u64 {
        len as u64 * 10
    }
}

fuzz_target!(|data: &[u8]| {
    let realm = Realm::new("fuzz", [3; 32]).expect("realm");
    let key = frame_key(&realm);
    let mut cfg = Config::cable(115_200);
    cfg.max_reassembly_bytes = 64 * 1024;
    cfg.max_message_bytes = 32 * 1024;
    let me = Identity::from_seed([1; 32]);
    let peer = Identity::from_seed([2; 32]);
    let mut a = Session::new(&me, &realm, [1; 4], cfg.clone(), Air, 0);
    let mut b = Session::new(&peer, &realm, [2; 4], cfg, Air, 0);
    // B's hello (it goes within a second of the start) makes B a neighbour of A.
    let hello = b.poll_transmit(1_000_000).expect("hello");
    a.handle_frame(1_000_000, &hello);
    let _ = a.send(&peer.node_id(), Kind::Bundle, ferry_cl_session::Class::Normal, 1, vec![9; 3000]);
    let mut now = 1_000_000u64;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (body, tail) = tail.split_at(n);
        rest = tail;
        let mut frame = body.to_vec();
        // Frames to one neighbour are checked under the pair key, others under the
        // realm key: give each the key A will check it with.
        let k = match Frame::decode_body(&frame).ok().and_then(|f| f.unicast_to()) {
            Some(_) => pair_key(&peer, &me.node_id(), &realm).expect("pair key"),
            None => key,
        };
        let m = mic(&k, &frame);
        frame.extend_from_slice(&m[..MIC_LEN]);
        now += 1_000 + u64::from(len) * 997;
        a.handle_frame(now, &frame);
        a.handle_timeout(now);
        while a.poll_transmit(now).is_some() {}
        while a.poll_event().is_some() {}
    }
    assert!(a.queued_bytes() <= 3000);
});
