//! Node identities: one Ed25519 secret from which the X25519 key is derived.
//!
//! The X25519 key-agreement key is the birational (Montgomery) image of the Ed25519
//! key, as libsodium's `crypto_sign_ed25519_*_to_curve25519` and age's ssh-ed25519
//! recipients do. Why: in a delay-tolerant network there is no round trip to fetch a
//! separate encryption key, so a sender that knows only a node id (the Ed25519 public
//! key) must be able to encrypt to it. Using one key pair for both Ed25519 signatures
//! and X25519 key agreement is proven safe when, as here, the two uses are domain
//! separated (Thormarker, "On using the same key pair for Ed25519 and an X25519 based
//! KEM", 2021). See `docs/threat-model.md`.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::id::NodeId;

/// First line of an identity key file.
pub const KEY_FILE_MAGIC: &str = "ferry-identity-v1";

/// Error reading an identity key file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The first line is not `ferry-identity-v1`.
    #[error("not a ferry identity file (first line must be `{KEY_FILE_MAGIC}`)")]
    Magic,
    /// The secret line is missing or not 52 base32 characters.
    #[error("identity file is damaged: the secret must be 52 base32 characters")]
    Secret,
}

/// A node's secret identity.
pub struct Identity {
    signing: SigningKey,
    x_secret: StaticSecret,
    node_id: NodeId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self::from_seed(self.signing.to_bytes())
    }
}

impl Identity {
    /// Generates a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(*seed)
    }

    /// Builds the identity from its 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        // The X25519 scalar is the Ed25519 expanded secret's scalar half; x25519
        // clamps it exactly as Ed25519 does, so its public key is the Montgomery
        // form of the Ed25519 public key.
        let x_secret = StaticSecret::from(*Zeroizing::new(signing.to_scalar_bytes()));
        let node_id = NodeId(signing.verifying_key().to_bytes());
        Self {
            signing,
            x_secret,
            node_id,
        }
    }

    /// The 32-byte Ed25519 seed. Secret: for building this node's TLS certificate
    /// (the QUIC link proves the node id with it) and for key files only.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// This node's id (Ed25519 public key).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Signs a message with the Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// A symmetric key only this node and `peer` can compute (X25519 between their
    /// keys), bound to `context` (e.g. a realm-derived value and a purpose): links use
    /// it to authenticate frames between two neighbours. `None` if `peer` is not a
    /// valid key. Costs one X25519 operation; callers keep the result.
    pub fn link_key(&self, peer: &NodeId, context: &[u8]) -> Option<[u8; 32]> {
        let peer_x = crate::identity::x25519_public_of(peer)?;
        let shared = self.agree(&peer_x);
        let (lo, hi) = if self.node_id < *peer {
            (self.node_id, *peer)
        } else {
            (*peer, self.node_id)
        };
        let mut h = blake3::Hasher::new_derive_key("ferry v1 link pair key");
        h.update(shared.as_ref());
        h.update(lo.as_bytes());
        h.update(hi.as_bytes());
        h.update(context);
        Some(*h.finalize().as_bytes())
    }

    /// X25519 agreement with a peer's X25519 public key.
    pub(crate) fn agree(&self, peer: &XPublic) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.x_secret.diffie_hellman(peer).to_bytes())
    }

    /// The text of a key file holding this identity. Write it with mode 0600.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        let enc = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(seed.as_ref()));
        Zeroizing::new(format!(
            "{KEY_FILE_MAGIC}\n{}\n",
            enc.to_ascii_lowercase().as_str()
        ))
    }

    /// Parses the text of a key file.
    pub fn from_key_file(text: &str) -> Result<Self, KeyFileError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(KEY_FILE_MAGIC) {
            return Err(KeyFileError::Magic);
        }
        let secret = lines.next().ok_or(KeyFileError::Secret)?.trim();
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(secret.to_ascii_uppercase().as_bytes())
                .map_err(|_| KeyFileError::Secret)?,
        );
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyFileError::Secret)?;
        Ok(Self::from_seed(seed))
    }
}

/// The X25519 public key of a node id (Montgomery form of its Ed25519 key).
pub(crate) fn x25519_public_of(id: &NodeId) -> Option<XPublic> {
    let vk = VerifyingKey::from_bytes(id.as_bytes()).ok()?;
    Some(XPublic::from(vk.to_montgomery().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keys_are_shared_by_the_pair_only() {
        let (a, b, c) = (
            Identity::from_seed([1u8; 32]),
            Identity::from_seed([2u8; 32]),
            Identity::from_seed([3u8; 32]),
        );
        let ab = a.link_key(&b.node_id(), b"ctx").unwrap();
        assert_eq!(ab, b.link_key(&a.node_id(), b"ctx").unwrap());
        assert_ne!(ab, a.link_key(&b.node_id(), b"other").unwrap());
        assert_ne!(ab, c.link_key(&b.node_id(), b"ctx").unwrap());
        assert_ne!(ab, a.link_key(&c.node_id(), b"ctx").unwrap());
    }

    #[test]
    fn derived_x25519_matches_montgomery_of_node_id() {
        let a = Identity::from_seed([1u8; 32]);
        let b = Identity::from_seed([2u8; 32]);
        let ab = a.agree(&x25519_public_of(&b.node_id()).unwrap());
        let ba = b.agree(&x25519_public_of(&a.node_id()).unwrap());
        assert_eq!(*ab, *ba);
        assert_ne!(*ab, [0u8; 32]);
    }

    #[test]
    fn key_file_round_trip_and_errors() {
        let a = Identity::from_seed([9u8; 32]);
        let text = a.to_key_file();
        let b = Identity::from_key_file(&text).unwrap();
        assert_eq!(a.node_id(), b.node_id());
        assert_eq!(
            Identity::from_key_file("hello\n").unwrap_err(),
            KeyFileError::Magic
        );
        assert_eq!(
            Identity::from_key_file("ferry-identity-v1\nabc\n").unwrap_err(),
            KeyFileError::Secret
        );
        assert_eq!(
            Identity::from_key_file("ferry-identity-v1\n").unwrap_err(),
            KeyFileError::Secret
        );
    }
}
