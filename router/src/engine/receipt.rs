//! Delivery receipts: the payload of a [`PayloadKind::Receipt`] bundle.
//!
//! A receipt is an ordinary bundle, sealed by the destination of the bundles it
//! lists, addressed to the realm group (so every relay of the realm can open it),
//! expedited. Its payload:
//!
//! ```text
//! receipt = version:u8(=1) n:varint(1..=MAX_RECEIPT_IDS) bundle_id:[32]*n   ; ids ascending
//! ```
//!
//! [`PayloadKind::Receipt`]: ferry_core::PayloadKind::Receipt

use ferry_core::BundleId;

use super::frame::{put_varint, Reader};

/// Receipt payload version.
pub const RECEIPT_VERSION: u8 = 1;
/// Most bundle ids one receipt lists.
pub const MAX_RECEIPT_IDS: usize = 64;

/// Why a receipt payload is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Truncated, wrong version, bad count, unsorted ids or trailing bytes.
    #[error("malformed receipt payload: {0}")]
    Malformed(&'static str),
}

/// Encodes a receipt listing `ids` (sorted and deduplicated here; at most
/// [`MAX_RECEIPT_IDS`], the caller splits longer lists).
pub fn encode_receipt(ids: &[BundleId]) -> Vec<u8> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(2 + 32 * ids.len());
    out.push(RECEIPT_VERSION);
    put_varint(&mut out, ids.len() as u64);
    for id in &ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes a receipt payload.
pub fn decode_receipt(bytes: &[u8]) -> Result<Vec<BundleId>, ReceiptError> {
    let bad = ReceiptError::Malformed;
    let mut r = Reader::new(bytes);
    if r.u8("version").map_err(|_| bad("empty"))? != RECEIPT_VERSION {
        return Err(bad("unknown version"));
    }
    let n = r.varint("count").map_err(|_| bad("count"))?;
    if n == 0 || n > MAX_RECEIPT_IDS as u64 {
        return Err(bad("count out of range"));
    }
    let mut ids: Vec<BundleId> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let id = BundleId(r.array("id").map_err(|_| bad("truncated"))?);
        if ids.last().is_some_and(|p| *p >= id) {
            return Err(bad("ids not ascending"));
        }
        ids.push(id);
    }
    if r.remaining() != 0 {
        return Err(bad("trailing bytes"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        let b = encode_receipt(&[BundleId([2; 32]), BundleId([1; 32]), BundleId([2; 32])]);
        assert_eq!(b.len(), 2 + 64);
        assert_eq!(b[..3], [1, 2, 1]);
        assert_eq!(
            decode_receipt(&b).unwrap(),
            vec![BundleId([1; 32]), BundleId([2; 32])]
        );
        assert!(decode_receipt(&[1, 0]).is_err());
        assert!(decode_receipt(&[2, 1]).is_err());
        assert!(decode_receipt(&[]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(decode_receipt(&extra).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(ids in prop::collection::btree_set(any::<[u8; 32]>(), 1..=MAX_RECEIPT_IDS)) {
            let ids: Vec<BundleId> = ids.into_iter().map(BundleId).collect();
            prop_assert_eq!(decode_receipt(&encode_receipt(&ids)).unwrap(), ids);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(ids) = decode_receipt(&bytes) {
                prop_assert_eq!(encode_receipt(&ids), bytes);
            }
        }
    }
}
