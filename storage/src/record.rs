//! On-disk encodings: the metadata record, the bundle blob frame, the quarantine
//! entry and the index keys.
//!
//! ```text
//! meta record   = version:u8 (=1) postcard(MetaV1) crc32:u32-le   ; CRC over everything before it
//! bundle blob   = version:u8 (=1) crc32:u32-le bytes               ; CRC over `bytes`
//!               | version:u8 (=2) crc32:u32-le len:u64-le         ; bytes in a payload file
//! quarantine    = version:u8 (=1) postcard(QuarantineV1) meta_raw blob_raw
//! ```
//!
//! The metadata record does not use ferry-core's serde derives: it has its own
//! versioned mirror types (`MetaV1`), so a change in core cannot silently change
//! the disk format. The bundle bytes are already an encoded bundle; they get a frame
//! (version and CRC) rather than a second encoding, and are written straight into
//! LMDB's reserved space.
//!
//! Decoding never panics and allocates at most in proportion to its input.

use ferry_core::{BundleId, Destination, NodeHash, Priority};
use serde::{Deserialize, Serialize};

use crate::types::{BundleMeta, CustodyState, RecordInfo, RoutingMeta, MAX_HOLDERS};

/// Version byte of metadata records.
pub const META_VERSION: u8 = 1;
/// Version byte of bundle blobs that hold the bundle bytes.
pub const BLOB_VERSION: u8 = 1;
/// Version byte of bundle blobs whose bytes are in a payload file of the store
/// (see [`crate::LmdbStore`]): the blob keeps their CRC and length.
pub const BLOB_FILE_VERSION: u8 = 2;
/// Length of a blob that refers to a payload file.
pub const BLOB_FILE_LEN: usize = 13;
/// Version byte of quarantine entries.
pub const QUARANTINE_VERSION: u8 = 1;
/// Longest quarantine reason kept.
pub const MAX_REASON_LEN: usize = 512;

/// Why stored bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Too short to hold the frame.
    #[error("record is truncated ({0} bytes)")]
    Truncated(usize),
    /// Unknown version byte.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// The CRC does not match: the bytes changed after they were written.
    #[error("record checksum mismatch")]
    Checksum,
    /// The body is not a valid postcard encoding of the record.
    #[error("malformed record body: {0}")]
    Malformed(String),
    /// Bytes left over after the body.
    #[error("{0} unexpected bytes after the record body")]
    TrailingBytes(usize),
    /// Decoded, but breaks a rule (e.g. an unknown priority).
    #[error("invalid record field: {0}")]
    Invalid(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum DestV1 {
    Node([u8; 8]),
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum CustodyV1 {
    Carried,
    Held,
    InTransit { to: [u8; 8], since: u64 },
    Delivered,
}

/// Version 1 of the metadata record's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MetaV1 {
    id: [u8; 32],
    insertion: u64,
    size: u64,
    priority: u8,
    destination: DestV1,
    source: [u8; 8],
    expires_at: Option<u64>,
    received_at: u64,
    holders: Vec<[u8; 8]>,
    copies_left: u32,
    custody: CustodyV1,
}

/// The CRC-32 the store frames and payload-file references use.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Encodes a metadata record.
pub fn encode_record(info: &RecordInfo) -> Result<Vec<u8>, RecordError> {
    let m = &info.meta;
    if m.routing.holders.len() > MAX_HOLDERS {
        return Err(RecordError::Invalid("too many holders"));
    }
    let body = MetaV1 {
        id: info.id.0,
        insertion: info.insertion,
        size: info.size,
        priority: m.priority as u8,
        destination: match m.destination {
            Destination::Node(h) => DestV1::Node(h.0),
            Destination::Group => DestV1::Group,
        },
        source: m.source.0,
        expires_at: m.expires_at,
        received_at: m.received_at,
        holders: m.routing.holders.iter().map(|h| h.0).collect(),
        copies_left: m.routing.copies_left,
        custody: match m.routing.custody {
            CustodyState::Carried => CustodyV1::Carried,
            CustodyState::Held => CustodyV1::Held,
            CustodyState::InTransit { to, since } => CustodyV1::InTransit { to: to.0, since },
            CustodyState::Delivered => CustodyV1::Delivered,
        },
    };
    let mut out = Vec::with_capacity(96 + 8 * body.holders.len());
    out.push(META_VERSION);
    let mut out =
        postcard::to_extend(&body, out).map_err(|e| RecordError::Malformed(e.to_string()))?;
    let c = crc(&out);
    out.extend_from_slice(&c.to_le_bytes());
    Ok(out)
}

/// Wraps arbitrary bytes as a metadata record body: version byte in front, a valid
/// CRC behind. For fuzzing and tests, to reach the body decoder past the checksum.
pub fn frame_record_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(META_VERSION);
    out.extend_from_slice(body);
    let c = crc(&out);
    out.extend_from_slice(&c.to_le_bytes());
    out
}

