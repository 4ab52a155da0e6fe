//! The bundle: its types and its strict, bounded codec.
//!
//! Byte layout (version 2; `docs/wire-format.md` has the full description and a
//! worked example):
//!
//! ```text
//! bundle    = signed signature envelope
//! signed    = version:u8 header ciphertext            ; hashed into the bundle id
//! header    = flags:u8 realm_tag:[4] source:[32] dest? created? sequence:varint
//!             lifetime:varint hop_limit:u8 ephemeral_key?:[32]
//! dest      = node_hash:[8]                            ; only when flags say "node"
//! created   = u32 little-endian DTN seconds            ; only when flags say so
//! ciphertext= len:varint bytes                         ; ChaCha20-Poly1305, tag included
//! signature = [64]                                     ; Ed25519 over SIG_CONTEXT || id
//! envelope  = hop_count:u8 age:varint? crc8:u8         ; not signed; CRC-8 over itself
//! ```
//!
//! The bundle id is BLAKE3 (key derivation mode, context "ferry v1 bundle id") of
//! `signed`; the signature covers the id, not the bytes again, so a large bundle is
//! hashed once (BLAKE3) instead of three times more (SHA-512, twice to sign and once
//! to verify).
//!
//! Varints are postcard's (LEB128, canonical form required). Decoding is done in two
//! steps, as smoltcp's `Packet`/`Repr`: the bytes are checked and bounded, then an owned,
//! validated [`Bundle`] is built. Nothing here panics on any input.

use serde::{Deserialize, Serialize};

use crate::codec::{crc8, put_varint, varint_len, CodecError, Reader};
use crate::id::{BundleId, NodeHash, NodeId, NODE_HASH_LEN};
use crate::realm::{RealmTag, REALM_TAG_LEN};
use crate::time::DtnTime;

/// The only wire version this code reads and writes (1 signed the whole signed bytes;
/// 2 signs [`SIG_CONTEXT`] followed by the bundle id).
pub const VERSION: u8 = 2;
/// What an Ed25519 bundle signature covers, before the 32-byte bundle id (15 ASCII
/// bytes and a zero): no other message a node signs with its key (link hellos, LAN
/// beacons, TLS handshakes) starts with these bytes.
pub const SIG_CONTEXT: &[u8; 16] = b"ferry bundle v2\0";
/// Length of the message a bundle signature covers.
pub const SIG_MESSAGE_LEN: usize = 16 + 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the Poly1305 tag at the end of the ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
/// Longest service endpoint name (inside the ciphertext).
pub const MAX_ENDPOINT_LEN: usize = 64;
/// Default largest encoded bundle accepted by [`Bundle::decode`].
pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 128 * 1024 * 1024;
/// Default hop limit of new bundles.
pub const DEFAULT_HOP_LIMIT: u8 = 32;

const FLAG_PRIO_MASK: u8 = 0b0000_0011;
const FLAG_DEST_SHIFT: u8 = 2;
const FLAG_DEST_MASK: u8 = 0b0000_1100;
const FLAG_CREATED: u8 = 0b0001_0000;
const FLAG_EPHEMERAL: u8 = 0b0010_0000;
const FLAG_RESERVED: u8 = 0b1100_0000;

/// Bundle priority. Receipts and expedited bundles go first; bulk goes last.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[repr(u8)]
pub enum Priority {
    /// Background transfers.
    Bulk = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Urgent traffic.
    Expedited = 2,
}

/// The message a bundle signature covers: [`SIG_CONTEXT`] then the bundle id.
pub fn signature_message(id: &BundleId) -> [u8; SIG_MESSAGE_LEN] {
    let mut m = [0u8; SIG_MESSAGE_LEN];
    m[..SIG_CONTEXT.len()].copy_from_slice(SIG_CONTEXT);
    m[SIG_CONTEXT.len()..].copy_from_slice(id.as_bytes());
    m
}

impl Priority {
    /// From the two flag bits.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Bulk),
            1 => Some(Self::Normal),
            2 => Some(Self::Expedited),
            _ => None,
        }
    }

    /// Its name as written in configs and on the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bulk => "bulk",
            Self::Normal => "normal",
            Self::Expedited => "expedited",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bulk" => Ok(Self::Bulk),
            "normal" => Ok(Self::Normal),
            "expedited" => Ok(Self::Expedited),
            other => Err(format!(
                "unknown priority `{other}` (expected bulk, normal or expedited)"
            )),
        }
    }
}

