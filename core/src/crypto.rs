//! Sealing and opening bundles: X25519 key agreement, a BLAKE3 KDF, ChaCha20-Poly1305
//! and Ed25519.
//!
//! Three ways to key a bundle (see `docs/threat-model.md` for what each protects):
//!
//! * **pair** (default for a node destination): both nodes derive the same pair secret
//!   from one static-static X25519 agreement and cache it; each bundle's key is a keyed
//!   BLAKE3 hash of that secret over the bundle's signed header (which holds source,
//!   destination, creation time and the never-reused sequence number). No key material
//!   travels and no X25519 work is repeated between two nodes that have met before.
//! * **ephemeral** (asked for per bundle): a fresh X25519 key per bundle, its public half
//!   in the signed header (32 bytes); the sender's long-term key cannot later decrypt it.
//! * **group**: realm-wide bundles, keyed from the realm group key.
//!
//! Each per-bundle key is used for exactly one encryption, so the nonce is zero.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::bundle::{
    signature_message, Bundle, DecodeError, Destination, Envelope, Header, Limits, PayloadKind,
    Priority, AEAD_TAG_LEN, MAX_ENDPOINT_LEN, SIGNATURE_LEN, SIG_MESSAGE_LEN,
};
use crate::codec::{put_varint, varint_len, Reader};
use crate::id::{BundleId, NodeHash, NodeId};
use crate::identity::{x25519_public_of, Identity};
use crate::realm::{Realm, RealmTag};
use crate::time::DtnTime;

/// Default number of peers whose pair secrets are cached.
pub const DEFAULT_PAIR_CACHE: usize = 4096;

const KIND_ENDPOINT_FLAG: u8 = 0x80;
/// The plaintext prefix carries a [`Fragment`] descriptor after the endpoint.
const KIND_FRAGMENT_FLAG: u8 = 0x40;
const KIND_MASK: u8 = 0x0f;

/// Most fragments one payload is cut into.
pub const MAX_FRAGMENTS: u32 = 1 << 16;

/// Longest encoded [`Fragment`] descriptor: five varints.
const MAX_FRAGMENT_LEN: usize = 10 + 5 + 5 + 10 + 10;

/// One piece of a payload that travels as several bundles (proactive
/// fragmentation, as in RFC 9171 §5.8, but sealed inside the ciphertext: relays
/// see independent bundles and learn nothing of the message they belong to). Each
/// fragment is signed, encrypted and kept in custody on its own, so a transfer cut
/// by a contact's end loses one fragment, not the whole payload, and a node can
/// forward the first fragments while it still seals the others. The destination
/// delivers the payload once it holds every fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Names the message, with the source: the sequence number of its first
    /// fragment (sequence numbers are never reused).
    pub message: u64,
    /// This fragment's place, `0..count`.
    pub index: u32,
    /// Fragments in the message, `2..=MAX_FRAGMENTS`.
    pub count: u32,
    /// Where this fragment's bytes start in the whole payload.
    pub offset: u64,
    /// The whole payload's length.
    pub total: u64,
}

impl Fragment {
    /// Whether the descriptor is consistent for a fragment of `len` payload bytes:
    /// `2 ≤ count ≤ MAX_FRAGMENTS`, `index < count`, a non-empty piece that ends
    /// within the whole payload.
    pub fn fits(&self, len: usize) -> bool {
        (2..=MAX_FRAGMENTS).contains(&self.count)
            && self.index < self.count
            && len > 0
            && self
                .offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.total)
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.message);
        put_varint(out, u64::from(self.index));
        put_varint(out, u64::from(self.count));
        put_varint(out, self.offset);
        put_varint(out, self.total);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, OpenError> {
        let mut v = |what| r.varint(what).map_err(|_| OpenError::BadPlaintext);
        let message = v("fragment message")?;
        let index = u32::try_from(v("fragment index")?).map_err(|_| OpenError::BadPlaintext)?;
        let count = u32::try_from(v("fragment count")?).map_err(|_| OpenError::BadPlaintext)?;
        let offset = v("fragment offset")?;
        let total = v("fragment total")?;
        Ok(Self {
            message,
            index,
            count,
            offset,
            total,
        })
    }
}

