//! The session layer's frames and their strict codec.
//!
//! Every frame is one radio packet (or one KISS frame on a cable). Byte layout, every
//! byte counted (varints are canonical unsigned LEB128, as in `docs/wire-format.md`):
//!
//! ```text
//! frame  = b0:u8 src:[2] body mic:[4]
//! b0     = type:2 (bits 7-6) flags:6
//! mic    = BLAKE3 keyed hash of everything before it, first 4 bytes (detects
//!          corruption like a CRC-32 and refuses forged frames), keyed by
//!          - for a frame to one neighbour (ACK, or DATA/POLL with one destination):
//!            the pair key of sender and destination (X25519 between their node
//!            keys, bound to the realm): only those two can make or check it;
//!          - otherwise (HELLO, frames to several neighbours): the realm's
//!            link-frame key, so outsiders and other realms are refused
//! src    = the sender's short address: the first 2 bytes of its node hash
//!
//! type 0 HELLO  flags: bit0 = please answer with your hello, bit1 = RESETS
//!               body = node_id:[32] nonce:[4] sig:[64] [n:u8 (dst:[2] epoch:u8)*n]
//!               sig  = Ed25519 over "ferry/hello/v1" | realm proof | node_id | nonce
//!                      [| n | (dst | epoch)*n]
//!               RESETS (1..=4 entries): the sender had declared these neighbours
//!               down and has a new contact with them; a named neighbour that still
//!               holds the old contact ends it too (once per epoch)
//! type 1 DATA   flags: bits 5-4 = destinations − 1 (1..=3), bit3 POLL, bit2 SINGLE,
//!               bit1 INFO, bit0 KIND (0 link-protocol frame, 1 bundle)
//!               SINGLE: body = dst:[2]*n msg:u8 payload          ; a whole message
//!               INFO:   body = dst:[2]*n msg:u8 key:[8] len:varint seg_size:varint
//!               else:   body = dst:[2]*n msg:u8 seg:varint payload ; one segment
//! type 2 ACK    flags: bit5 THEN, bits 4-0 = entries (1..=31)
//!               body = dst:[2] (msg:u8 state:varint [blen:u8 bitmap:[blen]])*
//!                      [then]   ; THEN: a DATA or POLL frame's b0 and body (no src)
//!                               ; rides along, so an ACK and the answer it carries
//!                               ; (a Want after an Offer) share one packet
//!               state = cum << 1 | has_bitmap: segments 0..cum all received;
//!               bitmap bit i (LSB first) = segment cum+1+i received
//! type 3 POLL   flags: bits 5-4 = destinations − 1; body = dst:[2]*n
//! ```
//!
//! A 50-byte message sealed to a neighbour is a 188-byte bundle, which travels in one
//! SINGLE frame of 198 bytes (1 + 2 + 2 + 1 + 188 + 4).
//!
//! [`Frame::decode`] never panics and allocates no more than the input's length.

use ferry_core::codec;

/// Bytes of the per-frame integrity check.
pub const MIC_LEN: usize = 4;
/// Most destinations of one DATA frame (a bundle several neighbours lack goes on air
/// once, to up to this many of them).
pub const MAX_DSTS: usize = 3;
/// Length of a message's content key.
pub const KEY_LEN: usize = 8;
/// Bytes a DATA segment frame needs besides its payload, at most (three
/// destinations, a three-byte segment number, the MIC).
pub const MAX_SEGMENT_OVERHEAD: usize = 1 + 2 + 2 * MAX_DSTS + 1 + 3 + MIC_LEN;
/// Largest bitmap of one ACK entry.
pub const MAX_BITMAP: usize = 32;
/// Most entries of one ACK frame.
pub const MAX_ACK_ENTRIES: usize = 31;
/// Most segments of one message (segment numbers fit three varint bytes).
pub const MAX_SEGMENTS: u32 = 1 << 21;
/// Most contact resets one hello announces.
pub const MAX_RESETS: usize = 4;