/// Decodes a metadata record (the fuzz target's entry point).
///
/// Checks, in order: length, version byte, CRC, postcard body, trailing bytes, field
/// rules. Never panics on any input.
pub fn decode_record(bytes: &[u8]) -> Result<RecordInfo, RecordError> {
    if bytes.len() < 5 {
        return Err(RecordError::Truncated(bytes.len()));
    }
    if bytes[0] != META_VERSION {
        return Err(RecordError::UnsupportedVersion(bytes[0]));
    }
    let (framed, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc(framed) != stored {
        return Err(RecordError::Checksum);
    }
    let (body, rest): (MetaV1, &[u8]) = postcard::take_from_bytes(&framed[1..])
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RecordError::TrailingBytes(rest.len()));
    }
    let priority = Priority::from_u8(body.priority).ok_or(RecordError::Invalid("priority"))?;
    if body.holders.len() > MAX_HOLDERS {
        return Err(RecordError::Invalid("too many holders"));
    }
    if body.insertion == 0 {
        return Err(RecordError::Invalid("insertion number zero"));
    }
    Ok(RecordInfo {
        id: BundleId(body.id),
        insertion: body.insertion,
        size: body.size,
        meta: BundleMeta {
            priority,
            destination: match body.destination {
                DestV1::Node(h) => Destination::Node(NodeHash(h)),
                DestV1::Group => Destination::Group,
            },
            source: NodeHash(body.source),
            expires_at: body.expires_at,
            received_at: body.received_at,
            routing: RoutingMeta {
                holders: body.holders.into_iter().map(NodeHash).collect(),
                copies_left: body.copies_left,
                custody: match body.custody {
                    CustodyV1::Carried => CustodyState::Carried,
                    CustodyV1::Held => CustodyState::Held,
                    CustodyV1::InTransit { to, since } => CustodyState::InTransit {
                        to: NodeHash(to),
                        since,
                    },
                    CustodyV1::Delivered => CustodyState::Delivered,
                },
            },
        },
    })
}

/// Length of the bundle blob frame around `n` bundle bytes.
pub fn blob_len(n: usize) -> usize {
    n + 5
}

/// Writes the bundle blob frame for `bytes` into `out` (which must be
/// [`blob_len`]`(bytes.len())` long).
pub(crate) fn write_blob_header(bytes: &[u8]) -> [u8; 5] {
    let c = crc(bytes).to_le_bytes();
    [BLOB_VERSION, c[0], c[1], c[2], c[3]]
}

/// Encodes a bundle blob.
pub fn encode_blob(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blob_len(bytes.len()));
    out.extend_from_slice(&write_blob_header(bytes));
    out.extend_from_slice(bytes);
    out
}

/// What a bundle blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob<'a> {
    /// The bundle bytes themselves (their CRC checked).
    Inline(&'a [u8]),
    /// A reference to a payload file: the CRC and length its bytes must have.
    File {
        /// CRC-32 of the bundle bytes.
        crc: u32,
        /// Length of the bundle bytes.
        len: u64,
    },
}

impl Blob<'_> {
    /// Length of the bundle bytes the blob stands for.
    pub fn bundle_len(&self) -> u64 {
        match self {
            Blob::Inline(b) => b.len() as u64,
            Blob::File { len, .. } => *len,
        }
    }
}

/// Encodes a blob that refers to a payload file holding `bytes`.
pub fn encode_file_blob(bytes: &[u8]) -> [u8; BLOB_FILE_LEN] {
    file_blob(crc(bytes), bytes.len() as u64)
}

