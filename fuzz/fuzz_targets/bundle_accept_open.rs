//! The receive path: `Keyring::accept` then `open`, with fixed keys (see src/lib.rs),
//! so that seed bundles pass the realm filter and the signature.
//!
//! Every input runs the raw path: `accept(bytes, NOW)`, `open`, and `open_verified` on
//! whatever decodes (signature not checked, so mutated headers and ciphertexts reach
//! the decryption). Wherever a bundle is opened, `open_head_verified` (MAC and prefix
//! only) and `open_verified_owned` must agree with `open_verified`. Mutations cannot forge a signature or an AEAD tag, so inputs whose
//! first byte is not the bundle version also drive two structured paths:
//!
//! - even first byte: seal with fuzzer-chosen parameters and payload, then accept and
//!   open; the result must match the parameters exactly.
//! - odd first byte: a realm-group bundle with a fuzzer-chosen *plaintext*, encrypted
//!   and signed by the harness; `open` must agree with an independent implementation
//!   of the plaintext rules.
#![no_main]

use std::sync::OnceLock;

use ferry_core::{
    Bundle, DecodeError, DtnTime, Identity, Keyring, OpenError, PayloadKind, Priority, Recipient,
    SealError, SealParams,
};
use ferry_fuzz::{
    assert_canonical, group_bundle, receiver, reference_plaintext, sender, FixedRng, NOW,
    OTHER_SEED, REALM_NAME, REALM_SECRET,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

struct Keys {
    receiver: Keyring,
    sender: Keyring,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        receiver: receiver(),
        sender: sender(),
    })
}

/// The head-only and in-place opens agree with `open_verified`: same kind, endpoint
/// and payload length, or the same error.
fn opens_agree(k: &Keys, b: &Bundle) {
    let full = k.receiver.open_verified(b);
    assert_eq!(full, k.receiver.open_verified_owned(b.clone()));
    match (k.receiver.open_head_verified(b), &full) {
        (Ok(h), Ok(o)) => {
            assert_eq!(h.kind, o.kind);
            assert_eq!(h.endpoint, o.endpoint);
            assert_eq!(h.payload_len, o.payload.len());
        }
        (Err(e), Err(f)) => assert_eq!(&e, f),
        (h, o) => panic!("open_head_verified {h:?} against open_verified {o:?}"),
    }
}

fn raw(k: &Keys, data: &[u8]) {
    let accepted = k.receiver.accept(data, Some(NOW));
    if let Ok(b) = &accepted {
        assert_canonical(data, b);
        let opened = k.receiver.open(b);
        assert_eq!(opened, k.receiver.open_verified(b));
        if let Ok(o) = &opened {
            assert!(o
                .endpoint
                .as_ref()
                .is_none_or(|e| !e.is_empty() && e.len() <= 64));
            assert!(k.receiver.is_for_us(b));
        }
    }
    // Without the signature check, tampered bundles reach the decryption.
    if let Ok(b) = Bundle::decode(data, k.receiver.limits()) {
        opens_agree(k, &b);
        let verified = k.receiver.open_verified(&b);
        if accepted.is_ok() {
            assert_eq!(verified, k.receiver.open(&b));
        }
    } else {
        assert!(accepted.is_err());
    }
}

fn expired(created: Option<DtnTime>, lifetime: u32) -> bool {
    created.is_some_and(|c| u64::from(NOW.0) >= c.plus(u64::from(lifetime)))
}