/// A short (2-byte) link address.
pub type Short = [u8; 2];

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A control frame of the router's link protocol.
    Frame,
    /// An encoded bundle.
    Bundle,
}

/// A decoded frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A neighbour announces itself.
    Hello {
        /// Asks receivers to answer with their hello.
        answer: bool,
        /// The sender's node id.
        node_id: [u8; 32],
        /// Changes when the sender restarts.
        nonce: [u8; 4],
        /// Ed25519 signature (see the module docs).
        sig: [u8; 64],
        /// Neighbours whose contact the sender restarted, with the sender's contact
        /// epoch for each (at most [`MAX_RESETS`]; usually empty).
        resets: Vec<(Short, u8)>,
    },
    /// A whole message in one frame.
    Single {
        /// Destinations.
        dsts: Vec<Short>,
        /// Asks the destinations for an ACK.
        poll: bool,
        /// What it carries.
        kind: Kind,
        /// Message number (per sender).
        msg: u8,
        /// The message.
        payload: Vec<u8>,
    },
    /// Describes a segmented message.
    Info {
        /// Destinations.
        dsts: Vec<Short>,
        /// Asks the destinations for an ACK.
        poll: bool,
        /// What it carries.
        kind: Kind,
        /// Message number.
        msg: u8,
        /// Content key (first bytes of the message's BLAKE3 hash): survives breaks.
        key: [u8; KEY_LEN],
        /// Message length in bytes.
        len: u32,
        /// Bytes per segment (the last one may be shorter).
        seg_size: u32,
    },
    /// One segment of a segmented message.
    Segment {
        /// Destinations.
        dsts: Vec<Short>,
        /// Asks the destinations for an ACK.
        poll: bool,
        /// What it carries.
        kind: Kind,
        /// Message number.
        msg: u8,
        /// Segment number.
        seg: u32,
        /// The segment's bytes.
        payload: Vec<u8>,
    },
    /// Selective acknowledgment of one sender's messages.
    Ack {
        /// The sender being acknowledged.
        dst: Short,
        /// Per message.
        entries: Vec<AckEntry>,
        /// A DATA or POLL body riding in the same frame.
        then: Option<Box<Body>>,
    },
    /// Asks the destinations for an ACK.
    Poll {
        /// Destinations.
        dsts: Vec<Short>,
    },
}

/// What a receiver has of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckEntry {
    /// Message number.
    pub msg: u8,
    /// Segments `0..cum` all received.
    pub cum: u32,
    /// Bit `i` (LSB first): segment `cum + 1 + i` received.
    pub bitmap: Vec<u8>,
}

/// A frame: sender and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The sender's short address.
    pub src: Short,
    /// What it says.
    pub body: Body,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than any frame.
    #[error("frame too short")]
    Short,
    /// Longer than the link's MTU.
    #[error("frame longer than the link MTU")]
    Oversized,
    /// The integrity check failed: corrupted, or from another realm.
    #[error("frame check failed (corrupt or another realm)")]
    BadCheck,
    /// A field is out of range or the body ends early or late.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// No key to check it with (a frame to one neighbour from a sender whose hello
    /// this node has not had, or a frame between two other nodes).
    #[error("no key to check the frame")]
    NoKey,
}

const T_HELLO: u8 = 0;
const T_DATA: u8 = 1;
const T_ACK: u8 = 2;
const T_POLL: u8 = 3;

const F_KIND: u8 = 1;
const F_INFO: u8 = 2;
const F_SINGLE: u8 = 4;
const F_POLL: u8 = 8;

/// The 4-byte integrity check of `bytes` under `key`.
pub fn mic(key: &[u8; 32], bytes: &[u8]) -> [u8; MIC_LEN] {
    let h = blake3::keyed_hash(key, bytes);
    let mut m = [0u8; MIC_LEN];
    m.copy_from_slice(&h.as_bytes()[..MIC_LEN]);
    m
}

impl Frame {
    /// Encodes the frame and appends its check.
    pub fn encode(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = self.encode_body();
        let m = mic(key, &out);
        out.extend_from_slice(&m);
        out
    }

