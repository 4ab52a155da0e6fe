//! Seal/open costs next to the raw primitives, measured in the same run.
//!
//! `cargo bench -p ferry-core --bench crypto`
//!
//! A plain timing harness (not criterion) so that the table can print the ratios the
//! targets are stated in. Each figure is the median of 7 rounds of at least 250 ms.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use ferry_core::rand_core::OsRng;
use ferry_core::{
    Bundle, BundleId, DtnTime, Identity, Keyring, Limits, PayloadKind, Priority, Realm, Recipient,
    SealParams,
};

/// Median nanoseconds per call of `f`.
fn measure(mut f: impl FnMut()) -> f64 {
    // Warm up and find an iteration count filling about 250 ms.
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let el = t.elapsed();
        if el > Duration::from_millis(60) {
            iters = ((iters as f64) * 250.0 / el.as_secs_f64() / 1000.0).max(1.0) as u64;
            break;
        }
        iters *= 2;
    }
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[3]
}

/// Median nanoseconds of 5 timed runs of `f` (which times its own part), for
/// work too large to repeat thousands of times.
fn measure_once(mut f: impl FnMut() -> Duration) -> f64 {
    f();
    let mut runs: Vec<f64> = (0..5).map(|_| f().as_nanos() as f64).collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[2]
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn row(name: &str, ns: f64) {
    println!("{name:<44} {:>12.2} µs {:>14.0} /s", ns / 1000.0, 1e9 / ns);
}

fn main() {
    let realm = Realm::new("bench", [1; 32]).unwrap();
    let alice = Keyring::new(Identity::generate(&mut OsRng), vec![realm.clone()]);
    let bob = Keyring::new(Identity::generate(&mut OsRng), vec![realm.clone()]);
    let cold = Keyring::with_options(
        Identity::generate(&mut OsRng),
        vec![realm],
        0,
        Limits::default(),
    );
    let now = DtnTime(850_000_000);
    let mut params = SealParams {
        recipient: Recipient::Node {
            id: bob.node_id(),
            endpoint: None,
        },
        realm: "bench".into(),
        created: Some(now),
        sequence: 1,
        lifetime: 7200,
        priority: Priority::Normal,
        hop_limit: 32,
        kind: PayloadKind::AppData,
        ephemeral: false,
        fragment: None,
    };

    let b50 = alice.seal(&params, &[0x42; 50], &mut OsRng).unwrap();
    println!("== encoded sizes ==");
    println!(
        "50-byte payload, signed + encrypted to one node (pair mode): {} bytes",
        b50.encoded_len()
    );
    params.ephemeral = true;
    let e50 = alice.seal(&params, &[0x42; 50], &mut OsRng).unwrap();
    println!(
        "50-byte payload, ephemeral mode:                           {} bytes",
        e50.encoded_len()
    );
    params.ephemeral = false;
    params.created = None;
    let n50 = alice.seal(&params, &[0x42; 50], &mut OsRng).unwrap();
    println!(
        "50-byte payload, no clock (age in envelope):               {} bytes",
        n50.encoded_len()
    );
    params.created = Some(now);

    let sk = SigningKey::generate(&mut OsRng);
    let vk = sk.verifying_key();
    let aead = ChaCha20Poly1305::new(Key::from_slice(&[7; 32]));

    for size in [64usize, 64 * 1024] {
        println!("\n== payload {size} bytes ==");
        let payload = vec![0xab; size];
        let sealed = alice.seal(&params, &payload, &mut OsRng).unwrap();
        let wire = sealed.encode();
        let signed = sealed.signed_bytes().to_vec();
        let sig = sk.sign(&signed);

        let sign_ns = measure(|| {
            black_box(sk.sign(black_box(&signed)));
        });
        let verify_ns = measure(|| {
            black_box(vk.verify(black_box(&signed), &sig)).unwrap();
        });
        // What sealing and opening sign and verify since wire version 2: the
        // context and the bundle id, a BLAKE3 hash of the signed bytes.
        let id_ns = measure(|| {
            black_box(BundleId::of_signed_bytes(black_box(&signed)));
        });
        let msg = sealed.signature_message();
        let msg_sig = sk.sign(&msg);
        let sign_msg_ns = measure(|| {
            black_box(sk.sign(black_box(&msg)));
        });
        let verify_msg_ns = measure(|| {
            black_box(vk.verify(black_box(&msg), &msg_sig)).unwrap();
        });
        let mut buf = payload.clone();
        let aead_enc_ns = measure(|| {
            black_box(
                aead.encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &[], &mut buf)
                    .unwrap(),
            );
        });
        let ct = sealed.ciphertext();
        let aead_dec_ns = {
            // Decryption = copy + keystream + Poly1305, as in open().
            let tag_ct = aead
                .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &[], &mut buf)
                .unwrap();
            let enc = buf.clone();
            measure(|| {
                let mut pt = enc.clone();
                aead.decrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &[], &mut pt, &tag_ct)
                    .unwrap();
                black_box(pt);
            })
        };
        let _ = ct;
        let mut seq = 10u64;
        let seal_ns = measure(|| {
            seq += 1;
            params.sequence = seq;
            black_box(
                alice
                    .seal(&params, black_box(&payload), &mut OsRng)
                    .unwrap(),
            );
        });
        let open_ns = measure(|| {
            let b = bob.accept(black_box(&wire), Some(now)).unwrap();
            black_box(bob.open_verified(&b).unwrap());
        });
        let seal_cold_ns = measure(|| {
            black_box(cold.seal(&params, black_box(&payload), &mut OsRng).unwrap());
        });
        params.ephemeral = true;
        let seal_eph_ns = measure(|| {
            black_box(
                alice
                    .seal(&params, black_box(&payload), &mut OsRng)
                    .unwrap(),
            );
        });
        params.ephemeral = false;
        let decode_ns = measure(|| {
            black_box(Bundle::decode(black_box(&wire), &Limits::default()).unwrap());
        });

        row("ed25519 sign (signed bytes)", sign_ns);
        row("ed25519 verify (signed bytes)", verify_ns);
        row("blake3 bundle id (signed bytes)", id_ns);
        row("ed25519 sign (context + id, 48 B)", sign_msg_ns);
        row("ed25519 verify (context + id, 48 B)", verify_msg_ns);
        row("chacha20-poly1305 encrypt", aead_enc_ns);
        row("chacha20-poly1305 decrypt (with copy)", aead_dec_ns);
        row("decode only (no crypto)", decode_ns);
        row("seal, peers met before (pair cache warm)", seal_ns);
        row("seal, first contact (X25519 each time)", seal_cold_ns);
        row("seal, ephemeral mode", seal_eph_ns);
        row("open: decode+realm+expiry+verify+decrypt", open_ns);
        println!(
            "seal / (sign + encrypt) = {:.3}   (target <= 1.3)",
            seal_ns / (sign_ns + aead_enc_ns)
        );
        println!(
            "open / (verify + decrypt) = {:.3}   (target <= 1.3)",
            open_ns / (verify_ns + aead_dec_ns)
        );
    }

    // A large payload in the caller's buffer, as an upload is sealed and a stored
    // record is opened for a local app.
    let size = env_usize("FERRY_BENCH_LARGE", 100 << 20);
    println!("\n== payload {size} bytes, in the caller's buffer ==");
    let payload = vec![0x5a; size];
    let mut seq = 1_000_000u64;
    let mut last = None;
    let seal_large = measure_once(|| {
        seq += 1;
        params.sequence = seq;
        let plan = alice.plan_seal(&params, size, &mut OsRng).unwrap();
        let mut buf = Vec::with_capacity(plan.total_len());
        buf.resize(plan.head_len(), 0);
        buf.extend_from_slice(&payload);
        let t = Instant::now();
        let b = alice.seal_planned(plan, buf).unwrap();
        let el = t.elapsed();
        last = Some(b);
        el
    });
    let sealed = last.take().unwrap();
    let wire = sealed.encode();
    let decode_large = measure_once(|| {
        let bytes = wire.clone();
        let t = Instant::now();
        black_box(Bundle::decode_vec(bytes, &Limits::default()).unwrap());
        t.elapsed()
    });
    let decode_stored = measure_once(|| {
        let bytes = wire.clone();
        let t = Instant::now();
        black_box(Bundle::decode_stored(bytes, &Limits::default(), sealed.id()).unwrap());
        t.elapsed()
    });
    let open_large = measure_once(|| {
        let b = Bundle::decode_stored(wire.clone(), &Limits::default(), sealed.id()).unwrap();
        let t = Instant::now();
        black_box(bob.open_verified_in_place(b).unwrap());
        t.elapsed()
    });
    let mib = size as f64 / f64::from(1u32 << 20);
    let large = |name: &str, ns: f64| {
        println!(
            "{name:<52} {:>9.1} ms {:>8.0} MiB/s",
            ns / 1e6,
            mib / (ns / 1e9)
        );
    };
    large("seal_planned (encrypt, MAC, id hash, sign)", seal_large);
    large("decode_vec (layout and the id's BLAKE3 pass)", decode_large);
    large("decode_stored (layout; the record's id)", decode_stored);
    large("open_verified_in_place (MAC, decrypt)", open_large);

    println!("\n== batch verification (64 bundles of 64 B) ==");
    let batch: Vec<Bundle> = (0..64)
        .map(|i| {
            params.sequence = 1000 + i;
            alice.seal(&params, &[0u8; 64], &mut OsRng).unwrap()
        })
        .collect();
    let refs: Vec<&Bundle> = batch.iter().collect();
    let batch_ns = measure(|| {
        black_box(bob.verify_many(black_box(&refs)));
    });
    row("verify_many, per bundle", batch_ns / 64.0);
    let x = x25519_dalek::StaticSecret::random_from_rng(OsRng);
    let xp = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(OsRng));
    let x_ns = measure(|| {
        black_box(x.diffie_hellman(black_box(&xp)));
    });
    row("x25519 agreement", x_ns);
}
