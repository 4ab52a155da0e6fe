//! The pack layout (pure functions, no I/O). See `docs/sneakernet.md`.
//!
//! ```text
//! "FPK1" | body 0 | body 1 | ... | index | index_len u32 LE | check [8] | "FPK1"
//! index = count varint | count × { id [32] | len varint | copies varint | expires varint }
//! h     = BLAKE3(index | index_len u32 LE);  check = h[0..8];  name = hex(h[8..16])
//! ```

use std::path::Path;

use ferry_core::codec::{put_varint, Reader};

use crate::error::PackError;
use crate::DriveLimits;

/// The magic at both ends of a pack file.
pub const PACK_MAGIC: [u8; 4] = *b"FPK1";
/// Bytes before the first body: the head magic.
pub const HEAD_LEN: u64 = 4;
/// Bytes of the trailer: index length (4), check (8), tail magic (4).
pub const TRAILER_LEN: u64 = 16;
/// Smallest index entry: id (32), one-byte length, copies and expiry.
pub(crate) const MIN_ENTRY_LEN: usize = 35;
/// Largest index entry: id (32), ten-byte length, five-byte copies, ten-byte expiry.
pub(crate) const MAX_ENTRY_LEN: u64 = 32 + 10 + 5 + 10;
/// Smallest pack file: magics, an empty index (one-byte count) and the trailer.
pub const MIN_PACK_LEN: u64 = HEAD_LEN + 1 + TRAILER_LEN;

/// One entry of a pack's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    /// Position in the pack (0-based).
    pub index: usize,
    /// The bundle id the writer claims (the importer checks it against the bytes).
    pub id: [u8; 32],
    /// Length of the body in bytes.
    pub len: u64,
    /// Copies (spray-and-wait tokens) handed over with this bundle.
    pub copies: u32,
    /// When the bundle expires (DTN seconds, as its signed header says), if the
    /// writer knew: a pack whose bundles have all expired may be deleted.
    pub expires: Option<u64>,
    /// Offset of the body in the file.
    pub offset: u64,
}

/// A pack's checked index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    /// The entries, in file order.
    pub entries: Vec<IndexEntry>,
    /// The pack's size when the index was read.
    pub file_size: u64,
    /// The name the index derives (`hex(h[8..16])`); equals the file's name for packs
    /// written by [`PackWriter`](crate::PackWriter).
    pub content_name: String,
}

impl PackIndex {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the body lengths.
    pub fn body_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.len).sum()
    }
}

/// Appends one index entry.
pub(crate) fn put_entry(
    out: &mut Vec<u8>,
    id: &[u8; 32],
    len: u64,
    copies: u32,
    expires: Option<u64>,
) {
    out.extend_from_slice(id);
    put_varint(out, len);
    put_varint(out, u64::from(copies));
    put_varint(out, expires.unwrap_or(0));
}

/// BLAKE3 over the index and its length.
pub(crate) fn index_hash(index: &[u8], index_len: u32) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(index);
    h.update(&index_len.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The pack name (16 lowercase hex chars) of an index hash.
pub(crate) fn name_of(hash: &[u8; 32]) -> String {
    hex(&hash[8..16])
}

/// The trailer for `index`.
pub(crate) fn trailer(index: &[u8], index_len: u32) -> ([u8; TRAILER_LEN as usize], String) {
    let h = index_hash(index, index_len);
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..4].copy_from_slice(&index_len.to_le_bytes());
    t[4..12].copy_from_slice(&h[..8]);
    t[12..].copy_from_slice(&PACK_MAGIC);
    (t, name_of(&h))
}

/// Largest index the limits allow.
pub(crate) fn max_index_len(limits: &DriveLimits) -> u64 {
    (limits.max_entries as u64)
        .saturating_mul(MAX_ENTRY_LEN)
        .saturating_add(10)
        .min(u64::from(u32::MAX))
}

/// Checks a file's size against the limits; returns it.
pub(crate) fn check_size(path: &Path, size: u64, limits: &DriveLimits) -> Result<(), PackError> {
    if size < MIN_PACK_LEN {
        return Err(PackError::Truncated {
            path: path.to_owned(),
            size,
        });
    }
    if size > limits.max_pack_bytes {
        return Err(PackError::TooLarge {
            path: path.to_owned(),
            size,
            limit: limits.max_pack_bytes,
        });
    }
    Ok(())
}