/// Encodes a blob that refers to a payload file of `len` bytes whose CRC-32 is
/// `crc_of_bytes`.
pub fn file_blob(crc_of_bytes: u32, len: u64) -> [u8; BLOB_FILE_LEN] {
    let mut out = [0u8; BLOB_FILE_LEN];
    out[0] = BLOB_FILE_VERSION;
    out[1..5].copy_from_slice(&crc_of_bytes.to_le_bytes());
    out[5..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Whether `bytes` are what a file blob with `crc` and `len` stands for.
pub fn file_bytes_match(bytes: &[u8], crc_expected: u32, len: u64) -> bool {
    bytes.len() as u64 == len && crc(bytes) == crc_expected
}

/// Decodes a bundle blob: the bundle bytes it frames (their CRC checked), or the
/// payload-file reference it holds.
pub fn decode_blob(raw: &[u8]) -> Result<Blob<'_>, RecordError> {
    let Some((&version, rest)) = raw.split_first() else {
        return Err(RecordError::Truncated(0));
    };
    let Some((c, rest)) = rest.split_first_chunk::<4>() else {
        return Err(RecordError::Truncated(raw.len()));
    };
    let stored = u32::from_le_bytes(*c);
    match version {
        BLOB_VERSION => {
            if crc(rest) != stored {
                return Err(RecordError::Checksum);
            }
            Ok(Blob::Inline(rest))
        }
        BLOB_FILE_VERSION => {
            let Some((len, extra)) = rest.split_first_chunk::<8>() else {
                return Err(RecordError::Truncated(raw.len()));
            };
            if !extra.is_empty() {
                return Err(RecordError::TrailingBytes(extra.len()));
            }
            Ok(Blob::File {
                crc: stored,
                len: u64::from_le_bytes(*len),
            })
        }
        v => Err(RecordError::UnsupportedVersion(v)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct QuarantineV1 {
    id: Option<[u8; 32]>,
    reason: String,
    meta_len: u64,
    blob_len: u64,
}

/// A decoded quarantine entry, borrowing the raw bytes it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantined<'a> {
    pub id: Option<BundleId>,
    pub reason: String,
    pub meta_raw: &'a [u8],
    pub blob_raw: &'a [u8],
}

/// Truncates a reason to [`MAX_REASON_LEN`] bytes on a character boundary.
pub(crate) fn bound_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

pub(crate) fn encode_quarantine(
    id: Option<BundleId>,
    reason: &str,
    meta_raw: &[u8],
    blob_raw: &[u8],
) -> Result<Vec<u8>, RecordError> {
    let head = QuarantineV1 {
        id: id.map(|i| i.0),
        reason: reason.to_owned(),
        meta_len: meta_raw.len() as u64,
        blob_len: blob_raw.len() as u64,
    };
    let mut out = Vec::with_capacity(64 + reason.len() + meta_raw.len() + blob_raw.len());
    out.push(QUARANTINE_VERSION);
    let mut out =
        postcard::to_extend(&head, out).map_err(|e| RecordError::Malformed(e.to_string()))?;
    out.extend_from_slice(meta_raw);
    out.extend_from_slice(blob_raw);
    Ok(out)
}

pub(crate) fn decode_quarantine(raw: &[u8]) -> Result<Quarantined<'_>, RecordError> {
    let (&version, body) = raw.split_first().ok_or(RecordError::Truncated(0))?;
    if version != QUARANTINE_VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    let (head, rest): (QuarantineV1, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| RecordError::Malformed(e.to_string()))?;
    let meta_len = usize::try_from(head.meta_len).map_err(|_| RecordError::Invalid("meta_len"))?;
    let blob_len = usize::try_from(head.blob_len).map_err(|_| RecordError::Invalid("blob_len"))?;
    if meta_len.checked_add(blob_len) != Some(rest.len()) {
        return Err(RecordError::Invalid("raw lengths"));
    }
    let (meta_raw, blob_raw) = rest.split_at(meta_len);
    Ok(Quarantined {
        id: head.id.map(BundleId),
        reason: head.reason,
        meta_raw,
        blob_raw,
    })
}

// ---- keys ----

/// Key of the metadata, blob and quarantine tables: the insertion number, big-endian.
pub(crate) fn slot_key(slot: u64) -> [u8; 8] {
    slot.to_be_bytes()
}

pub(crate) fn read_u64(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

/// Priority index key: `255 − priority`, insertion number (big-endian).
pub(crate) fn prio_key(inv_priority: u8, slot: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = inv_priority;
    k[1..].copy_from_slice(&slot.to_be_bytes());
    k
}

pub(crate) fn inv_priority(p: Priority) -> u8 {
    255 - p as u8
}

/// Destination part of a destination index key: kind byte and node hash.
pub(crate) fn dest_prefix(d: &Destination) -> [u8; 9] {
    let mut k = [0u8; 9];
    match d {
        Destination::Node(h) => k[1..].copy_from_slice(&h.0),
        Destination::Group => k[0] = 1,
    }
    k
}

/// Destination index key: destination prefix, insertion number (big-endian).
pub(crate) fn dest_key(d: &Destination, slot: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&dest_prefix(d));
    k[9..].copy_from_slice(&slot.to_be_bytes());
    k
}

/// Expiry index key: `expires_at`, insertion number (both big-endian).
pub(crate) fn expiry_key(expires_at: u64, slot: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&expires_at.to_be_bytes());
    k[8..].copy_from_slice(&slot.to_be_bytes());
    k
}

/// Seen-expiry index key: seen time (big-endian), bundle id.
pub(crate) fn seen_key(time: u64, id: &BundleId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&time.to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
}

/// Value of the id table: seen time and insertion number (0: not stored), big-endian.
pub(crate) fn id_value(seen_time: u64, slot: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&seen_time.to_be_bytes());
    v[8..].copy_from_slice(&slot.to_be_bytes());
    v
}