/// Who can read a new bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// One node; its service endpoint (if any) is sealed inside the ciphertext.
    Node {
        /// The node.
        id: NodeId,
        /// Service endpoint name on that node (`None`: the default endpoint).
        endpoint: Option<String>,
    },
    /// Every node of the realm.
    Group {
        /// Service endpoint name (`None`: the default endpoint).
        endpoint: Option<String>,
    },
}

/// Everything needed to seal a bundle besides the payload.
#[derive(Debug, Clone)]
pub struct SealParams {
    /// Who can read it.
    pub recipient: Recipient,
    /// Name of one of this node's realms.
    pub realm: String,
    /// Creation time, if this node's clock is set.
    pub created: Option<DtnTime>,
    /// Never-reused sequence number (the caller persists the counter).
    pub sequence: u64,
    /// Lifetime in seconds.
    pub lifetime: u32,
    /// Priority.
    pub priority: Priority,
    /// Hop limit.
    pub hop_limit: u8,
    /// Payload kind (sealed inside).
    pub kind: PayloadKind,
    /// Use a fresh ephemeral X25519 key for this bundle (node recipients only).
    pub ephemeral: bool,
    /// The piece of a larger payload this bundle carries (sealed inside), if any.
    pub fragment: Option<Fragment>,
}

/// A bundle being sealed: header built, key derived, payload still to come (see
/// [`Keyring::plan_seal`]).
pub struct SealPlan {
    header: Header,
    /// Header, ciphertext length and the plaintext prefix (kind, endpoint).
    head: Vec<u8>,
    header_end: usize,
    ct_start: usize,
    payload_len: usize,
    total: usize,
    key: Zeroizing<[u8; 32]>,
    created_unset: bool,
}

impl SealPlan {
    /// Bytes that go before the payload in the buffer given to
    /// [`Keyring::seal_planned`].
    pub fn head_len(&self) -> usize {
        self.head.len()
    }

    /// Length of the payload planned for.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Most bytes the sealed bundle can take (its envelope included).
    pub fn total_len(&self) -> usize {
        self.total
    }
}

impl std::fmt::Debug for SealPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPlan")
            .field("head_len", &self.head.len())
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

/// Why a bundle could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// [`Keyring::seal_planned`] got another payload length than planned.
    #[error("payload of {got} bytes where {planned} were planned")]
    PlanMismatch {
        /// The planned payload length.
        planned: usize,
        /// What the buffer held.
        got: usize,
    },
    /// The realm is not one of this node's.
    #[error("this node is not in realm `{0}`")]
    UnknownRealm(String),
    /// The recipient id is not a valid key.
    #[error("recipient is not a valid node id")]
    BadRecipient,
    /// Endpoint names are 1 to 64 bytes of UTF-8.
    #[error("endpoint name must be 1 to {MAX_ENDPOINT_LEN} bytes")]
    BadEndpoint,
    /// Ephemeral keys are for node recipients only.
    #[error("ephemeral mode needs a node recipient")]
    EphemeralGroup,
    /// Zero lifetime.
    #[error("lifetime must be at least one second")]
    ZeroLifetime,
    /// The fragment descriptor does not fit the payload ([`Fragment::fits`]).
    #[error("fragment {index} of {count} does not fit a payload of {len} bytes")]
    BadFragment {
        /// The fragment's index.
        index: u32,
        /// Fragments in the message.
        count: u32,
        /// This fragment's payload length.
        len: usize,
    },
    /// Payload larger than the bundle limit.
    #[error("payload of {len} bytes makes a bundle over the {max}-byte limit")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// Why a bundle was refused by [`Keyring::accept`] or could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not one of this node's realms (checked before any signature work).
    #[error("bundle belongs to a foreign realm")]
    ForeignRealm,
    /// The bundle's lifetime is over.
    #[error("bundle has expired")]
    Expired,
    /// The signature does not verify (or the source is not a valid key).
    #[error("bundle signature does not verify")]
    BadSignature,
    /// Addressed to another node.
    #[error("bundle is addressed to another node")]
    NotForUs,
    /// Decryption failed: wrong key or altered ciphertext.
    #[error("bundle does not decrypt (wrong recipient or altered ciphertext)")]
    Decrypt,
    /// Decrypted, but the inner payload header is malformed.
    #[error("decrypted payload is malformed")]
    BadPlaintext,
}

