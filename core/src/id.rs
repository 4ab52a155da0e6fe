//! Node ids, node hashes and bundle ids, with their printable forms.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use blake3::hazmat::{hash_derive_key_context, ContextKey, HasherExt};

use data_encoding::{Encoding, BASE32_NOPAD, HEXLOWER};
use serde::{Deserialize, Serialize};

/// Length of a node hash on the wire (see `docs/wire-format.md`).
pub const NODE_HASH_LEN: usize = 8;

/// Number of characters of the short printable node id (50 bits).
pub const SHORT_ID_CHARS: usize = 10;

/// BLAKE3's derive-key contexts of node hashes and bundle ids, each hashed once per
/// process instead of once per id (a compression per call: node hashes and bundle
/// ids are computed for every bundle that arrives).
static NODE_HASH_CONTEXT: LazyLock<ContextKey> =
    LazyLock::new(|| hash_derive_key_context("ferry v1 node hash"));
static BUNDLE_ID_CONTEXT: LazyLock<ContextKey> =
    LazyLock::new(|| hash_derive_key_context("ferry v1 bundle id"));

fn b32() -> Encoding {
    BASE32_NOPAD
}

/// Error parsing a printed id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdParseError {
    /// Not valid base32 (RFC 4648 alphabet, case-insensitive, no padding) or hex.
    #[error("not a node id: expected 52 base32 characters or 64 hex digits")]
    Encoding,
    /// Decoded to the wrong number of bytes.
    #[error("node id has {0} bytes, expected 32")]
    Length(usize),
    /// 32 bytes, but not a valid Ed25519 public key.
    #[error("node id is not a valid Ed25519 public key")]
    NotAKey,
}

/// A node's id: its Ed25519 public key.
///
/// Printed as 52 lowercase base32 characters; [`NodeId::short`] gives the first
/// ten characters for logs and tables.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub(crate) [u8; 32]);

impl NodeId {
    /// The raw 32 bytes (the Ed25519 public key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a node id from 32 bytes, checking that they are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, IdParseError> {
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| IdParseError::NotAKey)?;
        Ok(Self(bytes))
    }

    /// The 8-byte hash that names this node as a bundle destination.
    pub fn hash(&self) -> NodeHash {
        let h = blake3::Hasher::new_from_context_key(&NODE_HASH_CONTEXT)
            .update(&self.0)
            .finalize();
        let mut out = [0u8; NODE_HASH_LEN];
        out.copy_from_slice(&h.as_bytes()[..NODE_HASH_LEN]);
        NodeHash(out)
    }

    /// Short printable form (first ten base32 characters) for humans and logs.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_CHARS);
        s
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b32().encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            HEXLOWER
                .decode(s.to_ascii_lowercase().as_bytes())
                .map_err(|_| IdParseError::Encoding)?
        } else {
            b32()
                .decode(s.to_ascii_uppercase().as_bytes())
                .map_err(|_| IdParseError::Encoding)?
        };
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdParseError::Length(bytes.len()))?;
        Self::from_bytes(arr)
    }
}

/// The 8-byte destination hash of a node (`BLAKE3-derive("ferry v1 node hash", id)[..8]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeHash(pub [u8; NODE_HASH_LEN]);

impl fmt::Display for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeHash({self})")
    }
}

/// A bundle's id: `BLAKE3-derive("ferry v1 bundle id", signed bytes)`.
///
/// Deduplication, receipts and custody all key on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BundleId(pub [u8; 32]);

impl BundleId {
    /// Computes the id of a bundle from its signed bytes.
    pub fn of_signed_bytes(signed: &[u8]) -> Self {
        let h = blake3::Hasher::new_from_context_key(&BUNDLE_ID_CONTEXT)
            .update(signed)
            .finalize();
        Self(*h.as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// First 12 hex digits, for humans.
    pub fn short(&self) -> String {
        HEXLOWER.encode(&self.0[..6])
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({})", self.short())
    }
}

impl FromStr for BundleId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = HEXLOWER
            .decode(s.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| IdParseError::Encoding)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdParseError::Length(bytes.len()))?;
        Ok(Self(arr))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_blake3_derived_keys_of_their_contexts() {
        let node = super::NodeId([9; 32]);
        let full = blake3::derive_key("ferry v1 node hash", &node.0);
        assert_eq!(node.hash().0, full[..super::NODE_HASH_LEN]);
        let signed = b"signed bytes of a bundle";
        assert_eq!(
            super::BundleId::of_signed_bytes(signed).0,
            blake3::derive_key("ferry v1 bundle id", signed)
        );
    }

    use super::*;
    use crate::Identity;

    #[test]
    fn node_id_prints_and_parses() {
        let id = Identity::from_seed([7u8; 32]).node_id();
        let s = id.to_string();
        assert_eq!(s.len(), 52);
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<NodeId>().unwrap(), id);
        let hex = HEXLOWER.encode(id.as_bytes());
        assert_eq!(hex.parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short().len(), SHORT_ID_CHARS);
        assert!(s.starts_with(&id.short()));
    }

    #[test]
    fn bad_node_ids_are_typed_errors() {
        assert_eq!("".parse::<NodeId>(), Err(IdParseError::Length(0)));
        assert_eq!("!!".parse::<NodeId>(), Err(IdParseError::Encoding));
        assert_eq!(
            "aaaa".parse::<NodeId>().unwrap_err(),
            IdParseError::Length(2)
        );
    }
}
