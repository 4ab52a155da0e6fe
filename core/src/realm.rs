//! Realms: independent deployments that never recognise each other's bundles.
//!
//! A realm is a name (its id) plus a 32-byte secret shared by its members. From them
//! come the 4-byte realm tag every bundle carries (a keyed hash, so outsiders cannot
//! tell which realm a bundle belongs to) and the realm group key that encrypts
//! realm-wide bundles.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Length of the realm tag on the wire.
pub const REALM_TAG_LEN: usize = 4;
/// Longest realm name.
pub const MAX_REALM_NAME: usize = 64;

/// A realm's 4-byte tag, as carried in every bundle header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RealmTag(pub [u8; REALM_TAG_LEN]);

impl fmt::Debug for RealmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RealmTag({})", data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Display for RealmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// Error building a realm from user input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RealmError {
    /// Realm names are 1 to 64 characters of `[A-Za-z0-9._-]`.
    #[error("realm name must be 1 to {MAX_REALM_NAME} characters of A-Z a-z 0-9 . _ -")]
    Name,
    /// The secret is not 52 base32 characters (32 bytes).
    #[error("realm secret must be 52 base32 characters (32 bytes)")]
    Secret,
    /// A realm string is `NAME:SECRET`.
    #[error("expected NAME:SECRET")]
    Format,
}

/// A realm: its name and shared secret.
#[derive(Clone)]
pub struct Realm {
    name: String,
    secret: Zeroizing<[u8; 32]>,
    tag: RealmTag,
    group_key: Zeroizing<[u8; 32]>,
    link_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Realm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Realm")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REALM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Realm {
    /// Builds a realm from its name and secret.
    pub fn new(name: &str, secret: [u8; 32]) -> Result<Self, RealmError> {
        if !valid_name(name) {
            return Err(RealmError::Name);
        }
        let mut material = Zeroizing::new(Vec::with_capacity(32 + name.len()));
        material.extend_from_slice(&secret);
        material.extend_from_slice(name.as_bytes());
        let tag_full = blake3::derive_key("ferry v1 realm tag", &material);
        let mut tag = [0u8; REALM_TAG_LEN];
        tag.copy_from_slice(&tag_full[..REALM_TAG_LEN]);
        let group_key = Zeroizing::new(blake3::derive_key("ferry v1 realm group key", &material));
        let link_key = Zeroizing::new(blake3::derive_key("ferry v1 realm link key", &material));
        Ok(Self {
            name: name.to_owned(),
            secret: Zeroizing::new(secret),
            tag: RealmTag(tag),
            group_key,
            link_key,
        })
    }

    /// A new realm with a random secret.
    pub fn generate<R: RngCore + CryptoRng>(name: &str, rng: &mut R) -> Result<Self, RealmError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        Self::new(name, *secret)
    }

    /// Parses `NAME:SECRET` (secret in base32, as [`Realm::to_share_string`] prints it).
    pub fn from_share_string(s: &str) -> Result<Self, RealmError> {
        let (name, secret) = s.trim().split_once(':').ok_or(RealmError::Format)?;
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(secret.to_ascii_uppercase().as_bytes())
                .map_err(|_| RealmError::Secret)?,
        );
        let secret: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| RealmError::Secret)?;
        Self::new(name, secret)
    }

    /// `NAME:SECRET`, the form a realm is shared in (keep it secret).
    pub fn to_share_string(&self) -> Zeroizing<String> {
        let enc = data_encoding::BASE32_NOPAD.encode(self.secret.as_ref());
        Zeroizing::new(format!("{}:{}", self.name, enc.to_ascii_lowercase()))
    }

    /// The realm's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag bundles of this realm carry.
    pub fn tag(&self) -> RealmTag {
        self.tag
    }

    /// Proof of realm membership bound to a link session: a keyed BLAKE3 hash, under
    /// the realm's link key, of `context` (e.g. a TLS exporter value and both node
    /// ids). Links exchange it after their handshake and refuse peers of other
    /// realms; the realm secret itself never leaves the node.
    pub fn link_proof(&self, context: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.link_key, context).as_bytes()
    }

    /// The key from which realm-wide bundle keys are derived.
    pub(crate) fn group_key(&self) -> &[u8; 32] {
        &self.group_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_by_name_and_secret() {
        let a = Realm::new("valley", [1; 32]).unwrap();
        let b = Realm::new("valley", [2; 32]).unwrap();
        let c = Realm::new("valley2", [1; 32]).unwrap();
        assert_ne!(a.tag(), b.tag());
        assert_ne!(a.tag(), c.tag());
        assert_ne!(a.group_key(), b.group_key());
        assert_ne!(a.link_proof(b"ctx"), b.link_proof(b"ctx"));
        assert_ne!(a.link_proof(b"ctx"), a.link_proof(b"ctx2"));
        assert_ne!(&a.link_proof(b"ctx")[..], &a.group_key()[..]);
        assert_eq!(a.tag(), Realm::new("valley", [1; 32]).unwrap().tag());
    }

    #[test]
    fn share_string_round_trip_and_errors() {
        let a = Realm::new("valley", [3; 32]).unwrap();
        let b = Realm::from_share_string(&a.to_share_string()).unwrap();
        assert_eq!(a.tag(), b.tag());
        assert_eq!(Realm::new("", [0; 32]).unwrap_err(), RealmError::Name);
        assert_eq!(Realm::new("a b", [0; 32]).unwrap_err(), RealmError::Name);
        assert_eq!(
            Realm::from_share_string("novalue").unwrap_err(),
            RealmError::Format
        );
        assert_eq!(
            Realm::from_share_string("x:abc").unwrap_err(),
            RealmError::Secret
        );
    }
}