/// Where a bundle goes, as relays see it. A service endpoint on a node travels
/// inside the ciphertext, so relays see only the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    /// One node, named by its 8-byte hash.
    Node(NodeHash),
    /// Every node of the bundle's realm (encrypted with the realm group key).
    Group,
}

/// What the payload is; carried inside the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum PayloadKind {
    /// Application data.
    AppData = 0,
    /// A discovery hint.
    Hint = 1,
    /// A service call.
    Call = 2,
    /// A reply to a call.
    Reply = 3,
    /// A hosting consent grant.
    Grant = 4,
    /// A revocation of a grant.
    Revocation = 5,
    /// A replication delta.
    Delta = 6,
    /// A delivery receipt.
    Receipt = 7,
    /// A node's manifest on a carried drive: the bundles it holds (never routed;
    /// see docs/sneakernet.md).
    Manifest = 8,
}

impl PayloadKind {
    /// From its code.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::AppData,
            1 => Self::Hint,
            2 => Self::Call,
            3 => Self::Reply,
            4 => Self::Grant,
            5 => Self::Revocation,
            6 => Self::Delta,
            7 => Self::Receipt,
            8 => Self::Manifest,
            _ => return None,
        })
    }
}

/// The signed, immutable header fields (everything before the ciphertext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Scheduling priority.
    pub priority: Priority,
    /// Destination as relays see it.
    pub destination: Destination,
    /// Realm tag: bundles of foreign realms are dropped on this alone.
    pub realm_tag: RealmTag,
    /// The source node (its Ed25519 key verifies the signature).
    pub source: NodeId,
    /// Creation time, if the source's clock was set.
    pub created: Option<DtnTime>,
    /// Per-source sequence number; never reused by a source.
    pub sequence: u64,
    /// Lifetime in seconds, from `created` or, without it, from the bundle's age.
    pub lifetime: u32,
    /// Largest number of hops the bundle may take.
    pub hop_limit: u8,
    /// Sender's ephemeral X25519 public key (per-bundle ephemeral mode).
    pub ephemeral_key: Option<[u8; 32]>,
}

/// The mutable routing envelope, not signed, protected against corruption by a CRC-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Hops taken so far.
    pub hop_count: u8,
    /// Seconds the bundle has existed, present iff the header has no creation time.
    pub age: Option<u64>,
}

/// Limits applied while decoding bytes from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded bundle accepted.
    pub max_bundle_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }
}

/// Why bytes are not a well-formed bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the configured maximum.
    #[error("bundle is {len} bytes, larger than the {max}-byte limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The bytes end before the named field.
    #[error("bundle is truncated (ends inside the {0})")]
    Truncated(&'static str),
    /// Unknown version byte.
    #[error("unsupported bundle version {0} (this node reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// A flag combination the format does not define.
    #[error("invalid header flags {0:#04x}")]
    BadFlags(u8),
    /// A varint that is malformed, overlong or out of range.
    #[error("malformed number in the {0}")]
    BadVarint(&'static str),
    /// A lifetime of zero.
    #[error("bundle lifetime is zero")]
    ZeroLifetime,
    /// Ciphertext shorter than the AEAD tag plus the kind byte.
    #[error("ciphertext too short")]
    CiphertextTooShort,
    /// The envelope's CRC-8 does not match.
    #[error("routing envelope checksum mismatch")]
    EnvelopeChecksum,
    /// Hop count above the hop limit.
    #[error("hop count {count} exceeds hop limit {limit}")]
    HopLimitExceeded {
        /// Hop count in the envelope.
        count: u8,
        /// Hop limit in the header.
        limit: u8,
    },
    /// Bytes after the end of the bundle.
    #[error("{0} unexpected bytes after the end of the bundle")]
    TrailingBytes(usize),
}

impl From<CodecError> for DecodeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated(w) => Self::Truncated(w),
            CodecError::BadVarint(w) | CodecError::TooMany(w) => Self::BadVarint(w),
        }
    }
}

/// A decoded bundle: the signed bytes and signature as received, their parsed
/// header, and the routing envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// `signed || signature`, exactly as the source produced them.
    bytes: Vec<u8>,
    /// End of the header (start of the ciphertext's length varint).
    header_end: usize,
    /// Start of the ciphertext.
    ct_start: usize,
    header: Header,
    envelope: Envelope,
    id: BundleId,
}