/// Parses the trailer; returns the index length and the check. `size` is already
/// checked with [`check_size`].
pub(crate) fn parse_trailer(
    path: &Path,
    trailer: &[u8; TRAILER_LEN as usize],
    size: u64,
    limits: &DriveLimits,
) -> Result<(u32, [u8; 8]), PackError> {
    if trailer[12..] != PACK_MAGIC {
        return Err(PackError::BadMagic {
            path: path.to_owned(),
            at: "end",
        });
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&trailer[..4]);
    let index_len = u32::from_le_bytes(len);
    let room = size - HEAD_LEN - TRAILER_LEN;
    if index_len == 0 || u64::from(index_len) > room {
        return Err(PackError::BadIndexLength {
            path: path.to_owned(),
            index_len,
            size,
        });
    }
    let limit = max_index_len(limits);
    if u64::from(index_len) > limit {
        return Err(PackError::IndexTooLarge {
            path: path.to_owned(),
            index_len,
            limit,
        });
    }
    let mut check = [0u8; 8];
    check.copy_from_slice(&trailer[4..12]);
    Ok((index_len, check))
}

/// Checks and parses the index bytes of a `size`-byte pack.
pub(crate) fn parse_index(
    path: &Path,
    index: &[u8],
    check: &[u8; 8],
    size: u64,
    limits: &DriveLimits,
) -> Result<PackIndex, PackError> {
    let index_len = u32::try_from(index.len()).map_err(|_| PackError::BadIndexLength {
        path: path.to_owned(),
        index_len: u32::MAX,
        size,
    })?;
    let h = index_hash(index, index_len);
    if h[..8] != check[..] {
        return Err(PackError::BadCheck {
            path: path.to_owned(),
        });
    }
    let bad = |reason| PackError::BadIndex {
        path: path.to_owned(),
        reason,
    };
    let mut r = Reader::new(index);
    // A count that cannot fit in the index bytes is refused before anything is
    // allocated; then the configured limit.
    let mut peek = Reader::new(index);
    let raw_count = peek.varint("pack entry count").map_err(bad)?;
    if raw_count > limits.max_entries as u64 {
        return Err(PackError::TooManyEntries {
            path: path.to_owned(),
            count: raw_count,
            limit: limits.max_entries,
        });
    }
    let count = r.count(MIN_ENTRY_LEN, "pack entry count").map_err(bad)?;
    let mut entries = Vec::with_capacity(count);
    let mut offset = HEAD_LEN;
    for i in 0..count {
        let id: [u8; 32] = r.array("entry id").map_err(bad)?;
        let len = r.varint("entry length").map_err(bad)?;
        if len > limits.max_body_bytes {
            return Err(PackError::EntryTooLarge {
                path: path.to_owned(),
                index: i,
                len,
                limit: limits.max_body_bytes,
            });
        }
        let copies = r.u32_varint("entry copies").map_err(bad)?;
        let expires = r.varint("entry expiry").map_err(bad)?;
        entries.push(IndexEntry {
            index: i,
            id,
            len,
            copies,
            expires: (expires != 0).then_some(expires),
            offset,
        });
        // Each len ≤ max_body_bytes and count ≤ max_entries: saturating is exact here
        // unless the limits are absurd, and then the size check below refuses it.
        offset = offset.saturating_add(len);
    }
    if r.remaining() != 0 {
        return Err(PackError::TrailingBytes {
            path: path.to_owned(),
            extra: r.remaining(),
        });
    }
    let expected = offset
        .saturating_add(u64::from(index_len))
        .saturating_add(TRAILER_LEN);
    if expected != size {
        return Err(PackError::SizeMismatch {
            path: path.to_owned(),
            expected,
            actual: size,
        });
    }
    Ok(PackIndex {
        entries,
        file_size: size,
        content_name: name_of(&h),
    })
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// `s` is exactly `n` lowercase hex chars.
pub(crate) fn is_lower_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses lowercase hex into `out` (lengths must match).
pub(crate) fn parse_hex(s: &str, out: &mut [u8]) -> bool {
    if !is_lower_hex(s, out.len() * 2) {
        return false;
    }
    let nib = |b: u8| {
        if b.is_ascii_digit() {
            b - b'0'
        } else {
            b - b'a' + 10
        }
    };
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = (nib(pair[0]) << 4) | nib(pair[1]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b = [0x00, 0x1f, 0xa0, 0xff];
        let s = hex(&b);
        assert_eq!(s, "001fa0ff");
        let mut out = [0u8; 4];
        assert!(parse_hex(&s, &mut out));
        assert_eq!(out, b);
        assert!(!parse_hex("001FA0FF", &mut out));
        assert!(!parse_hex("001fa0f", &mut out));
    }

    #[test]
    fn empty_index_parses() {
        let index = [0u8];
        let (t, name) = trailer(&index, 1);
        let size = HEAD_LEN + 1 + TRAILER_LEN;
        let limits = DriveLimits::default();
        let (len, check) = parse_trailer(Path::new("x"), &t, size, &limits).unwrap();
        assert_eq!(len, 1);
        let idx = parse_index(Path::new("x"), &index, &check, size, &limits).unwrap();
        assert!(idx.is_empty());
        assert_eq!(idx.content_name, name);
    }
}
