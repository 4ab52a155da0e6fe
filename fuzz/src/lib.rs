//! Shared fixtures of the Ferry fuzz targets: fixed keys, the seed bundles made with
//! them, and a hand-built group bundle whose plaintext the fuzzer controls.
//!
//! The keys are fixed so that seed bundles written once (`cargo run --example
//! gen_seeds`) stay valid for the targets: they pass the realm filter and the
//! signature check, and the fuzzer starts from bundles that open.

use ferry_core::rand_core::{CryptoRng, Error as RandError, RngCore};
use ferry_core::{
    Bundle, DtnTime, Identity, Keyring, Opened, PayloadKind, Priority, Realm, Recipient, SealParams,
};

/// Seed of the receiving node's identity (the keyring the targets open with).
pub const RECEIVER_SEED: [u8; 32] = [0x11; 32];
/// Seed of the sending node's identity (same realm).
pub const SENDER_SEED: [u8; 32] = [0x22; 32];
/// Seed of a third node of the realm (bundles to it are "not for us").
pub const OTHER_SEED: [u8; 32] = [0x33; 32];
/// The realm's name.
pub const REALM_NAME: &str = "fuzz";
/// The realm's secret.
pub const REALM_SECRET: [u8; 32] = [0x44; 32];
/// Another realm (bundles in it are foreign to the receiver).
pub const FOREIGN_SECRET: [u8; 32] = [0x55; 32];
/// The time the targets accept bundles at.
pub const NOW: DtnTime = DtnTime(850_000_000);

/// The fixed realm.
pub fn realm() -> Realm {
    Realm::new(REALM_NAME, REALM_SECRET).expect("valid realm name")
}

/// The keyring the targets accept and open with.
pub fn receiver() -> Keyring {
    Keyring::new(Identity::from_seed(RECEIVER_SEED), vec![realm()])
}

/// The keyring seed bundles are sealed with.
pub fn sender() -> Keyring {
    Keyring::new(Identity::from_seed(SENDER_SEED), vec![realm()])
}

/// A deterministic RNG (SplitMix64), for reproducible seeds and fuzz runs. Not for
/// real keys.
#[derive(Debug, Clone)]
pub struct FixedRng(pub u64);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn params(recipient: Recipient) -> SealParams {
    SealParams {
        recipient,
        realm: REALM_NAME.into(),
        created: Some(DtnTime(NOW.0 - 10_000)),
        sequence: 1,
        lifetime: 86_400,
        priority: Priority::Normal,
        hop_limit: ferry_core::DEFAULT_HOP_LIMIT,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    }
}

/// Named valid bundles for the corpora: every key mode, with and without a creation
/// time and an endpoint, plus a few the receiver must refuse (not for it, foreign,
/// expired).
pub fn seed_bundles() -> Vec<(&'static str, Vec<u8>)> {
    let s = sender();
    let me = Identity::from_seed(RECEIVER_SEED).node_id();
    let other = Identity::from_seed(OTHER_SEED).node_id();
    let mut rng = FixedRng(1);
    let node = |id, endpoint: Option<&str>| Recipient::Node {
        id,
        endpoint: endpoint.map(str::to_owned),
    };
    let ramp: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut out = Vec::new();
    let mut seal = |name: &'static str, k: &Keyring, p: SealParams, payload: &[u8]| {
        let b = k.seal(&p, payload, &mut rng).expect("seed seals");
        out.push((name, b.encode()));
    };
    seal("pair", &s, params(node(me, None)), b"hello");
    seal(
        "pair_endpoint_call",
        &s,
        SealParams {
            kind: PayloadKind::Call,
            sequence: 2,
            ..params(node(me, Some("mail")))
        },
        b"call me",
    );
    seal(
        "ephemeral",
        &s,
        SealParams {
            ephemeral: true,
            fragment: None,
            sequence: 3,
            priority: Priority::Expedited,
            ..params(node(me, None))
        },
        &ramp,
    );
    seal(
        "group_endpoint",
        &s,
        SealParams {
            sequence: 4,
            priority: Priority::Bulk,
            ..params(Recipient::Group {
                endpoint: Some("news".into()),
            })
        },
        b"to everyone",
    );
    seal(
        "no_clock",
        &s,
        SealParams {
            created: None,
            sequence: 300,
            lifetime: 7200,
            ..params(node(me, None))
        },
        b"",
    );
    seal(
        "not_for_us",
        &s,
        SealParams {
            sequence: 5,
            ..params(node(other, None))
        },
        b"for another node",
    );
    seal(
        "expired",
        &s,
        SealParams {
            sequence: 6,
            created: Some(DtnTime(NOW.0 - 100)),
            lifetime: 50,
            ..params(node(me, None))
        },
        b"too late",
    );
    let foreign = Keyring::new(
        Identity::from_seed(SENDER_SEED),
        vec![Realm::new(REALM_NAME, FOREIGN_SECRET).expect("valid realm")],
    );
    seal(
        "foreign_realm",
        &foreign,
        params(node(me, None)),
        b"foreign",
    );
    // Sent by the receiver itself, to the group: opens too.
    seal(
        "own_group",
        &receiver(),
        params(Recipient::Group { endpoint: None }),
        b"own",
    );
    out
}

