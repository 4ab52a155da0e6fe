//! The router's link protocol: control frames and their strict, bounded codec.
//!
//! Byte layout (version 1). Varints are postcard's unsigned LEB128 in canonical form
//! (as in `docs/wire-format.md`); `key` is the first 16 bytes of a bundle id.
//!
//! ```text
//! frame        = version:u8(=1) type:u8 body            ; at most MAX_FRAME_BYTES
//! 1 ReconRequest = ranges                                ; from the session's initiator
//! 2 ReconReply   = ranges                                ; from the responder
//! 3 Missing      = n:varint key*n                        ; "you hold these, I lack them"
//! 4 Offer        = seq:varint n:varint (id:[32] copies:varint)*n
//! 5 Want         = seq:varint n:varint key*n             ; answers Offer `seq`
//! 6 Ack          = n:varint key*n                        ; custody: committed durably
//! 7 Refuse       = reason:u8 n:varint key*n              ; 1 store full, 2 hop limit,
//!                                                        ; 3 gone, 4 not accepted,
//!                                                        ; 5 cancelled
//! 8 Predictability = n:varint (node_hash:[8] p:u16le)*n  ; PRoPHET, hashes ascending
//! ranges       = n:varint(>=1) (bound mode)*n            ; contiguous from key 0,
//!                                                        ; bounds strictly increasing,
//!                                                        ; the last one is infinity
//! bound        = len:u8 bytes:[len]                      ; len 0..=16: the key is the
//!                                                        ; bytes padded with zeros, no
//!                                                        ; trailing zero byte; 0xff = infinity
//! mode         = 0 (skip) | 1 fingerprint:[16] | 2 n:varint key*n  ; keys ascending,
//!                                                        ; inside the range
//! ```
//!
//! [`Frame::decode`] never panics and never allocates more than the input's length
//! allows (every count is checked against the bytes left before anything is
//! reserved); `decode(encode(f)) == f` and `encode(decode(b)) == b` for every accepted
//! `b`.

use ferry_core::{BundleId, NodeHash};

/// The link protocol version this code speaks (first byte of every frame).
pub const FRAME_VERSION: u8 = 1;
/// Largest frame, in bytes, that is encoded or accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Length of a [`Key`].
pub const KEY_LEN: usize = 16;
/// Length of a range fingerprint.
pub const FINGERPRINT_LEN: usize = 16;

/// The first 16 bytes of a bundle id: what reconciliation, wants and acks name
/// bundles by (offers carry the full id, which the receiver's seen-set needs).
pub type Key = [u8; KEY_LEN];

/// The key of a bundle id.
pub fn key_of(id: &BundleId) -> Key {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&id.0[..KEY_LEN]);
    k
}

/// A range's exclusive upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bound {
    /// Keys below this one (a key padded with zero bytes).
    Key(Key),
    /// Every key.
    Infinity,
}

impl Bound {
    /// Whether `key` is below this bound.
    pub fn above(&self, key: &Key) -> bool {
        match self {
            Bound::Key(b) => key < b,
            Bound::Infinity => true,
        }
    }
}

/// What a range says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Nothing to do: the sender considers this range settled.
    Skip,
    /// The sender's fingerprint of its keys in the range.
    Fingerprint([u8; FINGERPRINT_LEN]),
    /// All the sender's keys in the range, ascending.
    IdList(Vec<Key>),
}

/// One range of a reconciliation message: from the previous range's upper bound (key
/// 0 for the first) up to `upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Exclusive upper bound.
    pub upper: Bound,
    /// What the sender says about it.
    pub mode: Mode,
}

/// One bundle of an [`Frame::Offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferItem {
    /// The bundle.
    pub id: BundleId,
    /// Spray copies handed over with it (1 unless the policy splits copies).
    pub copies: u32,
}

/// Why a peer's bundle (or want) is refused; the sender keeps custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseReason {
    /// The receiver's store is full: retry later, not now.
    StoreFull = 1,
    /// The bundle is at its hop limit and the receiver is not its destination.
    HopLimit = 2,
    /// The sender no longer holds the bundle (expired, purged by a receipt).
    Gone = 3,
    /// Not accepted for another reason (storage error, age table full).
    NotAccepted = 4,
    /// The sender gave up transferring it for now (it failed repeatedly).
    Cancelled = 5,
}