    /// Encoded length, check included.
    pub fn encoded_len(&self) -> usize {
        self.encode_body().len() + MIC_LEN
    }

    /// The frame's bytes without the check (what [`Frame::decode_body`] reads).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        encode_body(&self.body, Some(self.src), &mut out);
        out
    }

    /// Checks the MIC under `key` and decodes. `mtu` bounds the frame's length.
    pub fn decode(bytes: &[u8], key: &[u8; 32], mtu: usize) -> Result<Frame, FrameError> {
        Self::decode_with(bytes, mtu, |_| Some(*key))
    }

    /// Decodes, then checks the MIC under the key `key_for` picks for the decoded
    /// frame (a pair key for a frame to one neighbour, the realm key otherwise);
    /// nothing of an unchecked frame is returned. `None` from `key_for` gives
    /// [`FrameError::NoKey`].
    pub fn decode_with(
        bytes: &[u8],
        mtu: usize,
        key_for: impl FnOnce(&Frame) -> Option<[u8; 32]>,
    ) -> Result<Frame, FrameError> {
        if bytes.len() > mtu {
            return Err(FrameError::Oversized);
        }
        if bytes.len() < 3 + MIC_LEN {
            return Err(FrameError::Short);
        }
        let (head, check) = bytes.split_at(bytes.len() - MIC_LEN);
        let frame = Self::decode_body(head)?;
        let key = key_for(&frame).ok_or(FrameError::NoKey)?;
        if mic(&key, head) != check {
            return Err(FrameError::BadCheck);
        }
        Ok(frame)
    }

    /// The one neighbour this frame is for, if it is for exactly one: an ACK's
    /// destination, or the destination of a DATA or POLL frame with one. Such frames
    /// are checked under the pair key of sender and destination.
    pub fn unicast_to(&self) -> Option<Short> {
        match &self.body {
            Body::Ack { dst, .. } => Some(*dst),
            Body::Single { dsts, .. }
            | Body::Info { dsts, .. }
            | Body::Segment { dsts, .. }
            | Body::Poll { dsts } => (dsts.len() == 1).then(|| dsts[0]),
            Body::Hello { .. } => None,
        }
    }

    /// Decodes a frame whose check was already removed (and verified). Public for
    /// fuzzing; never panics.
    pub fn decode_body(b: &[u8]) -> Result<Frame, FrameError> {
        let mut r = Rd { b, pos: 0 };
        let b0 = r.u8()?;
        let src = r.arr::<2>()?;
        let body = decode_rest(&mut r, b0, true)?;
        if r.pos != b.len() {
            return Err(FrameError::Malformed("trailing bytes"));
        }
        Ok(Frame { src, body })
    }
}