/// Appends a canonical LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// CRC-8/AUTOSAR, as the routing envelope uses.
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xff;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x2f
            } else {
                crc << 1
            };
        }
    }
    crc ^ 0xff
}

/// A realm-group bundle with an arbitrary plaintext (ferry-core's seal always writes
/// a well-formed one), built from the spec in docs/wire-format.md: `header` is the
/// `version || header` bytes of a group bundle, encrypted with the key derived from
/// the realm group key, signed by `sender`, with a fresh envelope. This is how the
/// fuzzer reaches the plaintext parser past the AEAD tag and the signature.
pub fn group_bundle(
    sender: &Identity,
    realm_secret: &[u8; 32],
    header: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

    let mut material = realm_secret.to_vec();
    material.extend_from_slice(REALM_NAME.as_bytes());
    let group_key = blake3::derive_key("ferry v1 realm group key", &material);
    let mut h = blake3::Hasher::new_keyed(&group_key);
    h.update(b"ferry v1 group");
    h.update(header);
    let key = *h.finalize().as_bytes();

    let mut buf = header.to_vec();
    put_varint(&mut buf, (plaintext.len() + 16) as u64);
    let ct_start = buf.len();
    buf.extend_from_slice(plaintext);
    let tag = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &[], &mut buf[ct_start..])
        .expect("small plaintext encrypts");
    buf.extend_from_slice(&tag);
    // Wire version 2: Ed25519 over the context and the bundle id (written out here
    // rather than taken from ferry-core, so the harness stays an independent oracle).
    let id = blake3::Hasher::new_derive_key("ferry v1 bundle id")
        .update(&buf)
        .finalize();
    let mut msg = b"ferry bundle v2\0".to_vec();
    msg.extend_from_slice(id.as_bytes());
    let sig = sender.sign(&msg);
    buf.extend_from_slice(&sig);
    // Envelope: hop count 0, then the age (0) iff the header has no creation time.
    let has_created = header.get(1).is_some_and(|f| f & 0b1_0000 != 0);
    let env_start = buf.len();
    buf.push(0);
    if !has_created {
        buf.push(0);
    }
    let crc = crc8(&buf[env_start..]);
    buf.push(crc);
    buf
}

/// One canonical LEB128 varint (at most 10 bytes, no trailing zero byte, within
/// 64 bits) from the front of `rest`.
fn reference_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut i = 0;
    loop {
        let (&b, r) = rest.split_first()?;
        *rest = r;
        if i == 9 && b & 0xfe != 0 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            return Some(v);
        }
        i += 1;
        if i == 10 {
            return None;
        }
    }
}

