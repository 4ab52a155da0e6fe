//! Public-API tests of the bundle codec and sealing.

use ferry_core::rand_core::{OsRng, SeedableRng};
use ferry_core::{
    Bundle, DecodeError, Destination, DtnTime, Fragment, Identity, Keyring, Limits, OpenError,
    PayloadKind, Priority, Realm, Recipient, SealError, SealParams, MAX_FRAGMENTS,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;

const NOW: DtnTime = DtnTime(850_000_000);

fn realm() -> Realm {
    Realm::new("valley", [42; 32]).unwrap()
}

fn node(seed: u8, realms: Vec<Realm>) -> Keyring {
    Keyring::new(Identity::from_seed([seed; 32]), realms)
}

fn params(to: &Keyring) -> SealParams {
    SealParams {
        recipient: Recipient::Node {
            id: to.node_id(),
            endpoint: None,
        },
        realm: "valley".into(),
        created: Some(NOW),
        sequence: 1,
        lifetime: 7200,
        priority: Priority::Normal,
        hop_limit: 32,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    }
}

#[test]
fn fifty_byte_message_fits_in_190_bytes() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let bundle = a.seal(&params(&b), &[0x55; 50], &mut OsRng).unwrap();
    let len = bundle.encode().len();
    assert_eq!(len, bundle.encoded_len());
    assert!(len <= 190, "50-byte payload encodes to {len} bytes");
}

#[test]
fn round_trip_all_modes() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let cases = [
        (false, false, None, Some(NOW)),
        (true, false, Some("mail".to_string()), Some(NOW)),
        (false, true, Some("hints".to_string()), None),
        (false, false, None, None),
    ];
    for (ephemeral, group, endpoint, created) in cases {
        let mut p = params(&b);
        p.ephemeral = ephemeral;
        p.created = created;
        p.kind = PayloadKind::Delta;
        p.recipient = if group {
            Recipient::Group {
                endpoint: endpoint.clone(),
            }
        } else {
            Recipient::Node {
                id: b.node_id(),
                endpoint: endpoint.clone(),
            }
        };
        let sealed = a.seal(&p, b"payload bytes", &mut OsRng).unwrap();
        let wire = sealed.encode();
        let got = b.accept(&wire, Some(NOW)).unwrap();
        assert_eq!(got, sealed);
        assert_eq!(got.encode(), wire);
        let opened = b.open(&got).unwrap();
        assert_eq!(opened.payload, b"payload bytes");
        assert_eq!(opened.kind, PayloadKind::Delta);
        assert_eq!(opened.endpoint, endpoint);
        if group {
            assert_eq!(got.header().destination, Destination::Group);
            // The source, also in the realm, can read group bundles too.
            assert_eq!(a.open(&got).unwrap().payload, b"payload bytes");
        }
        assert_eq!(got.envelope().age.is_some(), created.is_none());
    }
}

#[test]
fn wrong_recipient_cannot_decrypt() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let c = node(3, vec![realm()]);
    for ephemeral in [false, true] {
        let mut p = params(&b);
        p.ephemeral = ephemeral;
        let bundle = a.seal(&p, b"for bob only", &mut OsRng).unwrap();
        let at_c = c.accept(&bundle.encode(), Some(NOW)).unwrap();
        assert_eq!(c.open(&at_c), Err(OpenError::NotForUs));
        assert!(!c.is_for_us(&at_c));
        assert!(b.is_for_us(&at_c));
    }
    // A member of another realm with the same name but another secret cannot read
    // group bundles, and drops them as foreign before any other work.
    let mut p = params(&b);
    p.recipient = Recipient::Group { endpoint: None };
    let bundle = a.seal(&p, b"realm news", &mut OsRng).unwrap();
    let outsider = node(4, vec![Realm::new("valley", [43; 32]).unwrap()]);
    assert_eq!(
        outsider.accept(&bundle.encode(), Some(NOW)),
        Err(OpenError::ForeignRealm)
    );
    assert_eq!(outsider.open(&bundle), Err(OpenError::ForeignRealm));
}