/// Decodes what follows a frame's first byte (and its source address); `top` is
/// false for a body riding in an ACK, which may only be DATA or POLL.
fn decode_rest(r: &mut Rd<'_>, b0: u8, top: bool) -> Result<Body, FrameError> {
    let ty = b0 >> 6;
    let flags = b0 & 0x3f;
    let body = match ty {
        T_HELLO | T_ACK if !top => {
            return Err(FrameError::Malformed("only DATA or POLL rides in an ACK"))
        }
        T_HELLO => {
            if flags & !3 != 0 {
                return Err(FrameError::Malformed("hello flags"));
            }
            let answer = flags & 1 == 1;
            let node_id = r.arr()?;
            let nonce = r.arr()?;
            let sig = r.arr()?;
            let mut resets = Vec::new();
            if flags & 2 != 0 {
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_RESETS {
                    return Err(FrameError::Malformed("hello reset count"));
                }
                for _ in 0..n {
                    resets.push((r.arr()?, r.u8()?));
                }
            }
            Body::Hello {
                answer,
                node_id,
                nonce,
                sig,
                resets,
            }
        }
        T_DATA => {
            let dsts = r.dsts(flags)?;
            let poll = flags & F_POLL != 0;
            let kind = if flags & F_KIND != 0 {
                Kind::Bundle
            } else {
                Kind::Frame
            };
            let msg = r.u8()?;
            match (flags & F_SINGLE != 0, flags & F_INFO != 0) {
                (true, true) => return Err(FrameError::Malformed("single and info")),
                (true, false) => Body::Single {
                    dsts,
                    poll,
                    kind,
                    msg,
                    payload: r.rest_nonempty()?,
                },
                (false, true) => {
                    let key = r.arr()?;
                    let len = r.var_u32()?;
                    let seg_size = r.var_u32()?;
                    if len == 0 || seg_size == 0 {
                        return Err(FrameError::Malformed("empty message or segment"));
                    }
                    if len.div_ceil(seg_size) > MAX_SEGMENTS {
                        return Err(FrameError::Malformed("too many segments"));
                    }
                    Body::Info {
                        dsts,
                        poll,
                        kind,
                        msg,
                        key,
                        len,
                        seg_size,
                    }
                }
                (false, false) => {
                    let seg = r.var_u32()?;
                    if seg >= MAX_SEGMENTS {
                        return Err(FrameError::Malformed("segment number"));
                    }
                    Body::Segment {
                        dsts,
                        poll,
                        kind,
                        msg,
                        seg,
                        payload: r.rest_nonempty()?,
                    }
                }
            }
        }
        T_ACK => {
            let n = usize::from(flags & 0x1f);
            if n == 0 {
                return Err(FrameError::Malformed("ack without entries"));
            }
            let dst = r.arr()?;
            let mut entries = Vec::with_capacity(n.min(r.left()));
            for _ in 0..n {
                let msg = r.u8()?;
                let state = r.varint()?;
                let cum = u32::try_from(state >> 1)
                    .ok()
                    .filter(|c| *c <= MAX_SEGMENTS)
                    .ok_or(FrameError::Malformed("ack count"))?;
                let bitmap = if state & 1 == 1 {
                    let blen = usize::from(r.u8()?);
                    if blen == 0 || blen > MAX_BITMAP {
                        return Err(FrameError::Malformed("ack bitmap length"));
                    }
                    r.take(blen)?.to_vec()
                } else {
                    Vec::new()
                };
                entries.push(AckEntry { msg, cum, bitmap });
            }
            let then = if flags & 0x20 != 0 {
                let b0 = r.u8()?;
                Some(Box::new(decode_rest(r, b0, false)?))
            } else {
                None
            };
            Body::Ack { dst, entries, then }
        }
        _ => {
            if flags & 0x0f != 0 {
                return Err(FrameError::Malformed("poll flags"));
            }
            Body::Poll {
                dsts: r.dsts(flags)?,
            }
        }
    };
    Ok(body)
}