pub(crate) fn parse_id_value(v: &[u8]) -> Option<(u64, u64)> {
    if v.len() != 16 {
        return None;
    }
    Some((read_u64(v)?, read_u64(&v[8..])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info_strategy() -> impl Strategy<Value = RecordInfo> {
        let custody = prop_oneof![
            Just(CustodyState::Carried),
            Just(CustodyState::Held),
            Just(CustodyState::Delivered),
            (any::<[u8; 8]>(), any::<u64>()).prop_map(|(to, since)| CustodyState::InTransit {
                to: NodeHash(to),
                since
            }),
        ];
        let prio = prop_oneof![
            Just(Priority::Bulk),
            Just(Priority::Normal),
            Just(Priority::Expedited)
        ];
        let dest = prop_oneof![
            Just(Destination::Group),
            any::<[u8; 8]>().prop_map(|h| Destination::Node(NodeHash(h)))
        ];
        (
            any::<[u8; 32]>(),
            1..u64::MAX,
            any::<u64>(),
            prio,
            dest,
            any::<[u8; 8]>(),
            any::<Option<u64>>(),
            any::<u64>(),
            proptest::collection::vec(any::<[u8; 8]>(), 0..=MAX_HOLDERS),
            any::<u32>(),
            custody,
        )
            .prop_map(
                |(id, insertion, size, priority, destination, source, exp, recv, h, c, cu)| {
                    RecordInfo {
                        id: BundleId(id),
                        insertion,
                        size,
                        meta: BundleMeta {
                            priority,
                            destination,
                            source: NodeHash(source),
                            expires_at: exp,
                            received_at: recv,
                            routing: RoutingMeta {
                                holders: h.into_iter().map(NodeHash).collect(),
                                copies_left: c,
                                custody: cu,
                            },
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trips(info in info_strategy()) {
            let enc = encode_record(&info).unwrap();
            prop_assert_eq!(decode_record(&enc).unwrap(), info);
        }

        #[test]
        fn any_single_byte_change_is_detected(info in info_strategy(), pos in any::<usize>(), x in 1..=255u8) {
            let mut enc = encode_record(&info).unwrap();
            let i = pos % enc.len();
            enc[i] ^= x;
            prop_assert!(decode_record(&enc).is_err());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&bytes);
            let _ = decode_blob(&bytes);
            let _ = decode_quarantine(&bytes);
            // Also with a valid version byte and CRC, so the body parser is reached.
            if let Ok(info) = decode_record(&frame_record_body(&bytes)) {
                prop_assert!(info.meta.routing.holders.len() <= MAX_HOLDERS);
                // Whatever decodes re-encodes to a record that decodes the same.
                let again = encode_record(&info).unwrap();
                prop_assert_eq!(decode_record(&again).unwrap(), info);
            }
        }

        #[test]
        fn blob_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let enc = encode_blob(&bytes);
            prop_assert_eq!(enc.len(), blob_len(bytes.len()));
            prop_assert_eq!(decode_blob(&enc).unwrap(), Blob::Inline(&bytes[..]));
            // The same bytes kept in a payload file: the blob carries their CRC and
            // length, and any other bytes do not match it.
            let file = encode_file_blob(&bytes);
            let Blob::File { crc, len } = decode_blob(&file).unwrap() else {
                panic!("a file blob decodes as a file blob");
            };
            prop_assert!(file_bytes_match(&bytes, crc, len));
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(!file_bytes_match(&longer, crc, len));
            let mut changed = bytes.clone();
            if let Some(b) = changed.first_mut() {
                *b ^= 1;
                prop_assert!(!file_bytes_match(&changed, crc, len));
            }
        }

        #[test]
        fn file_blobs_of_the_wrong_length_are_refused(raw in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut blob = vec![BLOB_FILE_VERSION];
            blob.extend_from_slice(&raw);
            prop_assert_eq!(decode_blob(&blob).is_ok(), blob.len() == BLOB_FILE_LEN);
        }

        #[test]
        fn quarantine_round_trips(id in any::<Option<[u8; 32]>>(), reason in ".{0,40}",
                                  m in proptest::collection::vec(any::<u8>(), 0..64),
                                  b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let enc = encode_quarantine(id.map(BundleId), &reason, &m, &b).unwrap();
            let q = decode_quarantine(&enc).unwrap();
            prop_assert_eq!(q.id, id.map(BundleId));
            prop_assert_eq!(q.reason, reason);
            prop_assert_eq!(q.meta_raw, &m[..]);
            prop_assert_eq!(q.blob_raw, &b[..]);
        }
    }

    #[test]
    fn decode_errors_are_typed() {
        assert_eq!(decode_record(&[]), Err(RecordError::Truncated(0)));
        assert_eq!(
            decode_record(&[9, 0, 0, 0, 0]),
            Err(RecordError::UnsupportedVersion(9))
        );
        assert_eq!(
            decode_record(&[META_VERSION, 0, 0, 0, 0]),
            Err(RecordError::Checksum)
        );
        assert_eq!(decode_blob(&[1, 2]), Err(RecordError::Truncated(2)));
        let mut b = encode_blob(b"hello");
        b[6] ^= 1;
        assert_eq!(decode_blob(&b), Err(RecordError::Checksum));
        // A valid frame around trailing bytes.
        let info = RecordInfo {
            id: BundleId([1; 32]),
            insertion: 1,
            size: 3,
            meta: BundleMeta {
                priority: Priority::Normal,
                destination: Destination::Group,
                source: NodeHash([2; 8]),
                expires_at: None,
                received_at: 0,
                routing: RoutingMeta::default(),
            },
        };
        let enc = encode_record(&info).unwrap();
        let mut extra = enc[..enc.len() - 4].to_vec();
        extra.push(0);
        let c = crc(&extra);
        extra.extend_from_slice(&c.to_le_bytes());
        assert_eq!(decode_record(&extra), Err(RecordError::TrailingBytes(1)));
        // Unknown priority under a valid CRC.
        let mut bad = enc[..enc.len() - 4].to_vec();
        let prio_at = 1 + 32 + 1 + 1; // version, id, insertion varint (1), size varint (1)
        bad[prio_at] = 7;
        let c = crc(&bad);
        bad.extend_from_slice(&c.to_le_bytes());
        assert_eq!(decode_record(&bad), Err(RecordError::Invalid("priority")));
    }

    #[test]
    fn keys_order_as_documented() {
        // Highest priority first, then oldest insertion.
        let mut keys = [
            prio_key(inv_priority(Priority::Bulk), 1),
            prio_key(inv_priority(Priority::Expedited), 9),
            prio_key(inv_priority(Priority::Normal), 3),
            prio_key(inv_priority(Priority::Expedited), 2),
        ];
        keys.sort();
        assert_eq!(keys[0], prio_key(inv_priority(Priority::Expedited), 2));
        assert_eq!(keys[1], prio_key(inv_priority(Priority::Expedited), 9));
        assert_eq!(keys[3], prio_key(inv_priority(Priority::Bulk), 1));
        assert!(expiry_key(1, u64::MAX) < expiry_key(2, 0));
        assert!(seen_key(1, &BundleId([255; 32])) < seen_key(2, &BundleId([0; 32])));
        assert_eq!(parse_id_value(&id_value(7, 9)), Some((7, 9)));
        assert_eq!(parse_id_value(&[0; 15]), None);
        assert_ne!(
            dest_prefix(&Destination::Group),
            dest_prefix(&Destination::Node(NodeHash([0; 8])))
        );
    }
}