#[test]
fn foreign_realm_is_rejected_before_signature_verification() {
    let other = Realm::new("other", [9; 32]).unwrap();
    let a = node(1, vec![other.clone()]);
    let b = node(2, vec![realm()]);
    let mut p = params(&b);
    p.realm = "other".into();
    let mut wire = a.seal(&p, b"x", &mut OsRng).unwrap().encode();
    // Break the signature: a node checking signatures first would say BadSignature.
    let sig_byte = wire.len() - 3 - 10;
    wire[sig_byte] ^= 0xff;
    assert_eq!(b.accept(&wire, Some(NOW)), Err(OpenError::ForeignRealm));
    // The same broken bundle is a signature error for a member of its realm.
    let member = node(5, vec![other]);
    assert_eq!(
        member.accept(&wire, Some(NOW)),
        Err(OpenError::BadSignature)
    );
}

#[test]
fn expired_oversized_truncated_and_trailing_are_typed_errors() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let bundle = a.seal(&params(&b), &[1; 100], &mut OsRng).unwrap();
    let wire = bundle.encode();

    let later = DtnTime(NOW.0 + 7200);
    assert_eq!(b.accept(&wire, Some(later)), Err(OpenError::Expired));
    assert!(b.accept(&wire, Some(DtnTime(NOW.0 + 7199))).is_ok());

    let small = Limits {
        max_bundle_bytes: wire.len() - 1,
    };
    assert_eq!(
        Bundle::decode(&wire, &small),
        Err(DecodeError::TooLarge {
            len: wire.len(),
            max: wire.len() - 1
        })
    );

    for cut in 0..wire.len() {
        match Bundle::decode(&wire[..cut], &Limits::default()) {
            Err(DecodeError::Truncated(_)) | Err(DecodeError::EnvelopeChecksum) => {}
            other => panic!("truncated at {cut}: {other:?}"),
        }
    }

    let mut long = wire.clone();
    long.extend_from_slice(b"junk");
    assert_eq!(
        Bundle::decode(&long, &Limits::default()),
        Err(DecodeError::TrailingBytes(4))
    );

    // Version 1 signed the whole signed bytes; its bundles are refused, not misread.
    for v in [1, 3] {
        let mut other = wire.clone();
        other[0] = v;
        assert_eq!(
            Bundle::decode(&other, &Limits::default()),
            Err(DecodeError::UnsupportedVersion(v))
        );
    }
}

#[test]
fn age_based_expiry_without_a_clock() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let mut p = params(&b);
    p.created = None;
    p.lifetime = 60;
    let mut bundle = a.seal(&p, b"no clock", &mut OsRng).unwrap();
    assert!(!bundle.is_expired(None));
    bundle.add_age(59);
    assert!(b.accept(&bundle.encode(), None).is_ok());
    bundle.add_age(1);
    assert_eq!(b.accept(&bundle.encode(), None), Err(OpenError::Expired));
}

#[test]
fn hop_limit_is_enforced() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let mut p = params(&b);
    p.hop_limit = 2;
    let mut bundle = a.seal(&p, b"hops", &mut OsRng).unwrap();
    bundle.add_hop().unwrap();
    bundle.add_hop().unwrap();
    assert!(bundle.add_hop().is_err());
    assert_eq!(bundle.envelope().hop_count, 2);
    // Forwarding changes only the envelope: the id and signature stay valid.
    let got = b.accept(&bundle.encode(), Some(NOW)).unwrap();
    assert_eq!(got.id(), bundle.id());
    // A hand-made envelope above the limit is refused.
    let mut wire = bundle.encode();
    let n = wire.len();
    wire[n - 2] = 3;
    wire[n - 1] = 0; // CRC will not match either way; fix it up below.
    let crc = ferry_core::codec::crc8(&wire[n - 2..n - 1]);
    wire[n - 1] = crc;
    assert_eq!(
        Bundle::decode(&wire, &Limits::default()),
        Err(DecodeError::HopLimitExceeded { count: 3, limit: 2 })
    );
}