/// An opened bundle's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Payload kind.
    pub kind: PayloadKind,
    /// Service endpoint (`None`: default).
    pub endpoint: Option<String>,
    /// The piece of a larger payload this is, if fragmented.
    pub fragment: Option<Fragment>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A bundle opened in its own buffer ([`Keyring::open_verified_in_place`]).
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedInPlace {
    /// Payload kind.
    pub kind: PayloadKind,
    /// Service endpoint (`None`: default).
    pub endpoint: Option<String>,
    /// The piece of a larger payload this is, if fragmented.
    pub fragment: Option<Fragment>,
    /// The bundle's buffer, its payload decrypted.
    pub bytes: Vec<u8>,
    /// Where the payload is in `bytes`.
    pub payload: std::ops::Range<usize>,
}

/// What [`Keyring::open_head_verified`] learns of a bundle addressed here without
/// decrypting its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedHead {
    /// Payload kind.
    pub kind: PayloadKind,
    /// Service endpoint (`None`: default).
    pub endpoint: Option<String>,
    /// The piece of a larger payload this is, if fragmented.
    pub fragment: Option<Fragment>,
    /// Length of the payload, in bytes.
    pub payload_len: usize,
}

/// Longest plaintext prefix: the kind byte, the endpoint's length varint (one byte,
/// as `MAX_ENDPOINT_LEN` < 128), the endpoint and a fragment descriptor.
const MAX_PREFIX_LEN: usize = 2 + MAX_ENDPOINT_LEN + MAX_FRAGMENT_LEN;

/// What a node remembers about a peer it has met: its decompressed, checked
/// Ed25519 key and, once computed, the pair secret.
#[derive(Clone)]
struct PeerKeys {
    verifying: VerifyingKey,
    pair: Option<Zeroizing<[u8; 32]>>,
    last_use: u64,
}

/// A bounded least-recently-used cache of per-peer keys.
struct PeerCache {
    cap: usize,
    tick: u64,
    map: HashMap<NodeId, PeerKeys>,
}

impl PeerCache {
    fn get(&mut self, peer: &NodeId) -> Option<&mut PeerKeys> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.map.get_mut(peer)?;
        e.last_use = tick;
        Some(e)
    }

    fn put(&mut self, peer: NodeId, keys: PeerKeys) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&peer) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.tick += 1;
        self.map.insert(
            peer,
            PeerKeys {
                last_use: self.tick,
                ..keys
            },
        );
    }
}

/// Decompresses and checks a source key: valid point, not of small order.
fn checked_key(id: &NodeId) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(id.as_bytes())
        .ok()
        .filter(|k| !k.is_weak())
}

/// A node's keys: its identity, its realms and the cache of pair secrets.
pub struct Keyring {
    identity: Identity,
    own_hash: NodeHash,
    realms: Vec<Realm>,
    peers: Mutex<PeerCache>,
    /// The last heads [`Keyring::open_head_verified`] authenticated (see there).
    heads: Mutex<VecDeque<(BundleId, OpenedHead)>>,
    limits: Limits,
}

/// Heads kept by [`Keyring::open_head_verified`].
const HEAD_CACHE: usize = 8;

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("node", &self.identity.node_id())
            .field("realms", &self.realms)
            .finish_non_exhaustive()
    }
}

fn derive_bundle_key(secret: &[u8; 32], mode: &[u8], header: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(mode);
    h.update(header);
    Zeroizing::new(*h.finalize().as_bytes())
}

fn encode_plaintext_prefix(
    kind: PayloadKind,
    endpoint: Option<&str>,
    fragment: Option<&Fragment>,
    out: &mut Vec<u8>,
) {
    let mut k = kind as u8;
    if endpoint.is_some() {
        k |= KIND_ENDPOINT_FLAG;
    }
    if fragment.is_some() {
        k |= KIND_FRAGMENT_FLAG;
    }
    out.push(k);
    if let Some(e) = endpoint {
        put_varint(out, e.len() as u64);
        out.extend_from_slice(e.as_bytes());
    }
    if let Some(f) = fragment {
        f.encode_into(out);
    }
}

/// What the plaintext prefix says: kind, endpoint, fragment descriptor, and where
/// the payload starts.
type Prefix = (PayloadKind, Option<String>, Option<Fragment>, usize);