/// Encodes `body`; `src` follows the first byte unless the body rides in an ACK.
fn encode_body(body: &Body, src: Option<Short>, out: &mut Vec<u8>) {
    let dsts_flags = |d: &[Short]| (d.len().clamp(1, MAX_DSTS) as u8 - 1) << 4;
    let kind_flag = |k: Kind| if k == Kind::Bundle { F_KIND } else { 0 };
    let poll_flag = |p: bool| if p { F_POLL } else { 0 };
    match body {
        Body::Hello {
            answer,
            node_id,
            nonce,
            sig,
            resets,
        } => {
            let resets = &resets[..resets.len().min(MAX_RESETS)];
            let flag = if resets.is_empty() { 0 } else { 2 };
            out.push(T_HELLO << 6 | flag | u8::from(*answer));
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            out.extend_from_slice(node_id);
            out.extend_from_slice(nonce);
            out.extend_from_slice(sig);
            if !resets.is_empty() {
                out.push(resets.len() as u8);
                for (dst, epoch) in resets {
                    out.extend_from_slice(dst);
                    out.push(*epoch);
                }
            }
        }
        Body::Single {
            dsts,
            poll,
            kind,
            msg,
            payload,
        } => {
            out.push(
                T_DATA << 6 | dsts_flags(dsts) | poll_flag(*poll) | F_SINGLE | kind_flag(*kind),
            );
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            dsts.iter().for_each(|d| out.extend_from_slice(d));
            out.push(*msg);
            out.extend_from_slice(payload);
        }
        Body::Info {
            dsts,
            poll,
            kind,
            msg,
            key,
            len,
            seg_size,
        } => {
            out.push(T_DATA << 6 | dsts_flags(dsts) | poll_flag(*poll) | F_INFO | kind_flag(*kind));
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            dsts.iter().for_each(|d| out.extend_from_slice(d));
            out.push(*msg);
            out.extend_from_slice(key);
            codec::put_varint(out, u64::from(*len));
            codec::put_varint(out, u64::from(*seg_size));
        }
        Body::Segment {
            dsts,
            poll,
            kind,
            msg,
            seg,
            payload,
        } => {
            out.push(T_DATA << 6 | dsts_flags(dsts) | poll_flag(*poll) | kind_flag(*kind));
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            dsts.iter().for_each(|d| out.extend_from_slice(d));
            out.push(*msg);
            codec::put_varint(out, u64::from(*seg));
            out.extend_from_slice(payload);
        }
        Body::Ack { dst, entries, then } => {
            let then_flag = if then.is_some() { 0x20 } else { 0 };
            out.push(T_ACK << 6 | then_flag | (entries.len().min(MAX_ACK_ENTRIES) as u8));
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            out.extend_from_slice(dst);
            for e in entries.iter().take(MAX_ACK_ENTRIES) {
                out.push(e.msg);
                let has = !e.bitmap.is_empty();
                codec::put_varint(out, u64::from(e.cum) << 1 | u64::from(has));
                if has {
                    let b = &e.bitmap[..e.bitmap.len().min(MAX_BITMAP)];
                    out.push(b.len() as u8);
                    out.extend_from_slice(b);
                }
            }
            if let Some(t) = then {
                encode_body(t, None, out);
            }
        }
        Body::Poll { dsts } => {
            out.push(T_POLL << 6 | dsts_flags(dsts));
            out.extend_from_slice(src.as_ref().map_or(&[][..], |s| &s[..]));
            dsts.iter().for_each(|d| out.extend_from_slice(d));
        }
    }
}

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Rd<'_> {
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.left() < n {
            return Err(FrameError::Short);
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn varint(&mut self) -> Result<u64, FrameError> {
        let mut r = codec::Reader::new(&self.b[self.pos..]);
        let v = r
            .varint("varint")
            .map_err(|_| FrameError::Malformed("varint"))?;
        self.pos += r.pos();
        Ok(v)
    }
    fn var_u32(&mut self) -> Result<u32, FrameError> {
        u32::try_from(self.varint()?).map_err(|_| FrameError::Malformed("varint range"))
    }
    fn dsts(&mut self, flags: u8) -> Result<Vec<Short>, FrameError> {
        let n = usize::from(flags >> 4) + 1;
        if n > MAX_DSTS {
            return Err(FrameError::Malformed("destinations"));
        }
        (0..n).map(|_| self.arr()).collect()
    }
    fn rest_nonempty(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.left();
        if n == 0 {
            return Err(FrameError::Malformed("empty payload"));
        }
        Ok(self.take(n)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [9; 32];

    fn arb_dsts() -> impl Strategy<Value = Vec<Short>> {
        proptest::collection::vec(any::<[u8; 2]>(), 1..=MAX_DSTS)
    }

    fn arb_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Frame), Just(Kind::Bundle)]
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (
                any::<bool>(),
                any::<[u8; 32]>(),
                any::<[u8; 4]>(),
                proptest::collection::vec(any::<u8>(), 64),
                proptest::collection::vec((any::<[u8; 2]>(), any::<u8>()), 0..=MAX_RESETS)
            )
                .prop_map(|(answer, node_id, nonce, s, resets)| {
                    let mut sig = [0u8; 64];
                    sig.copy_from_slice(&s);
                    Body::Hello {
                        answer,
                        node_id,
                        nonce,
                        sig,
                        resets,
                    }
                }),
            (
                arb_dsts(),
                any::<bool>(),
                arb_kind(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 1..200)
            )
                .prop_map(|(dsts, poll, kind, msg, payload)| Body::Single {
                    dsts,
                    poll,
                    kind,
                    msg,
                    payload
                }),
            (
                arb_dsts(),
                any::<bool>(),
                arb_kind(),
                any::<u8>(),
                any::<[u8; 8]>(),
                1u32..1 << 20,
                1u32..300
            )
                .prop_map(|(dsts, poll, kind, msg, key, len, seg_size)| Body::Info {
                    dsts,
                    poll,
                    kind,
                    msg,
                    key,
                    len,
                    seg_size
                }),
            (
                arb_dsts(),
                any::<bool>(),
                arb_kind(),
                any::<u8>(),
                0u32..MAX_SEGMENTS,
                proptest::collection::vec(any::<u8>(), 1..200)
            )
                .prop_map(|(dsts, poll, kind, msg, seg, payload)| Body::Segment {
                    dsts,
                    poll,
                    kind,
                    msg,
                    seg,
                    payload
                }),
            (
                any::<[u8; 2]>(),
                proptest::collection::vec(
                    (
                        any::<u8>(),
                        0u32..MAX_SEGMENTS,
                        proptest::collection::vec(any::<u8>(), 0..=MAX_BITMAP)
                    ),
                    1..10
                )
            )
                .prop_map(|(dst, es)| Body::Ack {
                    then: None,
                    dst,
                    entries: es
                        .into_iter()
                        .map(|(msg, cum, bitmap)| AckEntry { msg, cum, bitmap })
                        .collect()
                }),
            arb_dsts().prop_map(|dsts| Body::Poll { dsts }),
            (
                any::<[u8; 2]>(),
                any::<u8>(),
                0u32..1000,
                arb_dsts(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 1..100)
            )
                .prop_map(|(dst, msg, cum, dsts, m2, payload)| Body::Ack {
                    dst,
                    entries: vec![AckEntry {
                        msg,
                        cum,
                        bitmap: vec![]
                    }],
                    then: Some(Box::new(Body::Single {
                        dsts,
                        poll: true,
                        kind: Kind::Frame,
                        msg: m2,
                        payload
                    })),
                }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(src in any::<[u8; 2]>(), body in arb_body()) {
            let f = Frame { src, body };
            let bytes = f.encode(&KEY);
            prop_assert_eq!(bytes.len(), f.encoded_len());
            prop_assert_eq!(Frame::decode(&bytes, &KEY, 4096), Ok(f));
        }

        #[test]
        fn any_bit_flip_is_refused(src in any::<[u8; 2]>(), body in arb_body(), bit in any::<usize>()) {
            let mut bytes = Frame { src, body }.encode(&KEY);
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Frame::decode(&bytes, &KEY, 4096).is_err());
        }

        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Frame::decode_body(&bytes);
            let _ = Frame::decode(&bytes, &KEY, 255);
        }
    }

    #[test]
    fn a_single_188_byte_bundle_frame_is_198_bytes() {
        let f = Frame {
            src: [1, 2],
            body: Body::Single {
                dsts: vec![[3, 4]],
                poll: true,
                kind: Kind::Bundle,
                msg: 0,
                payload: vec![0; 188],
            },
        };
        assert_eq!(f.encode(&KEY).len(), 198);
    }

    #[test]
    fn another_realms_key_and_oversize_are_refused() {
        let f = Frame {
            src: [1, 2],
            body: Body::Poll { dsts: vec![[3, 4]] },
        };
        let bytes = f.encode(&KEY);
        assert_eq!(
            Frame::decode(&bytes, &[8; 32], 255),
            Err(FrameError::BadCheck)
        );
        assert_eq!(Frame::decode(&bytes, &KEY, 5), Err(FrameError::Oversized));
        assert_eq!(
            Frame::decode(&bytes[..5], &KEY, 255),
            Err(FrameError::Short)
        );
    }
}