#[test]
fn seal_errors_are_typed() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let mut p = params(&b);
    p.realm = "nope".into();
    assert_eq!(
        a.seal(&p, b"", &mut OsRng).unwrap_err(),
        SealError::UnknownRealm("nope".into())
    );
    let mut p = params(&b);
    p.lifetime = 0;
    assert_eq!(
        a.seal(&p, b"", &mut OsRng).unwrap_err(),
        SealError::ZeroLifetime
    );
    let mut p = params(&b);
    p.recipient = Recipient::Group { endpoint: None };
    p.ephemeral = true;
    assert_eq!(
        a.seal(&p, b"", &mut OsRng).unwrap_err(),
        SealError::EphemeralGroup
    );
    let mut p = params(&b);
    p.recipient = Recipient::Node {
        id: b.node_id(),
        endpoint: Some("x".repeat(65)),
    };
    assert_eq!(
        a.seal(&p, b"", &mut OsRng).unwrap_err(),
        SealError::BadEndpoint
    );
    let small = Keyring::with_options(
        Identity::from_seed([1; 32]),
        vec![realm()],
        8,
        Limits {
            max_bundle_bytes: 200,
        },
    );
    assert!(matches!(
        small.seal(&params(&b), &[0; 200], &mut OsRng),
        Err(SealError::TooLarge { .. })
    ));
}

#[test]
fn batch_verification_matches_single() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let mut bundles = Vec::new();
    for seq in 0..8 {
        let mut p = params(&b);
        p.sequence = seq;
        bundles.push(a.seal(&p, &[seq as u8; 10], &mut OsRng).unwrap());
    }
    let refs: Vec<&Bundle> = bundles.iter().collect();
    assert!(ferry_core::verify_many(&refs).iter().all(Result::is_ok));
    // Swap one signature: exactly that bundle fails.
    let mut wire = bundles[3].encode();
    let sig_at = bundles[3].signed_bytes().len();
    wire[sig_at] ^= 1;
    // Decode does not verify, so the tampered bundle decodes.
    let bad = Bundle::decode(&wire, &Limits::default()).unwrap();
    let mut refs: Vec<&Bundle> = bundles.iter().collect();
    refs[3] = &bad;
    let res = ferry_core::verify_many(&refs);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(r.is_ok(), i != 3, "bundle {i}");
    }
}

/// The signature is over `SIG_CONTEXT || id`: the same key's signature over the raw
/// signed bytes (version 1's rule) or over the bare id is refused, and the id binds
/// every signed byte (a changed ciphertext is a new id the signature does not cover).
#[test]
fn the_signature_covers_the_context_and_the_id() {
    let seed = [1u8; 32];
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let sealed = a.seal(&params(&b), b"the bytes", &mut OsRng).unwrap();
    let wire = sealed.encode();
    let sig_at = sealed.signed_bytes().len();
    assert_eq!(
        sealed.signature(),
        Identity::from_seed(seed).sign(&ferry_core::signature_message(&sealed.id()))
    );
    assert!(sealed
        .signature_message()
        .starts_with(ferry_core::SIG_CONTEXT));
    let with_sig = |sig: [u8; 64]| {
        let mut w = wire.clone();
        w[sig_at..sig_at + 64].copy_from_slice(&sig);
        w
    };
    let identity = Identity::from_seed(seed);
    for sig in [
        identity.sign(sealed.signed_bytes()),
        identity.sign(sealed.id().as_bytes()),
    ] {
        assert_eq!(
            b.accept(&with_sig(sig), Some(NOW)),
            Err(OpenError::BadSignature)
        );
    }
    assert!(b.accept(&with_sig(sealed.signature()), Some(NOW)).is_ok());
    // A byte of ciphertext changed: decoding gives another id, and the signature fails.
    let mut changed = wire.clone();
    changed[sig_at - 1] ^= 0x01;
    let decoded = Bundle::decode(&changed, &Limits::default()).unwrap();
    assert_ne!(decoded.id(), sealed.id());
    assert_eq!(ferry_core::verify(&decoded), Err(OpenError::BadSignature));
}