/// Parses the plaintext prefix at the start of `pt`, a plaintext of `pt_len` bytes
/// in all (`pt` may be only its first bytes); a fragment descriptor must fit the
/// payload behind it.
fn parse_prefix(pt: &[u8], pt_len: usize) -> Result<Prefix, OpenError> {
    let mut r = Reader::new(pt);
    let k = r.u8("kind").map_err(|_| OpenError::BadPlaintext)?;
    if k & !(KIND_MASK | KIND_ENDPOINT_FLAG | KIND_FRAGMENT_FLAG) != 0 {
        return Err(OpenError::BadPlaintext);
    }
    let kind = PayloadKind::from_u8(k & KIND_MASK).ok_or(OpenError::BadPlaintext)?;
    let endpoint = if k & KIND_ENDPOINT_FLAG != 0 {
        let len = r.varint("endpoint").map_err(|_| OpenError::BadPlaintext)?;
        if len == 0 || len > MAX_ENDPOINT_LEN as u64 {
            return Err(OpenError::BadPlaintext);
        }
        let raw = r
            .take(len as usize, "endpoint")
            .map_err(|_| OpenError::BadPlaintext)?;
        Some(
            std::str::from_utf8(raw)
                .map_err(|_| OpenError::BadPlaintext)?
                .to_owned(),
        )
    } else {
        None
    };
    let fragment = if k & KIND_FRAGMENT_FLAG != 0 {
        Some(Fragment::decode(&mut r)?)
    } else {
        None
    };
    let start = r.pos();
    if fragment.is_some_and(|f| !f.fits(pt_len.saturating_sub(start))) {
        return Err(OpenError::BadPlaintext);
    }
    Ok((kind, endpoint, fragment, start))
}

impl Keyring {
    /// A keyring with the default pair-cache size and decoding limits.
    pub fn new(identity: Identity, realms: Vec<Realm>) -> Self {
        Self::with_options(identity, realms, DEFAULT_PAIR_CACHE, Limits::default())
    }