/// A bundle's layout, checked: what [`Bundle::decode`] finds before it takes the bytes.
struct Parsed {
    header: Header,
    header_end: usize,
    ct_start: usize,
    signed_end: usize,
    envelope: Envelope,
    id: BundleId,
}

impl Parsed {
    fn of(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        Self::with_id(bytes, limits, None)
    }

    /// [`Parsed::of`]; `id`, if given, is taken as the bundle's instead of being
    /// computed from the signed bytes.
    fn with_id(bytes: &[u8], limits: &Limits, id: Option<BundleId>) -> Result<Self, DecodeError> {
        if bytes.len() > limits.max_bundle_bytes {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: limits.max_bundle_bytes,
            });
        }
        let mut r = Reader::new(bytes);
        let header = Header::decode(&mut r)?;
        let header_end = r.pos();
        let ct_len = r.varint("ciphertext length")?;
        let ct_len = usize::try_from(ct_len).map_err(|_| DecodeError::Truncated("ciphertext"))?;
        if ct_len < AEAD_TAG_LEN + 1 {
            return Err(DecodeError::CiphertextTooShort);
        }
        let ct_start = r.pos();
        r.take(ct_len, "ciphertext")?;
        r.take(SIGNATURE_LEN, "signature")?;
        let signed_end = r.pos();
        let env_start = r.pos();
        let hop_count = r.u8("envelope")?;
        let age = if header.created.is_none() {
            Some(r.varint("bundle age")?)
        } else {
            None
        };
        let env_end = r.pos();
        let crc = r.u8("envelope checksum")?;
        if crc8(&bytes[env_start..env_end]) != crc {
            return Err(DecodeError::EnvelopeChecksum);
        }
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        if hop_count > header.hop_limit {
            return Err(DecodeError::HopLimitExceeded {
                count: hop_count,
                limit: header.hop_limit,
            });
        }
        let envelope = Envelope { hop_count, age };
        let id =
            id.unwrap_or_else(|| BundleId::of_signed_bytes(&bytes[..signed_end - SIGNATURE_LEN]));
        Ok(Self {
            header,
            header_end,
            ct_start,
            signed_end,
            envelope,
            id,
        })
    }

    /// The bundle, with `signed` (exactly the `signed_end` bytes parsed) as storage.
    fn into_bundle(self, signed: Vec<u8>) -> Bundle {
        debug_assert_eq!(signed.len(), self.signed_end);
        // Not `Bundle::from_parts`: the id may be a stored record's, taken on trust
        // ([`Bundle::decode_stored`]).
        Bundle {
            bytes: signed,
            header_end: self.header_end,
            ct_start: self.ct_start,
            header: self.header,
            envelope: self.envelope,
            id: self.id,
        }
    }
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("id", &self.id)
            .field("header", &self.header)
            .field("envelope", &self.envelope)
            .field("ciphertext_len", &self.ciphertext().len())
            .finish()
    }
}

impl Header {
    /// When the bundle expires, in DTN seconds (`None` without a creation time: its
    /// age decides).
    pub fn expires_at(&self) -> Option<u64> {
        self.created.map(|c| c.plus(u64::from(self.lifetime)))
    }

    fn flags(&self) -> u8 {
        let dest = match self.destination {
            Destination::Node(_) => 0u8,
            Destination::Group => 1u8,
        };
        let mut f = (self.priority as u8) | (dest << FLAG_DEST_SHIFT);
        if self.created.is_some() {
            f |= FLAG_CREATED;
        }
        if self.ephemeral_key.is_some() {
            f |= FLAG_EPHEMERAL;
        }
        f
    }