/// The receiver's whole pipeline: decode, realm, expiry, signature, decryption.
fn receive(b: &Keyring, wire: &[u8]) -> Result<Vec<u8>, OpenError> {
    let bundle = b.accept(wire, Some(NOW))?;
    Ok(b.open(&bundle)?.payload)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn encode_decode_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        seq in any::<u64>(),
        lifetime in 1u32..=u32::MAX,
        prio in 0u8..3,
        created in proptest::option::of(any::<u32>()),
        ephemeral in any::<bool>(),
        group in any::<bool>(),
        hop_limit in any::<u8>(),
        endpoint in proptest::option::of("[a-z]{1,64}"),
        age in any::<u32>(),
        piece in proptest::option::of(
            (any::<u64>(), 2u32..=MAX_FRAGMENTS, any::<u32>(), 0u64..1 << 40, 0u64..1 << 20)
        ),
    ) {
        // A fragment descriptor that fits the payload (none fits an empty one).
        let fragment = piece.filter(|_| !payload.is_empty()).map(
            |(message, count, index, offset, extra)| Fragment {
                message,
                index: index % count,
                count,
                offset,
                total: offset + payload.len() as u64 + extra,
            },
        );
        let a = node(1, vec![realm()]);
        let b = node(2, vec![realm()]);
        let p = SealParams {
            recipient: if group { Recipient::Group { endpoint: endpoint.clone() } }
                       else { Recipient::Node { id: b.node_id(), endpoint: endpoint.clone() } },
            realm: "valley".into(),
            created: created.map(DtnTime),
            sequence: seq,
            lifetime,
            priority: Priority::from_u8(prio).unwrap(),
            hop_limit,
            kind: PayloadKind::Reply,
            ephemeral: ephemeral && !group,
            fragment,
        };
        // Sealing in a caller's buffer (plan, payload behind the planned head) gives
        // the same bundle as sealing a slice, with the same randomness.
        let rng_seed = seq;
        let copied = a.seal(&p, &payload, &mut ChaCha20Rng::seed_from_u64(rng_seed)).unwrap();
        let plan = a.plan_seal(&p, payload.len(), &mut ChaCha20Rng::seed_from_u64(rng_seed)).unwrap();
        prop_assert_eq!(plan.payload_len(), payload.len());
        let mut buf = vec![0xAA; plan.head_len()];
        buf.extend_from_slice(&payload);
        let total = plan.total_len();
        let in_place = a.seal_planned(plan, buf).unwrap();
        prop_assert_eq!(&in_place, &copied);
        prop_assert!(in_place.encode().len() <= total);
        let plan = a.plan_seal(&p, payload.len(), &mut OsRng).unwrap();
        let short = vec![0u8; plan.head_len() + payload.len().saturating_sub(1)];
        if !payload.is_empty() {
            prop_assert!(
                matches!(a.seal_planned(plan, short), Err(SealError::PlanMismatch { .. })),
                "a buffer shorter than planned is refused"
            );
        }
        let mut sealed = a.seal(&p, &payload, &mut OsRng).unwrap();
        sealed.add_age(u64::from(age));
        let wire = sealed.encode();
        let decoded = Bundle::decode(&wire, &Limits::default()).unwrap();
        prop_assert_eq!(&decoded, &sealed);
        let owned = Bundle::decode_vec(wire.clone(), &Limits::default()).unwrap();
        prop_assert_eq!(&owned, &sealed);
        prop_assert_eq!(&owned.clone().into_encoded(), &wire);
        prop_assert_eq!(&sealed.clone().into_encoded(), &wire);
        prop_assert_eq!(decoded.encode(), wire);
        prop_assert!(ferry_core::verify(&decoded).is_ok());
        let opened = b.open(&decoded).unwrap();
        let head = b.open_head_verified(&decoded).unwrap();
        prop_assert_eq!(head.kind, opened.kind);
        prop_assert_eq!(&head.endpoint, &opened.endpoint);
        prop_assert_eq!(head.payload_len, payload.len());
        prop_assert_eq!(head.fragment, fragment);
        prop_assert_eq!(opened.fragment, fragment);
        let owned = b.open_verified_owned(decoded.clone()).unwrap();
        prop_assert_eq!(&owned, &opened);
        let in_place = b.open_verified_in_place(decoded.clone()).unwrap();
        prop_assert_eq!(in_place.kind, opened.kind);
        prop_assert_eq!(&in_place.endpoint, &opened.endpoint);
        prop_assert_eq!(in_place.fragment, fragment);
        prop_assert_eq!(&in_place.bytes[in_place.payload.clone()], &payload[..]);
        prop_assert_eq!(opened.payload, payload);
        prop_assert_eq!(opened.endpoint, endpoint);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let b = node(2, vec![realm()]);
        let by_ref = Bundle::decode(&bytes, &Limits::default());
        // Owned decoding agrees, and hands the bytes back on error.
        match (Bundle::decode_vec(bytes.clone(), &Limits::default()), by_ref) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err((e, back)), Err(f)) => {
                prop_assert_eq!(e, f);
                prop_assert_eq!(back, bytes.clone());
            }
            (x, y) => prop_assert!(false, "owned {:?} by reference {:?}", x.is_ok(), y.is_ok()),
        }
        let _ = receive(&b, &bytes);
    }
}