/// The plaintext rules of docs/wire-format.md, written independently of ferry-core
/// (differential oracle): `kind:u8` (low 4 bits a kind 0..=8, bit 7 "endpoint follows",
/// bit 6 "fragment descriptor follows", bits 4-5 zero), then, with bit 7, `len:varint`
/// (canonical, 1..=64) and `len` bytes of UTF-8, then, with bit 6, five varints
/// (message, index, count, offset, total) with `2 <= count <= 65536`,
/// `index < count`, a non-empty payload and `offset + payload length <= total`; the
/// rest is the payload.
pub fn reference_plaintext(pt: &[u8]) -> Option<Opened> {
    let (&k, mut rest) = pt.split_first()?;
    if k & 0x30 != 0 {
        return None;
    }
    let kind = PayloadKind::from_u8(k & 0x0f)?;
    let endpoint = if k & 0x80 != 0 {
        let len = reference_varint(&mut rest)?;
        if len == 0 || len > 64 || len as usize > rest.len() {
            return None;
        }
        let (name, r) = rest.split_at(len as usize);
        rest = r;
        Some(std::str::from_utf8(name).ok()?.to_owned())
    } else {
        None
    };
    let fragment = if k & 0x40 != 0 {
        let message = reference_varint(&mut rest)?;
        let index = u32::try_from(reference_varint(&mut rest)?).ok()?;
        let count = u32::try_from(reference_varint(&mut rest)?).ok()?;
        let offset = reference_varint(&mut rest)?;
        let total = reference_varint(&mut rest)?;
        let end = offset.checked_add(rest.len() as u64)?;
        if !(2..=65_536).contains(&count) || index >= count || rest.is_empty() || end > total {
            return None;
        }
        Some(ferry_core::Fragment {
            message,
            index,
            count,
            offset,
            total,
        })
    } else {
        None
    };
    Some(Opened {
        kind,
        endpoint,
        fragment,
        payload: rest.to_vec(),
    })
}

/// Decodes with default limits and checks the codec is canonical: re-encoding gives
/// the input back, and decoding that gives the same bundle.
pub fn assert_canonical(data: &[u8], b: &Bundle) {
    let enc = b.encode();
    assert_eq!(
        enc.len(),
        b.encoded_len(),
        "encoded_len disagrees with encode"
    );
    assert!(
        enc == data,
        "decode accepted a non-canonical encoding:\n input {}\nencode {}",
        hex(data),
        hex(&enc)
    );
    let again = Bundle::decode(&enc, &ferry_core::Limits::default()).expect("re-decode");
    assert!(&again == b, "decode(encode(b)) != b");
    assert_eq!(b.header().encoded_len(), b.header_bytes().len());
}

/// Lowercase hex, for assertion messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_behave_as_named() {
        let r = receiver();
        for (name, bytes) in seed_bundles() {
            let res = r.accept(&bytes, Some(NOW)).and_then(|b| r.open(&b));
            match name {
                "not_for_us" => assert_eq!(res, Err(ferry_core::OpenError::NotForUs)),
                "foreign_realm" => assert_eq!(res, Err(ferry_core::OpenError::ForeignRealm)),
                "expired" => assert_eq!(res, Err(ferry_core::OpenError::Expired)),
                _ => assert!(res.is_ok(), "{name}: {res:?}"),
            }
        }
    }

    #[test]
    fn hand_built_group_bundles_match_ferry_core() {
        let s = sender();
        let b = s
            .seal(
                &params(Recipient::Group { endpoint: None }),
                b"x",
                &mut FixedRng(2),
            )
            .unwrap();
        // The same plaintext (kind 0, no endpoint, "x") built by hand opens the same.
        let hand = group_bundle(s.identity(), &REALM_SECRET, b.header_bytes(), b"\x00x");
        assert_eq!(hand, b.encode());
        let r = receiver();
        let opened = r.open(&r.accept(&hand, Some(NOW)).unwrap()).unwrap();
        assert_eq!(Some(opened), reference_plaintext(b"\x00x"));
        // With an endpoint, and bad plaintexts.
        assert_eq!(
            reference_plaintext(b"\x82\x04mailhi")
                .unwrap()
                .endpoint
                .as_deref(),
            Some("mail")
        );
        for bad in [
            &b""[..],
            b"\x08",
            b"\x10",
            b"\x80",
            b"\x80\x00",
            b"\x80\x41",
            b"\x81\x84\x00a",
        ] {
            assert!(reference_plaintext(bad).is_none(), "{bad:?}");
        }
    }
}