    /// A keyring with an explicit pair-cache capacity and decoding limits.
    pub fn with_options(
        identity: Identity,
        realms: Vec<Realm>,
        pair_cache: usize,
        limits: Limits,
    ) -> Self {
        let own_hash = identity.node_id().hash();
        Self {
            identity,
            own_hash,
            realms,
            peers: Mutex::new(PeerCache {
                cap: pair_cache,
                tick: 0,
                map: HashMap::new(),
            }),
            heads: Mutex::new(VecDeque::with_capacity(HEAD_CACHE)),
            limits,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This node's realms.
    pub fn realms(&self) -> &[Realm] {
        &self.realms
    }

    /// Decoding limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The realm a tag belongs to, if it is one of ours.
    pub fn realm_of(&self, tag: RealmTag) -> Option<&Realm> {
        self.realms.iter().find(|r| r.tag() == tag)
    }

    /// The peer's checked Ed25519 key, from the cache or decompressed once.
    fn peer_key(&self, peer: &NodeId) -> Option<VerifyingKey> {
        if let Ok(mut c) = self.peers.lock() {
            if let Some(e) = c.get(peer) {
                return Some(e.verifying);
            }
        }
        let verifying = checked_key(peer)?;
        if let Ok(mut c) = self.peers.lock() {
            c.put(
                *peer,
                PeerKeys {
                    verifying,
                    pair: None,
                    last_use: 0,
                },
            );
        }
        Some(verifying)
    }

    /// Computes and caches the pair secret shared with `peer` now, so that a later
    /// seal for `peer` or open of a bundle from `peer` does no key agreement (the
    /// simulator warms its nodes' caches on a second thread). `false` if `peer` is
    /// not a valid key.
    pub fn prepare_pair(&self, peer: &NodeId) -> bool {
        self.pair_secret(peer).is_some()
    }

    fn pair_secret(&self, peer: &NodeId) -> Option<[u8; 32]> {
        if let Ok(mut c) = self.peers.lock() {
            if let Some(k) = c.get(peer).and_then(|e| e.pair.as_ref().map(|k| **k)) {
                return Some(k);
            }
        }
        let verifying = checked_key(peer)?;
        let peer_x = XPublic::from(verifying.to_montgomery().to_bytes());
        let shared = self.identity.agree(&peer_x);
        let (lo, hi) = if self.node_id() < *peer {
            (self.node_id(), *peer)
        } else {
            (*peer, self.node_id())
        };
        let mut h = blake3::Hasher::new_derive_key("ferry v1 pair secret");
        h.update(shared.as_ref());
        h.update(lo.as_bytes());
        h.update(hi.as_bytes());
        let key = *h.finalize().as_bytes();
        if let Ok(mut c) = self.peers.lock() {
            c.put(
                *peer,
                PeerKeys {
                    verifying,
                    pair: Some(Zeroizing::new(key)),
                    last_use: 0,
                },
            );
        }
        Some(key)
    }

    /// Verifies a bundle's signature, reusing the source's key if it was seen before.
    pub fn verify(&self, bundle: &Bundle) -> Result<(), OpenError> {
        let vk = self
            .peer_key(&bundle.header().source)
            .ok_or(OpenError::BadSignature)?;
        verify_with(&vk, bundle)
    }

    /// Verifies many bundles at once (Ed25519 batch verification). On a batch
    /// failure each bundle is checked alone, so every result is exact.
    pub fn verify_many(&self, bundles: &[&Bundle]) -> Vec<Result<(), OpenError>> {
        let keys: Option<Vec<VerifyingKey>> = bundles
            .iter()
            .map(|b| self.peer_key(&b.header().source))
            .collect();
        batch_verify(bundles, keys)
    }

    /// Seals `payload` into a signed, encrypted bundle.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        params: &SealParams,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Bundle, SealError> {
        let plan = self.plan_seal(params, payload.len(), rng)?;
        let mut buf = Vec::with_capacity(plan.total);
        buf.extend_from_slice(&plan.head);
        buf.extend_from_slice(payload);
        self.finish_seal(plan, buf)
    }

    /// The first half of sealing a payload of `payload_len` bytes: checks `params`,
    /// builds the header and derives the key. [`SealPlan::head_len`] bytes go before
    /// the payload; a caller that receives a large payload in pieces reserves them at
    /// the front of its buffer, appends the payload behind them, and hands the buffer
    /// to [`Keyring::seal_planned`]: the payload is encrypted where it is, without a
    /// copy.
    pub fn plan_seal<R: RngCore + CryptoRng>(
        &self,
        params: &SealParams,
        payload_len: usize,
        rng: &mut R,
    ) -> Result<SealPlan, SealError> {
        let realm = self
            .realms
            .iter()
            .find(|r| r.name() == params.realm)
            .ok_or_else(|| SealError::UnknownRealm(params.realm.clone()))?;
        if params.lifetime == 0 {
            return Err(SealError::ZeroLifetime);
        }
        let (destination, endpoint) = match &params.recipient {
            Recipient::Node { id, endpoint } => (Destination::Node(id.hash()), endpoint),
            Recipient::Group { endpoint } => {
                if params.ephemeral {
                    return Err(SealError::EphemeralGroup);
                }
                (Destination::Group, endpoint)
            }
        };
        if let Some(e) = endpoint {
            if e.is_empty() || e.len() > MAX_ENDPOINT_LEN {
                return Err(SealError::BadEndpoint);
            }
        }
        let eph_secret = params
            .ephemeral
            .then(|| StaticSecret::random_from_rng(&mut *rng));
        let header = Header {
            priority: params.priority,
            destination,
            realm_tag: realm.tag(),
            source: self.node_id(),
            created: params.created,
            sequence: params.sequence,
            lifetime: params.lifetime,
            hop_limit: params.hop_limit,
            ephemeral_key: eph_secret.as_ref().map(|s| XPublic::from(s).to_bytes()),
        };
        if let Some(f) = &params.fragment {
            if !f.fits(payload_len) {
                return Err(SealError::BadFragment {
                    index: f.index,
                    count: f.count,
                    len: payload_len,
                });
            }
        }
        let mut prefix = Vec::with_capacity(MAX_PREFIX_LEN);
        encode_plaintext_prefix(
            params.kind,
            endpoint.as_deref(),
            params.fragment.as_ref(),
            &mut prefix,
        );
        let prefix_len = prefix.len();
        let too_large = || SealError::TooLarge {
            len: payload_len,
            max: self.limits.max_bundle_bytes,
        };
        let ct_len = prefix_len
            .checked_add(payload_len)
            .and_then(|n| n.checked_add(AEAD_TAG_LEN))
            .ok_or_else(too_large)?;
        let total = ct_len
            .checked_add(header.encoded_len() + varint_len(ct_len as u64) + SIGNATURE_LEN + 3)
            .ok_or_else(too_large)?;
        if total > self.limits.max_bundle_bytes {
            return Err(too_large());
        }
        let mut head = Vec::with_capacity(total - payload_len - AEAD_TAG_LEN - SIGNATURE_LEN);
        header.encode_into(&mut head);
        let header_end = head.len();

        let key = match (&params.recipient, &eph_secret) {
            (Recipient::Node { id, .. }, None) => {
                let pair = self.pair_secret(id).ok_or(SealError::BadRecipient)?;
                derive_bundle_key(&pair, b"ferry v1 pair", &head)
            }
            (Recipient::Node { id, .. }, Some(e)) => {
                let peer = x25519_public_of(id).ok_or(SealError::BadRecipient)?;
                let shared = Zeroizing::new(e.diffie_hellman(&peer).to_bytes());
                let mut h = blake3::Hasher::new_derive_key("ferry v1 ephemeral bundle key");
                h.update(shared.as_ref());
                h.update(&head);
                Zeroizing::new(*h.finalize().as_bytes())
            }
            (Recipient::Group { .. }, _) => {
                derive_bundle_key(realm.group_key(), b"ferry v1 group", &head)
            }
        };

        put_varint(&mut head, ct_len as u64);
        let ct_start = head.len();
        head.extend_from_slice(&prefix);
        Ok(SealPlan {
            header,
            head,
            header_end,
            ct_start,
            payload_len,
            total,
            key,
            created_unset: params.created.is_none(),
        })
    }

    /// The second half of [`Keyring::plan_seal`]: `buf` holds the plan's
    /// [`SealPlan::head_len`] bytes (any values: they are overwritten) followed by
    /// exactly the planned payload; it is encrypted in place, signed, and becomes the
    /// bundle's storage.
    pub fn seal_planned(&self, plan: SealPlan, mut buf: Vec<u8>) -> Result<Bundle, SealError> {
        if buf.len() != plan.head.len() + plan.payload_len {
            return Err(SealError::PlanMismatch {
                planned: plan.payload_len,
                got: buf.len().saturating_sub(plan.head.len()),
            });
        }
        buf.reserve_exact(plan.total - buf.len());
        buf[..plan.head.len()].copy_from_slice(&plan.head);
        self.finish_seal(plan, buf)
    }

    /// Encrypts, tags and signs: `buf` is the head followed by the payload.
    fn finish_seal(&self, plan: SealPlan, mut buf: Vec<u8>) -> Result<Bundle, SealError> {
        let SealPlan {
            header,
            header_end,
            ct_start,
            payload_len,
            key,
            created_unset,
            ..
        } = plan;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&[0u8; 12]), &[], &mut buf[ct_start..])
            .map_err(|_| SealError::TooLarge {
                len: payload_len,
                max: self.limits.max_bundle_bytes,
            })?;
        buf.extend_from_slice(&tag);
        let id = BundleId::of_signed_bytes(&buf);
        let sig = self.identity.sign(&signature_message(&id));
        buf.extend_from_slice(&sig);
        let envelope = Envelope {
            hop_count: 0,
            age: created_unset.then_some(0),
        };
        Ok(Bundle::from_parts(
            buf, header, header_end, ct_start, envelope, id,
        ))
    }

    /// Checks a bundle's realm tag: the first, cheapest filter.
    pub fn check_realm(&self, bundle: &Bundle) -> Result<(), OpenError> {
        self.realm_of(bundle.header().realm_tag)
            .map(|_| ())
            .ok_or(OpenError::ForeignRealm)
    }

    /// Decodes bytes from outside and runs every check a relay makes, cheapest
    /// first: structure and size, realm tag, expiry, then the signature.
    pub fn accept(&self, bytes: &[u8], now: Option<DtnTime>) -> Result<Bundle, OpenError> {
        let bundle = Bundle::decode(bytes, &self.limits)?;
        self.check_realm(&bundle)?;
        if bundle.is_expired(now) {
            return Err(OpenError::Expired);
        }
        self.verify(&bundle)?;
        Ok(bundle)
    }

    /// Whether the bundle is addressed to this node (or to one of its realms).
    pub fn is_for_us(&self, bundle: &Bundle) -> bool {
        match bundle.header().destination {
            Destination::Node(h) => h == self.own_hash,
            Destination::Group => self.realm_of(bundle.header().realm_tag).is_some(),
        }
    }

    /// Decrypts a bundle addressed to this node. Checks the realm and the signature
    /// first; call it on bundles from [`Keyring::accept`] or straight after decoding.
    pub fn open(&self, bundle: &Bundle) -> Result<Opened, OpenError> {
        self.check_realm(bundle)?;
        self.verify(bundle)?;
        self.open_verified(bundle)
    }

    /// Decrypts a bundle whose signature has already been verified.
    pub fn open_verified(&self, bundle: &Bundle) -> Result<Opened, OpenError> {
        // One copy of the bundle, decrypted in place: as much copying as
        // decrypting its ciphertext into a new buffer.
        self.open_verified_owned(bundle.clone())
    }

    /// The bundle's AEAD key, as its destination derives it.
    fn bundle_key(&self, bundle: &Bundle, realm: &Realm) -> Result<Zeroizing<[u8; 32]>, OpenError> {
        let header = bundle.header();
        let hb = bundle.header_bytes();
        Ok(match (header.destination, &header.ephemeral_key) {
            (Destination::Node(h), _) if h != self.own_hash => return Err(OpenError::NotForUs),
            (Destination::Node(_), None) => {
                let pair = self
                    .pair_secret(&header.source)
                    .ok_or(OpenError::BadSignature)?;
                derive_bundle_key(&pair, b"ferry v1 pair", hb)
            }
            (Destination::Node(_), Some(eph)) => {
                let shared = self.identity.agree(&XPublic::from(*eph));
                let mut h = blake3::Hasher::new_derive_key("ferry v1 ephemeral bundle key");
                h.update(shared.as_ref());
                h.update(hb);
                Zeroizing::new(*h.finalize().as_bytes())
            }
            (Destination::Group, _) => derive_bundle_key(realm.group_key(), b"ferry v1 group", hb),
        })
    }

    /// [`Keyring::open_verified`] that decrypts the payload in the bundle's own bytes
    /// instead of a copy of them: for a large payload read back from the store,
    /// one buffer instead of two.
    pub fn open_verified_owned(&self, bundle: Bundle) -> Result<Opened, OpenError> {
        let OpenedInPlace {
            kind,
            endpoint,
            fragment,
            mut bytes,
            payload,
        } = self.open_verified_in_place(bundle)?;
        bytes.truncate(payload.end);
        bytes.drain(..payload.start);
        Ok(Opened {
            kind,
            endpoint,
            fragment,
            payload: bytes,
        })
    }

    /// [`Keyring::open_verified_owned`] that leaves the decrypted payload where it
    /// is in the bundle's buffer (`bytes[payload]`) instead of moving it to the
    /// front: a caller that can send a slice (an HTTP body, a WebSocket message)
    /// saves a pass over a large payload.
    pub fn open_verified_in_place(&self, bundle: Bundle) -> Result<OpenedInPlace, OpenError> {
        let realm = self
            .realm_of(bundle.header().realm_tag)
            .ok_or(OpenError::ForeignRealm)?;
        let key = self.bundle_key(&bundle, realm)?;
        let (mut bytes, ct) = bundle.into_ciphertext_bytes();
        let body_end = ct.end - AEAD_TAG_LEN;
        let tag = *Tag::from_slice(&bytes[body_end..ct.end]);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&[0u8; 12]),
                &[],
                &mut bytes[ct.start..body_end],
                &tag,
            )
            .map_err(|_| OpenError::Decrypt)?;
        let pt = &bytes[ct.start..body_end];
        let (kind, endpoint, fragment, start) = parse_prefix(pt, pt.len())?;
        Ok(OpenedInPlace {
            kind,
            endpoint,
            fragment,
            bytes,
            payload: ct.start + start..body_end,
        })
    }

    /// Authenticates the ciphertext of a bundle addressed to this node, whose
    /// signature has already been verified, and decrypts only its plaintext prefix
    /// (kind and endpoint). It accepts exactly the bundles
    /// [`Keyring::open_verified`] accepts, with the same errors, but makes one MAC
    /// pass over the ciphertext instead of decrypting and copying the payload: a
    /// node that stores a large payload for a local app learns where it goes
    /// without holding the plaintext in memory.
    ///
    /// This is RFC 8439's ChaCha20-Poly1305 with no associated data, split in two:
    /// the Poly1305 key is keystream block 0, the ciphertext starts at block 1.
    ///
    /// The last few heads it authenticated are kept by bundle id (which is a hash of
    /// every byte the MAC covers, so an id stands for one ciphertext): a driver can
    /// authenticate a large bundle on a thread of its own as it arrives, and the
    /// engine's own call then finds the answer instead of making the pass again.
    pub fn open_head_verified(&self, bundle: &Bundle) -> Result<OpenedHead, OpenError> {
        let id = bundle.id();
        if let Some(head) = self.heads.lock().ok().and_then(|h| {
            h.iter()
                .find(|(k, _)| *k == id)
                .map(|(_, head)| head.clone())
        }) {
            return Ok(head);
        }
        let head = self.authenticate_head(bundle)?;
        if let Ok(mut h) = self.heads.lock() {
            if h.len() == HEAD_CACHE {
                h.pop_front();
            }
            h.push_back((id, head.clone()));
        }
        Ok(head)
    }

    /// The work of [`Keyring::open_head_verified`]: one MAC pass, the prefix decrypted.
    fn authenticate_head(&self, bundle: &Bundle) -> Result<OpenedHead, OpenError> {
        use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
        use poly1305::universal_hash::{KeyInit as _, UniversalHash};

        let realm = self
            .realm_of(bundle.header().realm_tag)
            .ok_or(OpenError::ForeignRealm)?;
        let key = self.bundle_key(bundle, realm)?;
        let ct = bundle.ciphertext();
        let (body, tag) = ct.split_at(ct.len() - AEAD_TAG_LEN);
        let mut stream = chacha20::ChaCha20::new(key.as_ref().into(), &[0u8; 12].into());
        let mut mac_key = Zeroizing::new([0u8; 32]);
        stream.apply_keystream(mac_key.as_mut());
        let mut mac = poly1305::Poly1305::new(poly1305::Key::from_slice(mac_key.as_ref()));
        mac.update_padded(body);
        let mut lengths = poly1305::Block::default();
        // Associated data: none (its length, the first 8 bytes, stays 0).
        lengths[8..].copy_from_slice(&(body.len() as u64).to_le_bytes());
        mac.update(&[lengths]);
        mac.verify(poly1305::Block::from_slice(tag))
            .map_err(|_| OpenError::Decrypt)?;
        stream.seek(64u64);
        let mut head = Zeroizing::new(body[..body.len().min(MAX_PREFIX_LEN)].to_vec());
        stream.apply_keystream(&mut head);
        let (kind, endpoint, fragment, start) = parse_prefix(&head, body.len())?;
        Ok(OpenedHead {
            kind,
            endpoint,
            fragment,
            payload_len: body.len() - start,
        })
    }
}