    /// Appends `version || header` to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(self.flags());
        out.extend_from_slice(&self.realm_tag.0);
        out.extend_from_slice(self.source.as_bytes());
        if let Destination::Node(h) = self.destination {
            out.extend_from_slice(&h.0);
        }
        if let Some(c) = self.created {
            out.extend_from_slice(&c.0.to_le_bytes());
        }
        put_varint(out, self.sequence);
        put_varint(out, u64::from(self.lifetime));
        out.push(self.hop_limit);
        if let Some(k) = &self.ephemeral_key {
            out.extend_from_slice(k);
        }
    }

    /// Length of `version || header`.
    pub fn encoded_len(&self) -> usize {
        2 + REALM_TAG_LEN
            + 32
            + if matches!(self.destination, Destination::Node(_)) {
                NODE_HASH_LEN
            } else {
                0
            }
            + if self.created.is_some() { 4 } else { 0 }
            + varint_len(self.sequence)
            + varint_len(u64::from(self.lifetime))
            + 1
            + if self.ephemeral_key.is_some() { 32 } else { 0 }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let flags = r.u8("flags")?;
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::BadFlags(flags));
        }
        let priority =
            Priority::from_u8(flags & FLAG_PRIO_MASK).ok_or(DecodeError::BadFlags(flags))?;
        let dest_kind = (flags & FLAG_DEST_MASK) >> FLAG_DEST_SHIFT;
        let ephemeral = flags & FLAG_EPHEMERAL != 0;
        let realm_tag = RealmTag(r.array("realm tag")?);
        let source = NodeId(r.array("source")?);
        let destination = match dest_kind {
            0 => Destination::Node(NodeHash(r.array("destination")?)),
            1 if !ephemeral => Destination::Group,
            _ => return Err(DecodeError::BadFlags(flags)),
        };
        let created = if flags & FLAG_CREATED != 0 {
            Some(DtnTime(u32::from_le_bytes(r.array("creation time")?)))
        } else {
            None
        };
        let sequence = r.varint("sequence number")?;
        let lifetime =
            u32::try_from(r.varint("lifetime")?).map_err(|_| DecodeError::BadVarint("lifetime"))?;
        if lifetime == 0 {
            return Err(DecodeError::ZeroLifetime);
        }
        let hop_limit = r.u8("hop limit")?;
        let ephemeral_key = if ephemeral {
            Some(r.array("ephemeral key")?)
        } else {
            None
        };
        Ok(Self {
            priority,
            destination,
            realm_tag,
            source,
            created,
            sequence,
            lifetime,
            hop_limit,
            ephemeral_key,
        })
    }
}

impl Envelope {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.hop_count);
        if let Some(age) = self.age {
            put_varint(out, age);
        }
        let crc = crc8(&out[start..]);
        out.push(crc);
    }

    fn encoded_len(&self) -> usize {
        2 + self.age.map_or(0, varint_len)
    }
}

impl Bundle {
    /// Assembles a bundle from its parts; used by sealing. `bytes` is
    /// `version || header || ct_len || ciphertext || signature`, and `id` the id of
    /// its signed bytes.
    pub(crate) fn from_parts(
        bytes: Vec<u8>,
        header: Header,
        header_end: usize,
        ct_start: usize,
        envelope: Envelope,
        id: BundleId,
    ) -> Self {
        debug_assert_eq!(
            id,
            BundleId::of_signed_bytes(&bytes[..bytes.len() - SIGNATURE_LEN]),
            "the id of other bytes"
        );
        Self {
            bytes,
            header_end,
            ct_start,
            header,
            envelope,
            id,
        }
    }

