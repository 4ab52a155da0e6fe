//! The manifest payload: what a node that uses a drive holds of the drive's bundles.
//!
//! A manifest file (`nodes/<name>.fm`) is one Ferry bundle of kind `Manifest`, sealed
//! by the node to its realm group (signed, encrypted with the realm key: nodes of
//! other realms learn nothing from it). Its payload, defined here:
//!
//! ```text
//! version u8 (= 1) | count varint | count × id [32]   (ids ascending, no repeats)
//! ```
//!
//! ```
//! use ferry_cl_drive::manifest::{decode, encode};
//! let ids = vec![[1u8; 32], [2u8; 32]];
//! assert_eq!(decode(&encode(&ids)).unwrap(), ids);
//! ```

use ferry_core::codec::{put_varint, CodecError, Reader};

/// The payload version this code writes and reads.
pub const VERSION: u8 = 1;
/// Most ids one manifest lists (8 MiB of ids; a manifest file is at most 16 MiB).
pub const MAX_IDS: usize = 262_144;

/// Why a manifest payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A version this code does not know.
    #[error("manifest payload version {0} is not supported")]
    Version(u8),
    /// Malformed bytes (truncated, non-canonical varint, count past the end).
    #[error("malformed manifest payload: {0}")]
    Malformed(#[from] CodecError),
    /// More ids than [`MAX_IDS`].
    #[error("manifest lists {0} ids, more than {MAX_IDS}")]
    TooMany(usize),
    /// Bytes after the last id.
    #[error("{0} bytes after the manifest's last id")]
    Trailing(usize),
    /// Ids not strictly ascending.
    #[error("manifest ids are not in ascending order")]
    Unordered,
}

/// Encodes `ids` (sorted and deduplicated here; at most [`MAX_IDS`] are kept, the
/// smallest).
pub fn encode(ids: &[[u8; 32]]) -> Vec<u8> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(MAX_IDS);
    let mut out = Vec::with_capacity(1 + 5 + ids.len() * 32);
    out.push(VERSION);
    put_varint(&mut out, ids.len() as u64);
    for id in &ids {
        out.extend_from_slice(id);
    }
    out
}

/// Decodes a manifest payload.
pub fn decode(bytes: &[u8]) -> Result<Vec<[u8; 32]>, ManifestError> {
    let mut r = Reader::new(bytes);
    let v = r.u8("manifest version")?;
    if v != VERSION {
        return Err(ManifestError::Version(v));
    }
    let n = r.count(32, "manifest ids")?;
    if n > MAX_IDS {
        return Err(ManifestError::TooMany(n));
    }
    let mut ids: Vec<[u8; 32]> = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.array::<32>("manifest id")?;
        if ids.last().is_some_and(|last| *last >= id) {
            return Err(ManifestError::Unordered);
        }
        ids.push(id);
    }
    if r.remaining() != 0 {
        return Err(ManifestError::Trailing(r.remaining()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ids in prop::collection::vec(any::<[u8; 32]>(), 0..50)) {
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(decode(&encode(&ids)).unwrap(), want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_is_refused(ids in prop::collection::vec(any::<[u8; 32]>(), 1..8)) {
            let full = encode(&ids);
            for cut in 0..full.len() {
                prop_assert!(decode(&full[..cut]).is_err());
            }
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(decode(&[2, 0]), Err(ManifestError::Version(2)));
        assert_eq!(decode(&[1, 0, 9]), Err(ManifestError::Trailing(1)));
        let mut two = vec![1, 2];
        two.extend_from_slice(&[5; 32]);
        two.extend_from_slice(&[4; 32]);
        assert_eq!(decode(&two), Err(ManifestError::Unordered));
        assert!(matches!(decode(&[1, 5]), Err(ManifestError::Malformed(_))));
        assert!(matches!(decode(&[]), Err(ManifestError::Malformed(_))));
    }
}