fn verify_with(vk: &VerifyingKey, bundle: &Bundle) -> Result<(), OpenError> {
    let sig = Signature::from_bytes(&bundle.signature());
    vk.verify(&bundle.signature_message(), &sig)
        .map_err(|_| OpenError::BadSignature)
}

fn batch_verify(
    bundles: &[&Bundle],
    keys: Option<Vec<VerifyingKey>>,
) -> Vec<Result<(), OpenError>> {
    let Some(keys) = keys else {
        return bundles.iter().map(|b| verify(b)).collect();
    };
    let owned: Vec<[u8; SIG_MESSAGE_LEN]> = bundles.iter().map(|b| b.signature_message()).collect();
    let msgs: Vec<&[u8]> = owned.iter().map(|m| &m[..]).collect();
    let sigs: Vec<Signature> = bundles
        .iter()
        .map(|b| Signature::from_bytes(&b.signature()))
        .collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        vec![Ok(()); bundles.len()]
    } else {
        bundles
            .iter()
            .zip(&keys)
            .map(|(b, k)| verify_with(k, b))
            .collect()
    }
}

/// Verifies a bundle's Ed25519 signature without a keyring (e.g. `ferry bundle
/// inspect`). Source keys of small order are refused; `S` must be canonical.
pub fn verify(bundle: &Bundle) -> Result<(), OpenError> {
    let vk = checked_key(&bundle.header().source).ok_or(OpenError::BadSignature)?;
    verify_with(&vk, bundle)
}

/// [`verify`] for many bundles, by batch verification.
pub fn verify_many(bundles: &[&Bundle]) -> Vec<Result<(), OpenError>> {
    let keys: Option<Vec<VerifyingKey>> = bundles
        .iter()
        .map(|b| checked_key(&b.header().source))
        .collect();
    batch_verify(bundles, keys)
}