/// Every single-bit flip anywhere in an encoded bundle is rejected by decoding, the
/// realm filter, the signature or the AEAD: never accepted, never a panic.
#[test]
fn every_single_bit_flip_is_rejected() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let variants: Vec<SealParams> = {
        let base = params(&b);
        let mut eph = base.clone();
        eph.ephemeral = true;
        let mut group = base.clone();
        group.recipient = Recipient::Group {
            endpoint: Some("news".into()),
        };
        let mut noclock = base.clone();
        noclock.created = None;
        noclock.sequence = 300;
        vec![base, eph, group, noclock]
    };
    for p in variants {
        let wire = a.seal(&p, &[0xa5; 50], &mut OsRng).unwrap().encode();
        assert_eq!(receive(&b, &wire).unwrap(), vec![0xa5; 50]);
        for bit in 0..wire.len() * 8 {
            let mut w = wire.clone();
            w[bit / 8] ^= 1 << (bit % 8);
            let r = receive(&b, &w);
            assert!(r.is_err(), "flip of bit {bit} accepted: {p:?}");
        }
    }
}

/// A source that signs a ciphertext its destination cannot authenticate (a wrong key,
/// or bytes altered before signing): the signature holds, the AEAD refuses it, and
/// the MAC-only check refuses it the same way.
#[test]
fn a_signed_but_unauthentic_ciphertext_is_refused_by_both_opens() {
    use ferry_core::{signature_message, BundleId};
    let a_id = Identity::from_seed([1; 32]);
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let mut p = params(&b);
    p.recipient = Recipient::Node {
        id: b.node_id(),
        endpoint: Some("mail".into()),
    };
    let sealed = a.seal(&p, &[0x5a; 300], &mut OsRng).unwrap();
    let head = b.open_head_verified(&sealed).unwrap();
    assert_eq!(head.endpoint.as_deref(), Some("mail"));
    assert_eq!(head.payload_len, 300);
    let wire = sealed.encode();
    // The envelope of a bundle with a creation time: hop count, checksum.
    assert!(p.created.is_some());
    let env = 2;
    let sig_at = wire.len() - env - 64;
    // The first ciphertext byte (inside the prefix), one in the middle, the tag's last.
    for at in [sealed.header_bytes().len() + 2, sig_at - 150, sig_at - 1] {
        let mut w = wire.clone();
        w[at] ^= 0x40;
        let id = BundleId::of_signed_bytes(&w[..sig_at]);
        w[sig_at..sig_at + 64].copy_from_slice(&a_id.sign(&signature_message(&id)));
        let forged = b
            .accept(&w, Some(NOW))
            .expect("the signature is the source's");
        assert!(
            matches!(b.open_verified(&forged), Err(OpenError::Decrypt)),
            "byte {at}"
        );
        assert!(
            matches!(
                b.open_verified_owned(forged.clone()),
                Err(OpenError::Decrypt)
            ),
            "byte {at}"
        );
        // The keyring keeps the heads it authenticated, by id: the genuine
        // bundle's (opened above) does not answer for the forged one, and a refusal
        // is not kept.
        for _ in 0..2 {
            assert!(
                matches!(b.open_head_verified(&forged), Err(OpenError::Decrypt)),
                "byte {at}"
            );
        }
    }
    assert_eq!(b.open_head_verified(&sealed).unwrap(), head);
}