impl RefuseReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::StoreFull,
            2 => Self::HopLimit,
            3 => Self::Gone,
            4 => Self::NotAccepted,
            5 => Self::Cancelled,
            _ => return None,
        })
    }
}

/// A control frame of the router's link protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A reconciliation round from the session's initiator.
    ReconRequest(Vec<Range>),
    /// The responder's answer to a [`Frame::ReconRequest`].
    ReconReply(Vec<Range>),
    /// Keys the sender learnt the receiver holds and the sender lacks.
    Missing(Vec<Key>),
    /// Bundles the sender will transfer if wanted.
    Offer {
        /// Echoed by the [`Frame::Want`] that answers it.
        seq: u32,
        /// The bundles.
        items: Vec<OfferItem>,
    },
    /// The offered bundles the receiver wants (every other one of offer `seq` is
    /// declined).
    Want {
        /// The offer answered.
        seq: u32,
        /// Keys wanted.
        keys: Vec<Key>,
    },
    /// Custody acknowledgment: these bundles are committed to durable storage.
    Ack(Vec<Key>),
    /// These bundles (or wants) are refused.
    Refuse {
        /// Why.
        reason: RefuseReason,
        /// The bundles.
        keys: Vec<Key>,
    },
    /// PRoPHET delivery predictabilities, node hashes ascending; `p / 65535`.
    Predictability(Vec<(NodeHash, u16)>),
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Ends inside the named field.
    #[error("frame is truncated (ends inside the {0})")]
    Truncated(&'static str),
    /// Another protocol version.
    #[error("unsupported link protocol version {0} (this node speaks {FRAME_VERSION})")]
    UnsupportedVersion(u8),
    /// Unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A malformed, overlong or out-of-range varint.
    #[error("malformed number in the {0}")]
    BadVarint(&'static str),
    /// A count larger than the bytes left can hold.
    #[error("{0} count exceeds the frame")]
    CountTooLarge(&'static str),
    /// A bound longer than a key, or with a trailing zero byte.
    #[error("malformed range bound")]
    BadBound,
    /// Range bounds not strictly increasing, or the last one is not infinity.
    #[error("range bounds are not strictly increasing up to infinity")]
    BadRanges,
    /// Unknown range mode.
    #[error("unknown range mode {0}")]
    BadMode(u8),
    /// Keys of an id list not ascending or outside their range.
    #[error("id list keys are not ascending inside their range")]
    BadIdList,
    /// Unknown refusal reason.
    #[error("unknown refusal reason {0}")]
    BadReason(u8),
    /// Predictability entries not strictly ascending by node hash.
    #[error("predictability entries are not ascending by node hash")]
    BadPredictability,
    /// Bytes after the end of the frame.
    #[error("{0} unexpected bytes after the end of the frame")]
    TrailingBytes(usize),
}

const T_RECON_REQUEST: u8 = 1;
const T_RECON_REPLY: u8 = 2;
const T_MISSING: u8 = 3;
const T_OFFER: u8 = 4;
const T_WANT: u8 = 5;
const T_ACK: u8 = 6;
const T_REFUSE: u8 = 7;
const T_PREDICT: u8 = 8;

const M_SKIP: u8 = 0;
const M_FINGERPRINT: u8 = 1;
const M_IDLIST: u8 = 2;

const BOUND_INFINITY: u8 = 0xff;

pub(crate) use ferry_core::codec::{put_varint, varint_len, Reader};

impl From<ferry_core::codec::CodecError> for FrameError {
    fn from(e: ferry_core::codec::CodecError) -> Self {
        use ferry_core::codec::CodecError;
        match e {
            CodecError::Truncated(w) => Self::Truncated(w),
            CodecError::BadVarint(w) => Self::BadVarint(w),
            CodecError::TooMany(w) => Self::CountTooLarge(w),
            _ => Self::BadVarint("frame"),
        }
    }
}

fn put_keys(out: &mut Vec<u8>, keys: &[Key]) {
    put_varint(out, keys.len() as u64);
    for k in keys {
        out.extend_from_slice(k);
    }
}

fn read_keys(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Key>, FrameError> {
    let n = r.count(KEY_LEN, what)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(r.array(what)?);
    }
    Ok(keys)
}

/// Encoded length of a bound.
pub(crate) fn bound_len(b: &Bound) -> usize {
    match b {
        Bound::Infinity => 1,
        Bound::Key(k) => 1 + significant_len(k),
    }
}

fn significant_len(k: &Key) -> usize {
    k.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn put_bound(out: &mut Vec<u8>, b: &Bound) {
    match b {
        Bound::Infinity => out.push(BOUND_INFINITY),
        Bound::Key(k) => {
            let n = significant_len(k);
            out.push(n as u8);
            out.extend_from_slice(&k[..n]);
        }
    }
}

fn read_bound(r: &mut Reader<'_>) -> Result<Bound, FrameError> {
    let n = r.u8("range bound")?;
    if n == BOUND_INFINITY {
        return Ok(Bound::Infinity);
    }
    let n = usize::from(n);
    if n > KEY_LEN {
        return Err(FrameError::BadBound);
    }
    let bytes = r.take(n, "range bound")?;
    if bytes.last() == Some(&0) {
        return Err(FrameError::BadBound);
    }
    let mut k = [0u8; KEY_LEN];
    k[..n].copy_from_slice(bytes);
    Ok(Bound::Key(k))
}

/// Encoded length of one range.
pub(crate) fn range_len(range: &Range) -> usize {
    bound_len(&range.upper)
        + 1
        + match &range.mode {
            Mode::Skip => 0,
            Mode::Fingerprint(_) => FINGERPRINT_LEN,
            Mode::IdList(keys) => varint_len(keys.len() as u64) + KEY_LEN * keys.len(),
        }
}

fn put_ranges(out: &mut Vec<u8>, ranges: &[Range]) {
    put_varint(out, ranges.len() as u64);
    for r in ranges {
        put_bound(out, &r.upper);
        match &r.mode {
            Mode::Skip => out.push(M_SKIP),
            Mode::Fingerprint(fp) => {
                out.push(M_FINGERPRINT);
                out.extend_from_slice(fp);
            }
            Mode::IdList(keys) => {
                out.push(M_IDLIST);
                put_keys(out, keys);
            }
        }
    }
}

fn read_ranges(r: &mut Reader<'_>) -> Result<Vec<Range>, FrameError> {
    // The smallest range (bound of one byte and a skip) takes 2 bytes.
    let n = r.count(2, "range")?;
    if n == 0 {
        return Err(FrameError::BadRanges);
    }
    let mut ranges = Vec::with_capacity(n);
    let mut lower: Option<Key> = None;
    for i in 0..n {
        let upper = read_bound(r)?;
        // Strictly increasing: the first bound must be above key 0 as well.
        let ok = match (&upper, &lower) {
            (Bound::Infinity, _) => i + 1 == n,
            (Bound::Key(k), Some(lo)) => k > lo,
            (Bound::Key(k), None) => *k != [0u8; KEY_LEN],
        };
        if !ok {
            return Err(FrameError::BadRanges);
        }
        let mode = match r.u8("range mode")? {
            M_SKIP => Mode::Skip,
            M_FINGERPRINT => Mode::Fingerprint(r.array("fingerprint")?),
            M_IDLIST => {
                let keys = read_keys(r, "id list")?;
                let lo = lower.unwrap_or([0u8; KEY_LEN]);
                let in_range = keys.first().is_none_or(|k| *k >= lo)
                    && keys.last().is_none_or(|k| upper.above(k))
                    && keys.windows(2).all(|w| w[0] < w[1]);
                if !in_range {
                    return Err(FrameError::BadIdList);
                }
                Mode::IdList(keys)
            }
            other => return Err(FrameError::BadMode(other)),
        };
        if let Bound::Key(k) = upper {
            lower = Some(k);
        }
        ranges.push(Range { upper, mode });
    }
    if ranges.last().map(|r| r.upper) != Some(Bound::Infinity) {
        return Err(FrameError::BadRanges);
    }
    Ok(ranges)
}

impl Frame {
    /// Encodes the frame. The engine keeps its frames within the link's budget; a
    /// frame built by hand can exceed [`MAX_FRAME_BYTES`] and would then be refused
    /// by [`Frame::decode`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_bound());
        out.push(FRAME_VERSION);
        match self {
            Frame::ReconRequest(ranges) => {
                out.push(T_RECON_REQUEST);
                put_ranges(&mut out, ranges);
            }
            Frame::ReconReply(ranges) => {
                out.push(T_RECON_REPLY);
                put_ranges(&mut out, ranges);
            }
            Frame::Missing(keys) => {
                out.push(T_MISSING);
                put_keys(&mut out, keys);
            }
            Frame::Offer { seq, items } => {
                out.push(T_OFFER);
                put_varint(&mut out, u64::from(*seq));
                put_varint(&mut out, items.len() as u64);
                for it in items {
                    out.extend_from_slice(&it.id.0);
                    put_varint(&mut out, u64::from(it.copies));
                }
            }
            Frame::Want { seq, keys } => {
                out.push(T_WANT);
                put_varint(&mut out, u64::from(*seq));
                put_keys(&mut out, keys);
            }
            Frame::Ack(keys) => {
                out.push(T_ACK);
                put_keys(&mut out, keys);
            }
            Frame::Refuse { reason, keys } => {
                out.push(T_REFUSE);
                out.push(*reason as u8);
                put_keys(&mut out, keys);
            }
            Frame::Predictability(entries) => {
                out.push(T_PREDICT);
                put_varint(&mut out, entries.len() as u64);
                for (h, p) in entries {
                    out.extend_from_slice(&h.0);
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
        }
        out
    }

    /// An upper bound of [`Frame::encode`]'s length (varints counted at their
    /// longest), so that encoding allocates once.
    fn encoded_len_bound(&self) -> usize {
        const V: usize = 10;
        let keys = |n: usize| V + n * KEY_LEN;
        2 + match self {
            Frame::ReconRequest(ranges) | Frame::ReconReply(ranges) => {
                V + ranges
                    .iter()
                    .map(|r| {
                        1 + KEY_LEN
                            + 1
                            + match &r.mode {
                                Mode::Skip => 0,
                                Mode::Fingerprint(_) => FINGERPRINT_LEN,
                                Mode::IdList(k) => keys(k.len()),
                            }
                    })
                    .sum::<usize>()
            }
            Frame::Missing(k) | Frame::Ack(k) => keys(k.len()),
            Frame::Want { keys: k, .. } => V + keys(k.len()),
            Frame::Refuse { keys: k, .. } => 1 + keys(k.len()),
            Frame::Offer { items, .. } => 2 * V + items.len() * (32 + V),
            Frame::Predictability(entries) => V + entries.len() * 10,
        }
    }

    /// Decodes and validates a frame from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let frame = match r.u8("frame type")? {
            T_RECON_REQUEST => Frame::ReconRequest(read_ranges(&mut r)?),
            T_RECON_REPLY => Frame::ReconReply(read_ranges(&mut r)?),
            T_MISSING => Frame::Missing(read_keys(&mut r, "missing list")?),
            T_OFFER => {
                let seq = r.u32_varint("offer sequence")?;
                // An item is at least 33 bytes (id and a one-byte varint).
                let n = r.count(33, "offer")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = BundleId(r.array("offered id")?);
                    let copies = r.u32_varint("offered copies")?;
                    items.push(OfferItem { id, copies });
                }
                Frame::Offer { seq, items }
            }
            T_WANT => {
                let seq = r.u32_varint("want sequence")?;
                Frame::Want {
                    seq,
                    keys: read_keys(&mut r, "want list")?,
                }
            }
            T_ACK => Frame::Ack(read_keys(&mut r, "ack list")?),
            T_REFUSE => {
                let code = r.u8("refusal reason")?;
                let reason = RefuseReason::from_u8(code).ok_or(FrameError::BadReason(code))?;
                Frame::Refuse {
                    reason,
                    keys: read_keys(&mut r, "refusal list")?,
                }
            }
            T_PREDICT => {
                let n = r.count(10, "predictability")?;
                let mut entries: Vec<(NodeHash, u16)> = Vec::with_capacity(n);
                for _ in 0..n {
                    let h = NodeHash(r.array("node hash")?);
                    let p = u16::from_le_bytes(r.array("predictability")?);
                    if entries.last().is_some_and(|(prev, _)| *prev >= h) {
                        return Err(FrameError::BadPredictability);
                    }
                    entries.push((h, p));
                }
                Frame::Predictability(entries)
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        if r.remaining() != 0 {
            return Err(FrameError::TrailingBytes(r.remaining()));
        }
        Ok(frame)
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::ReconRequest(_) => "recon-request",
            Frame::ReconReply(_) => "recon-reply",
            Frame::Missing(_) => "missing",
            Frame::Offer { .. } => "offer",
            Frame::Want { .. } => "want",
            Frame::Ack(_) => "ack",
            Frame::Refuse { .. } => "refuse",
            Frame::Predictability(_) => "predictability",
        }
    }
}

/// Decodes a frame from a peer: [`Frame::decode`]. The fuzz target
/// `fuzz/fuzz_targets/link_frame.rs` calls this function.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    Frame::decode(bytes)
}

/// Most items of `item_len` bytes that fit a list frame of `budget` bytes (at least
/// one).
pub(crate) fn items_per_frame(budget: usize, item_len: usize) -> usize {
    // version, type, reason or a u32 varint, and a count varint.
    (budget.saturating_sub(2 + 5 + 5) / item_len).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> Key {
        let mut k = [0u8; KEY_LEN];
        k[0] = b;
        k[15] = 1;
        k
    }

    #[test]
    fn examples_round_trip_with_exact_bytes() {
        let f = Frame::Ack(vec![[7; 16]]);
        let b = f.encode();
        assert_eq!(b[..3], [1, T_ACK, 1]);
        assert_eq!(b.len(), 3 + 16);
        assert_eq!(Frame::decode(&b).unwrap(), f);

        let mut short = [0u8; 16];
        short[0] = 0x80;
        let f = Frame::ReconRequest(vec![
            Range {
                upper: Bound::Key(short),
                mode: Mode::Fingerprint([9; 16]),
            },
            Range {
                upper: Bound::Infinity,
                mode: Mode::Skip,
            },
        ]);
        let b = f.encode();
        // version, type, count, bound(len 1, 0x80), mode 1, fp, bound ∞, mode 0
        assert_eq!(b[..6], [1, 1, 2, 1, 0x80, 1]);
        assert_eq!(b[b.len() - 2..], [0xff, 0]);
        assert_eq!(b.len(), 6 + 16 + 2);
        assert_eq!(Frame::decode(&b).unwrap(), f);
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Truncated("version")));
        assert_eq!(
            Frame::decode(&[2, 6, 0]),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert_eq!(Frame::decode(&[1, 99]), Err(FrameError::UnknownType(99)));
        assert_eq!(
            Frame::decode(&[1, T_ACK, 0, 0]),
            Err(FrameError::TrailingBytes(1))
        );
        // A count that cannot fit is refused before any allocation.
        assert_eq!(
            Frame::decode(&[1, T_ACK, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(FrameError::CountTooLarge("ack list"))
        );
        // Non-canonical varint.
        assert_eq!(
            Frame::decode(&[1, T_ACK, 0x80, 0x00]),
            Err(FrameError::BadVarint("ack list"))
        );
        // Ranges must end at infinity.
        assert_eq!(
            Frame::decode(&[1, T_RECON_REQUEST, 1, 1, 5, 0]),
            Err(FrameError::BadRanges)
        );
        // Bounds with a trailing zero are not canonical.
        assert_eq!(
            Frame::decode(&[1, T_RECON_REQUEST, 1, 2, 5, 0, 0]),
            Err(FrameError::BadBound)
        );
        // A zero-length bound (key 0) is below every range.
        assert_eq!(
            Frame::decode(&[1, T_RECON_REQUEST, 2, 0, 0, 0xff, 0]),
            Err(FrameError::BadRanges)
        );
        // Id list outside its range: key 0x90.. in a range ending at 0x80.
        let mut bad = vec![1, T_RECON_REQUEST, 2, 1, 0x80, M_IDLIST, 1];
        bad.extend_from_slice(&key(0x90));
        bad.extend_from_slice(&[0xff, 0]);
        assert_eq!(Frame::decode(&bad), Err(FrameError::BadIdList));
        assert_eq!(
            Frame::decode(&[1, T_REFUSE, 9, 0]),
            Err(FrameError::BadReason(9))
        );
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            Frame::decode(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }

    fn arb_key() -> impl Strategy<Value = Key> {
        prop::array::uniform16(any::<u8>())
    }

    fn arb_ranges() -> impl Strategy<Value = Vec<Range>> {
        (
            prop::collection::btree_set(arb_key(), 0..6),
            prop::collection::vec((0u8..3, any::<[u8; 16]>()), 6),
            prop::collection::btree_set(arb_key(), 0..12),
        )
            .prop_map(|(bounds, modes, keys)| {
                let mut uppers: Vec<Bound> = bounds
                    .into_iter()
                    .filter(|k| *k != [0u8; 16])
                    .map(|mut k| {
                        // Canonical bounds have no trailing zero bytes: any key works,
                        // the encoder strips them.
                        if k[15] == 0 {
                            k[15] = 1;
                        }
                        Bound::Key(k)
                    })
                    .collect();
                uppers.sort();
                uppers.dedup();
                uppers.push(Bound::Infinity);
                let mut lower = [0u8; 16];
                let mut out = Vec::new();
                for (i, upper) in uppers.into_iter().enumerate() {
                    let (m, fp) = modes[i % modes.len()];
                    let mode = match m {
                        0 => Mode::Skip,
                        1 => Mode::Fingerprint(fp),
                        _ => Mode::IdList(
                            keys.iter()
                                .copied()
                                .filter(|k| *k >= lower && upper.above(k))
                                .collect(),
                        ),
                    };
                    if let Bound::Key(k) = upper {
                        lower = k;
                    }
                    out.push(Range { upper, mode });
                }
                out
            })
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let keys = || prop::collection::vec(arb_key(), 0..20);
        prop_oneof![
            arb_ranges().prop_map(Frame::ReconRequest),
            arb_ranges().prop_map(Frame::ReconReply),
            keys().prop_map(Frame::Missing),
            (
                any::<u32>(),
                prop::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..10)
            )
                .prop_map(|(seq, items)| Frame::Offer {
                    seq,
                    items: items
                        .into_iter()
                        .map(|(id, copies)| OfferItem {
                            id: BundleId(id),
                            copies
                        })
                        .collect()
                }),
            (any::<u32>(), keys()).prop_map(|(seq, keys)| Frame::Want { seq, keys }),
            keys().prop_map(Frame::Ack),
            (1u8..=5, keys()).prop_map(|(r, keys)| Frame::Refuse {
                reason: RefuseReason::from_u8(r).unwrap_or(RefuseReason::Gone),
                keys
            }),
            prop::collection::btree_map(any::<[u8; 8]>(), any::<u16>(), 0..20).prop_map(|m| {
                Frame::Predictability(m.into_iter().map(|(h, p)| (NodeHash(h), p)).collect())
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame()) {
            let b = f.encode();
            prop_assert_eq!(Frame::decode(&b).unwrap(), f.clone());
            prop_assert!(b.len() <= f.encoded_len_bound());
            if let Frame::ReconRequest(r) | Frame::ReconReply(r) = &f {
                let len: usize = r.iter().map(range_len).sum::<usize>()
                    + 2 + varint_len(r.len() as u64);
                prop_assert_eq!(len, b.len());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(f) = Frame::decode(&bytes) {
                // Whatever decodes is canonical.
                prop_assert_eq!(f.encode(), bytes);
            }
        }

        #[test]
        fn mutated_frames_never_panic(f in arb_frame(), at in any::<usize>(), byte in any::<u8>()) {
            let mut b = f.encode();
            let i = at % b.len();
            b[i] = byte;
            if let Ok(g) = Frame::decode(&b) {
                prop_assert_eq!(g.encode(), b.clone());
            }
            b.truncate(i);
            let _ = Frame::decode(&b);
        }
    }
}