fn seal_round_trip(k: &Keys, u: &mut Unstructured<'_>) -> Result<()> {
    let me = k.receiver.node_id();
    let other = Identity::from_seed(OTHER_SEED).node_id();
    let to: u8 = u.arbitrary()?;
    let endpoint: Option<String> = u.arbitrary()?;
    let recipient = match to % 3 {
        0 => Recipient::Node {
            id: me,
            endpoint: endpoint.clone(),
        },
        1 => Recipient::Group {
            endpoint: endpoint.clone(),
        },
        _ => Recipient::Node {
            id: other,
            endpoint: endpoint.clone(),
        },
    };
    let params = SealParams {
        recipient: recipient.clone(),
        realm: REALM_NAME.into(),
        created: u.arbitrary::<Option<u32>>()?.map(DtnTime),
        sequence: u.arbitrary()?,
        lifetime: u.arbitrary()?,
        priority: Priority::from_u8(u.int_in_range(0..=2)?).unwrap_or_default(),
        hop_limit: u.arbitrary()?,
        kind: PayloadKind::from_u8(u.int_in_range(0..=7)?).unwrap_or(PayloadKind::AppData),
        ephemeral: u.arbitrary()?,
        fragment: u
            .arbitrary::<Option<(u64, u32, u32, u64, u64)>>()?
            .map(|(message, index, count, offset, total)| ferry_core::Fragment {
                message,
                index,
                count,
                offset,
                total,
            }),
    };
    let rng_seed: u64 = u.arbitrary()?;
    let payload = u.bytes(u.len())?;
    let sealed = k.sender.seal(&params, payload, &mut FixedRng(rng_seed));
    let bad_endpoint = endpoint
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > 64);
    let group = matches!(recipient, Recipient::Group { .. });
    let expected_err = if params.lifetime == 0 {
        Some(SealError::ZeroLifetime)
    } else if group && params.ephemeral {
        Some(SealError::EphemeralGroup)
    } else if bad_endpoint {
        Some(SealError::BadEndpoint)
    } else if let Some(f) = params.fragment.filter(|f| !f.fits(payload.len())) {
        Some(SealError::BadFragment {
            index: f.index,
            count: f.count,
            len: payload.len(),
        })
    } else {
        None
    };
    let b = match (sealed, expected_err) {
        (Ok(b), None) => b,
        (Err(e), Some(want)) => {
            assert_eq!(e, want);
            return Ok(());
        }
        (got, want) => panic!("seal gave {got:?}, expected error {want:?} for {params:?}"),
    };
    let wire = b.encode();
    assert_canonical(&wire, &b);
    let h = b.header();
    assert_eq!(
        (
            h.sequence,
            h.lifetime,
            h.hop_limit,
            h.priority,
            h.created,
            h.source
        ),
        (
            params.sequence,
            params.lifetime,
            params.hop_limit,
            params.priority,
            params.created,
            k.sender.node_id()
        )
    );
    assert_eq!(h.ephemeral_key.is_some(), params.ephemeral);

    let accepted = k.receiver.accept(&wire, Some(NOW));
    if expired(params.created, params.lifetime) {
        assert_eq!(accepted.err(), Some(OpenError::Expired));
        return Ok(());
    }
    let got = accepted.expect("a fresh bundle from the realm is accepted");
    assert!(got == b);
    let opened = k.receiver.open(&got);
    opens_agree(k, &got);
    if to % 3 == 2 {
        assert_eq!(opened, Err(OpenError::NotForUs));
        return Ok(());
    }
    let o = opened.expect("a bundle to this node opens");
    assert_eq!(o.payload, payload);
    assert_eq!(o.kind, params.kind);
    assert_eq!(o.endpoint, endpoint);
    assert_eq!(o.fragment, params.fragment);
    // The sender can read its group bundles, never its node bundles.
    let own = k.sender.open(&got);
    if group {
        assert_eq!(own.ok(), Some(o));
    } else {
        assert_eq!(own, Err(OpenError::NotForUs));
    }
    Ok(())
}

fn arbitrary_plaintext(k: &Keys, u: &mut Unstructured<'_>) -> Result<()> {
    let params = SealParams {
        recipient: Recipient::Group { endpoint: None },
        realm: REALM_NAME.into(),
        created: u
            .arbitrary::<Option<u32>>()?
            .map(|c| DtnTime(NOW.0.saturating_sub(c % 1000))),
        sequence: u.arbitrary()?,
        lifetime: u.int_in_range(1000..=u32::MAX)?,
        priority: Priority::from_u8(u.int_in_range(0..=2)?).unwrap_or_default(),
        hop_limit: u.arbitrary()?,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    };
    let plaintext = u.bytes(u.len())?;
    let template = k
        .sender
        .seal(&params, b"", &mut FixedRng(0))
        .expect("valid group params seal");
    let wire = group_bundle(
        k.sender.identity(),
        &REALM_SECRET,
        template.header_bytes(),
        plaintext,
    );
    let accepted = k.receiver.accept(&wire, Some(NOW));
    if plaintext.is_empty() {
        // Every plaintext has at least its kind byte: a bare tag is refused unopened.
        assert_eq!(
            accepted.err(),
            Some(OpenError::Decode(DecodeError::CiphertextTooShort))
        );
        return Ok(());
    }
    let b = accepted.expect("hand-built group bundle is accepted");
    assert_canonical(&wire, &b);
    let opened = k.receiver.open(&b);
    opens_agree(k, &b);
    match reference_plaintext(plaintext) {
        Some(want) => assert_eq!(opened, Ok(want)),
        None => assert_eq!(opened, Err(OpenError::BadPlaintext)),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    raw(k, data);
    match data.split_first() {
        Some((&mode, rest)) if mode != ferry_core::VERSION => {
            let mut u = Unstructured::new(rest);
            let _ = if mode % 2 == 0 {
                seal_round_trip(k, &mut u)
            } else {
                arbitrary_plaintext(k, &mut u)
            };
        }
        _ => {}
    }
});
