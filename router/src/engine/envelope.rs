//! Rewriting the routing envelope of stored bundle bytes in place.
//!
//! Forwarding changes only the envelope at the end of a bundle (hop count, age,
//! CRC-8; see `docs/wire-format.md`). Decoding a 100 MiB bundle into a
//! [`ferry_core::Bundle`] and encoding it again would copy it twice; this module
//! walks the header to find the envelope and rewrites the few bytes after it, so
//! sending a stored bundle costs the one copy the store hands out. It is checked
//! against `ferry-core`'s codec by property tests.

use ferry_core::codec::{crc8, put_varint};

const FLAG_DEST_MASK: u8 = 0b0000_1100;
const FLAG_CREATED: u8 = 0b0001_0000;
const FLAG_EPHEMERAL: u8 = 0b0010_0000;
const SIGNATURE_LEN: usize = 64;

/// Why stored bytes could not be prepared for forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not a well-formed version-1 bundle.
    #[error("stored bundle is malformed")]
    Malformed,
    /// The bundle is at its hop limit.
    #[error("bundle is at its hop limit")]
    HopLimit,
}

/// What the envelope of an encoded bundle says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// Offset of the envelope (the hop count byte).
    pub start: usize,
    /// Hops taken.
    pub hop_count: u8,
    /// Hop limit from the signed header.
    pub hop_limit: u8,
    /// Age in seconds, for bundles without a creation time.
    pub age: Option<u64>,
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, EnvelopeError> {
    let mut v: u64 = 0;
    for i in 0..10u32 {
        let b = *bytes.get(*pos).ok_or(EnvelopeError::Malformed)?;
        *pos += 1;
        if i == 9 && b & 0xfe != 0 {
            return Err(EnvelopeError::Malformed);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(EnvelopeError::Malformed)
}

/// Locates and reads the envelope of an encoded bundle.
pub fn read_envelope(bytes: &[u8]) -> Result<EnvelopeInfo, EnvelopeError> {
    let flags = *bytes.get(1).ok_or(EnvelopeError::Malformed)?;
    if bytes[0] != ferry_core::VERSION {
        return Err(EnvelopeError::Malformed);
    }
    // version, flags, realm tag, source
    let mut pos = 2 + 4 + 32;
    if flags & FLAG_DEST_MASK == 0 {
        pos += 8;
    }
    let created = flags & FLAG_CREATED != 0;
    if created {
        pos += 4;
    }
    varint(bytes, &mut pos)?; // sequence
    varint(bytes, &mut pos)?; // lifetime
    let hop_limit = *bytes.get(pos).ok_or(EnvelopeError::Malformed)?;
    pos += 1;
    if flags & FLAG_EPHEMERAL != 0 {
        pos += 32;
    }
    let ct_len = usize::try_from(varint(bytes, &mut pos)?).map_err(|_| EnvelopeError::Malformed)?;
    let start = pos
        .checked_add(ct_len)
        .and_then(|p| p.checked_add(SIGNATURE_LEN))
        .ok_or(EnvelopeError::Malformed)?;
    let mut p = start;
    let hop_count = *bytes.get(p).ok_or(EnvelopeError::Malformed)?;
    p += 1;
    let age = if created {
        None
    } else {
        Some(varint(bytes, &mut p)?)
    };
    // The CRC byte ends the bundle.
    if p + 1 != bytes.len() {
        return Err(EnvelopeError::Malformed);
    }
    Ok(EnvelopeInfo {
        start,
        hop_count,
        hop_limit,
        age,
    })
}

/// Turns stored bundle bytes into the bytes to forward: one more hop and, for a
/// bundle without a creation time, `held_secs` more age. Fails, leaving the bytes
/// unchanged, at the hop limit.
pub fn forward_in_place(bytes: &mut Vec<u8>, held_secs: u64) -> Result<(), EnvelopeError> {
    let env = read_envelope(bytes)?;
    if env.hop_count >= env.hop_limit {
        return Err(EnvelopeError::HopLimit);
    }
    bytes.truncate(env.start);
    bytes.push(env.hop_count + 1);
    if let Some(age) = env.age {
        put_varint(bytes, age.saturating_add(held_secs));
    }
    let crc = crc8(&bytes[env.start..]);
    bytes.push(crc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{
        Bundle, DtnTime, Identity, Keyring, Limits, PayloadKind, Priority, Realm, Recipient,
        SealParams,
    };
    use proptest::prelude::*;

    fn keyring(seed: u8) -> Keyring {
        let realm = Realm::new("r", [3; 32]).unwrap();
        Keyring::new(Identity::from_seed([seed; 32]), vec![realm])
    }

    fn sealed(group: bool, created: bool, eph: bool, hop_limit: u8, len: usize) -> Bundle {
        let a = keyring(1);
        let b = keyring(2);
        let recipient = if group {
            Recipient::Group { endpoint: None }
        } else {
            Recipient::Node {
                id: b.node_id(),
                endpoint: Some("svc".into()),
            }
        };
        let params = SealParams {
            recipient,
            realm: "r".into(),
            created: created.then_some(DtnTime(1000)),
            sequence: 300,
            lifetime: 70_000,
            priority: Priority::Bulk,
            hop_limit,
            kind: PayloadKind::AppData,
            ephemeral: eph && !group,
            fragment: None,
        };
        a.seal(&params, &vec![7u8; len], &mut ferry_core::rand_core::OsRng)
            .unwrap()
    }

    proptest! {
        #[test]
        fn matches_core_codec(
            group in any::<bool>(), created in any::<bool>(), eph in any::<bool>(),
            hop_limit in 0u8..4, len in 0usize..300, held in 0u64..u64::MAX / 4,
            pre_age in 0u64..200,
        ) {
            let mut b = sealed(group, created, eph, hop_limit, len);
            b.add_age(pre_age);
            let mut bytes = b.encode();
            let env = read_envelope(&bytes).unwrap();
            prop_assert_eq!(env.hop_count, 0);
            prop_assert_eq!(env.hop_limit, hop_limit);
            prop_assert_eq!(env.age, b.envelope().age);
            let mut expected = b.clone();
            match expected.add_hop() {
                Ok(()) => {
                    expected.add_age(held);
                    forward_in_place(&mut bytes, held).unwrap();
                    prop_assert_eq!(&bytes, &expected.encode());
                    let again = Bundle::decode(&bytes, &Limits::default()).unwrap();
                    prop_assert_eq!(again.id(), b.id());
                }
                Err(_) => {
                    let before = bytes.clone();
                    prop_assert_eq!(forward_in_place(&mut bytes, held), Err(EnvelopeError::HopLimit));
                    prop_assert_eq!(bytes, before);
                }
            }
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..200), held in any::<u64>()) {
            let _ = forward_in_place(&mut bytes, held);
        }
    }
}