/// The head-only open reads the longest endpoint there is (64 bytes, the most its
/// prefix bound allows) whatever the payload's length, even none.
#[test]
fn the_head_open_reads_the_longest_endpoint() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let ep = "e".repeat(64);
    let mut p = params(&b);
    p.recipient = Recipient::Node {
        id: b.node_id(),
        endpoint: Some(ep.clone()),
    };
    for payload in [&[][..], &[9u8][..], &[7u8; 100][..]] {
        let sealed = a.seal(&p, payload, &mut OsRng).unwrap();
        let head = b.open_head_verified(&sealed).unwrap();
        assert_eq!(head.endpoint.as_deref(), Some(ep.as_str()));
        assert_eq!(head.payload_len, payload.len());
        let opened = b.open_verified(&sealed).unwrap();
        assert_eq!(opened.payload, payload);
        assert_eq!(opened.endpoint, head.endpoint);
    }
    // With the widest fragment descriptor too.
    for payload in [&[9u8][..], &[7u8; 100][..]] {
        let len = payload.len() as u64;
        p.fragment = Some(Fragment {
            message: u64::MAX,
            index: MAX_FRAGMENTS - 1,
            count: MAX_FRAGMENTS,
            offset: u64::MAX - len,
            total: u64::MAX,
        });
        let sealed = a.seal(&p, payload, &mut OsRng).unwrap();
        let head = b.open_head_verified(&sealed).unwrap();
        assert_eq!(head.endpoint.as_deref(), Some(ep.as_str()));
        assert_eq!(head.fragment, p.fragment);
        assert_eq!(head.payload_len, payload.len());
        assert_eq!(b.open_verified(&sealed).unwrap().payload, payload);
    }
}

/// A fragment descriptor that does not fit its payload is refused when sealing.
#[test]
fn fragments_that_do_not_fit_are_refused() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    let fits = Fragment {
        message: 3,
        index: 1,
        count: 3,
        offset: 10,
        total: 30,
    };
    let mut p = params(&b);
    p.fragment = Some(fits);
    let sealed = a.seal(&p, &[1; 10], &mut OsRng).unwrap();
    assert_eq!(b.open(&sealed).unwrap().fragment, Some(fits));
    for bad in [
        Fragment {
            count: 1,
            index: 0,
            ..fits
        },
        Fragment { index: 3, ..fits },
        Fragment {
            count: MAX_FRAGMENTS + 1,
            ..fits
        },
        Fragment { offset: 21, ..fits },
        Fragment {
            offset: u64::MAX,
            total: u64::MAX,
            ..fits
        },
    ] {
        p.fragment = Some(bad);
        assert!(
            matches!(
                a.seal(&p, &[1; 10], &mut OsRng),
                Err(SealError::BadFragment { .. })
            ),
            "{bad:?}"
        );
    }
    p.fragment = Some(fits);
    assert!(matches!(
        a.seal(&p, &[], &mut OsRng),
        Err(SealError::BadFragment { .. })
    ));
}

/// Payloads that cross the one-pass AEAD's 64 KiB pieces seal to bundles whose id is
/// the hash of their signed bytes and that open back; a stored record's bytes decode
/// under their id without the hash, and damaged ones still fail to open.
#[test]
fn large_payloads_seal_in_pieces_and_stored_bytes_open_under_their_id() {
    let a = node(1, vec![realm()]);
    let b = node(2, vec![realm()]);
    for len in [65_535usize, 65_536, 65_537, 200_003, 1 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut p = params(&b);
        p.sequence = len as u64;
        let sealed = a.seal(&p, &payload, &mut OsRng).unwrap();
        let wire = sealed.encode();
        let decoded = Bundle::decode(&wire, &Limits::default()).unwrap();
        assert_eq!(
            decoded.id(),
            sealed.id(),
            "len {len}: id of the signed bytes"
        );
        assert!(ferry_core::verify(&decoded).is_ok());
        let stored = Bundle::decode_stored(wire.clone(), &Limits::default(), sealed.id()).unwrap();
        assert_eq!(stored, decoded);
        let opened = b.open_verified_in_place(stored).unwrap();
        assert_eq!(
            &opened.bytes[opened.payload.clone()],
            &payload[..],
            "len {len}"
        );
        // A byte of the stored ciphertext changed: the layout still decodes under the
        // record's id, and opening refuses it.
        let mut damaged = wire.clone();
        let at = wire.len() / 2;
        damaged[at] ^= 0x40;
        let stored = Bundle::decode_stored(damaged, &Limits::default(), sealed.id()).unwrap();
        assert!(matches!(
            b.open_verified_in_place(stored),
            Err(OpenError::Decrypt)
        ));
        // A broken layout is a typed error, with the bytes handed back.
        let (e, back) =
            Bundle::decode_stored(wire[..100].to_vec(), &Limits::default(), sealed.id())
                .unwrap_err();
        assert!(matches!(e, DecodeError::Truncated(_)), "{e:?}");
        assert_eq!(back.len(), 100);
    }
}