    /// Decodes and bounds-checks a bundle. No cryptography is done here: check the
    /// realm tag, then verify (see [`crate::Keyring::accept`]).
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let p = Parsed::of(bytes, limits)?;
        let signed = bytes[..p.signed_end].to_vec();
        Ok(p.into_bundle(signed))
    }

    /// [`Bundle::decode`] that keeps `bytes` as the bundle's storage instead of
    /// copying them (a 100 MiB bundle off a link is not copied again). On error the
    /// bytes are handed back with it.
    pub fn decode_vec(bytes: Vec<u8>, limits: &Limits) -> Result<Self, (DecodeError, Vec<u8>)> {
        Self::decode_owned(bytes, limits, None)
    }

    /// Decodes owned bytes in place; `id`, if given, is taken instead of computed.
    fn decode_owned(
        mut bytes: Vec<u8>,
        limits: &Limits,
        id: Option<BundleId>,
    ) -> Result<Self, (DecodeError, Vec<u8>)> {
        match Parsed::with_id(&bytes, limits, id) {
            Ok(p) => {
                bytes.truncate(p.signed_end);
                Ok(p.into_bundle(bytes))
            }
            Err(e) => Err((e, bytes)),
        }
    }

    /// [`Bundle::decode_vec`] for the bytes of a record this node stored itself,
    /// under the id it computed when the bundle arrived or was sealed: the layout
    /// is checked again, but the id is `id`, not a BLAKE3 pass over every byte
    /// again (on a 100 MiB payload read back for a local app, that pass is a
    /// quarter of the work).
    ///
    /// Only for bytes from this node's own store: the store's checksum guards
    /// them, and opening them ([`crate::Keyring::open_verified_in_place`])
    /// authenticates header and ciphertext under the bundle's key, so damaged bytes
    /// still fail to open. Not for [`crate::Keyring::open_head_verified`], whose
    /// cache trusts ids; never for bytes from a peer, an app or a drive.
    pub fn decode_stored(
        bytes: Vec<u8>,
        limits: &Limits,
        id: BundleId,
    ) -> Result<Self, (DecodeError, Vec<u8>)> {
        Self::decode_owned(bytes, limits, Some(id))
    }

    /// The full encoding: signed bytes, signature, envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.bytes);
        self.envelope.encode_into(&mut out);
        out
    }

    /// Appends the full encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        self.envelope.encode_into(out);
    }

    /// [`Bundle::encode`]'s output in two parts, without a copy: the bundle's
    /// storage (signed bytes and signature) and the envelope's encoding.
    pub fn encoded_parts(&self) -> (&[u8], Vec<u8>) {
        let mut envelope = Vec::with_capacity(self.envelope.encoded_len());
        self.envelope.encode_into(&mut envelope);
        (&self.bytes, envelope)
    }

    /// Length of [`Bundle::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len() + self.envelope.encoded_len()
    }

    /// The bundle id.
    pub fn id(&self) -> BundleId {
        self.id
    }

    /// The signed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The routing envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Records one more hop. Fails, leaving the bundle unchanged, at the hop limit.
    pub fn add_hop(&mut self) -> Result<(), DecodeError> {
        if self.envelope.hop_count >= self.header.hop_limit {
            return Err(DecodeError::HopLimitExceeded {
                count: self.envelope.hop_count.saturating_add(1),
                limit: self.header.hop_limit,
            });
        }
        self.envelope.hop_count += 1;
        Ok(())
    }

    /// Adds the seconds a node held the bundle to its age (bundles without a
    /// creation time only).
    pub fn add_age(&mut self, secs: u64) {
        if let Some(age) = &mut self.envelope.age {
            *age = age.saturating_add(secs);
        }
    }

    /// Bytes the id is the hash of, and so the signature covers:
    /// `version || header || ciphertext`.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }

    /// The message the Ed25519 signature is over: [`SIG_CONTEXT`] then the id.
    pub fn signature_message(&self) -> [u8; SIG_MESSAGE_LEN] {
        signature_message(&self.id)
    }

    /// `version || header`: the per-bundle key is derived from these bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.bytes[..self.header_end]
    }

    /// The bundle's storage (`signed || signature`) and where the ciphertext (tag
    /// included) lies in it: for decrypting in place.
    pub(crate) fn into_ciphertext_bytes(self) -> (Vec<u8>, std::ops::Range<usize>) {
        let end = self.bytes.len() - SIGNATURE_LEN;
        (self.bytes, self.ct_start..end)
    }

    /// The ciphertext (tag included).
    pub fn ciphertext(&self) -> &[u8] {
        &self.bytes[self.ct_start..self.bytes.len() - SIGNATURE_LEN]
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE_LEN..]);
        s
    }

    /// The DTN time at which the bundle expires, if it has a creation time.
    pub fn expires_at(&self) -> Option<u64> {
        self.header.expires_at()
    }

    /// The full encoding (as [`Bundle::encode`]) in the bundle's own buffer: the
    /// envelope is appended to it, nothing is copied.
    pub fn into_encoded(mut self) -> Vec<u8> {
        let envelope = self.envelope;
        envelope.encode_into(&mut self.bytes);
        self.bytes
    }

    /// Whether the bundle has expired at `now` (`None`: this node's clock is unset).
    /// A bundle without a creation time expires when its age reaches its lifetime;
    /// one with a creation time, when `now` passes it. With a creation time but no
    /// clock here, the caller must track how long it has held the bundle.
    pub fn is_expired(&self, now: Option<DtnTime>) -> bool {
        match (self.expires_at(), now, self.envelope.age) {
            (Some(exp), Some(now), _) => u64::from(now.0) >= exp,
            (None, _, Some(age)) => age >= u64::from(self.header.lifetime),
            _ => false,
        }
    }
}
