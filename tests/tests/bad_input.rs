//! Bad bundle files never make `ferry` panic: truncations, trailing bytes, garbage,
//! empty and oversized files, and single-bit flips all end in a clean one-line error
//! (or, for `inspect`, exit 3 when only the signature is wrong).

use std::fs;

use ferry_core::{Bundle, Limits};
use ferry_tests::{field_u64, inspect, inspect_ok, Ferry, Node, Output, Rng};

/// `inspect` on damaged input: exit 1 (one-line error) or exit 3 (decoded, signature
/// invalid, report on stdout). Never 0 here, never a panic.
#[track_caller]
fn inspect_rejects(bundle: &[u8], what: &str) -> Output {
    let out = inspect(bundle);
    match out.code() {
        Some(1) => {
            out.failure();
        }
        Some(3) => {
            let v = out.json();
            assert_eq!(v["signature_valid"], false, "{what}: {v}");
            assert!(out.stderr.is_empty(), "{what}: {}", out.stderr);
        }
        _ => panic!("{what}: inspect accepted damaged input: {out:?}"),
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    b: Node,
    small: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let small_payload = b"a small payload".to_vec();
    let small = a.seal(&["--to", &b.id], &small_payload);
    assert_eq!(b.open(&small).success().stdout, small_payload);
    Fixture {
        _dir: dir,
        b,
        small,
    }
}

#[test]
fn every_truncation_is_refused() {
    let f = fixture();
    for len in 0..f.small.len() {
        let cut = &f.small[..len];
        let what = format!("truncated to {len} of {}", f.small.len());
        let out = inspect_rejects(cut, &what);
        assert_eq!(out.code(), Some(1), "{what}: a truncated bundle decoded");
        f.b.open(cut).failure();
    }
}

#[test]
fn trailing_bytes_garbage_and_empty_files_are_refused() {
    let f = fixture();
    let mut rng = Rng::new(0x0bad_1190);
    for extra in [&[0u8][..], b"\n", b"garbage", &[0xff; 100]] {
        let mut long = f.small.clone();
        long.extend_from_slice(extra);
        inspect(&long).failure_with("unexpected bytes after the end");
        f.b.open(&long).failure();
    }
    // Concatenated bundles are not one bundle.
    let twice = [f.small.clone(), f.small.clone()].concat();
    inspect(&twice).failure();
    f.b.open(&twice).failure();

    inspect(b"").failure_with("truncated");
    f.b.open(b"").failure();

    for i in 0..40 {
        let len = 1 + rng.below(600);
        let mut junk = rng.bytes(len);
        if i % 2 == 0 {
            // Valid version and flags, so decoding gets further in.
            junk[0] = ferry_core::VERSION;
            if len > 1 {
                junk[1] &= 0b0011_0001;
            }
        }
        inspect_rejects(&junk, &format!("garbage #{i}"));
        f.b.open(&junk).failure();
    }
    // Text files, and a plausible header followed by a huge length.
    inspect(b"hello world\n").failure();
    f.b.open(b"hello world\n").failure();
    // A valid header followed by a ciphertext length of u64::MAX, and of 64 KiB.
    let header_len = Bundle::decode(&f.small, &Limits::default())
        .expect("fixture decodes")
        .header()
        .encoded_len();
    for len_varint in [
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        &[0x80, 0x80, 0x04],
    ] {
        let mut huge_len = f.small[..header_len].to_vec();
        huge_len.extend_from_slice(len_varint);
        huge_len.extend_from_slice(&f.small[header_len + 1..]);
        inspect(&huge_len).failure_with("truncated");
        f.b.open(&huge_len).failure();
    }
}

#[test]
fn files_over_the_size_limit_are_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.bundle");
    fs::write(&path, &f.small).unwrap();
    let n = f.small.len();
    // At the limit it is read; one byte over, refused before decoding.
    Ferry::new(["bundle", "inspect", "--max-bytes", &n.to_string()])
        .arg_path(&path)
        .run()
        .success();
    Ferry::new(["bundle", "inspect", "--max-bytes", &(n - 1).to_string()])
        .arg_path(&path)
        .run()
        .failure_with("limit");
    Ferry::new([
        "bundle",
        "inspect",
        "--max-bytes",
        &(n - 1).to_string(),
        "-",
    ])
    .stdin(f.small.clone())
    .run()
    .failure_with("limit");
    Ferry::new(["bundle", "inspect", "--max-bytes", "0", "-"])
        .stdin(f.small.clone())
        .run()
        .failure_with("limit");

    // `open` takes its limit from store.max_bundle_bytes: a 1 MiB bundle is refused by a
    // node configured for 1 KiB bundles, and opens once the limit is raised.
    let big_payload = Rng::new(3).bytes(1 << 20);
    let share = f.b.realm_share("valley");
    let c = Node::init(dir.path().join("c"), &["--realm", &share]);
    let big = c.seal(&["--to", &f.b.id], &big_payload);
    let toml_path = f.b.home.join("ferry.toml");
    let toml = ferry_tests::set_config_line(&toml_path, "max_bundle_bytes", "1024");
    f.b.open(&big).failure_with("limit");
    fs::write(&toml_path, toml).unwrap();
    assert!(f.b.open(&big).success().stdout == big_payload);
}

#[test]
fn every_single_bit_flip_is_refused() {
    let f = fixture();
    let bits = f.small.len() * 8;
    // The last byte (envelope CRC), the envelope and the signature are covered by the
    // exhaustive part below; the sample adds one flip in every byte plus random ones.
    let mut flips: Vec<usize> = (0..f.small.len()).map(|i| i * 8 + (i * 5) % 8).collect();
    let mut rng = Rng::new(0xf11b);
    flips.extend((0..120).map(|_| rng.below(bits)));
    // Every bit of the header's first 16 bytes (version, flags, realm tag) and of the
    // last 8 bytes (end of the signature, envelope).
    flips.extend(0..128);
    flips.extend(bits - 64..bits);
    flips.sort_unstable();
    flips.dedup();
    assert!(flips.len() >= 200, "only {} flips", flips.len());
    let mut inspect_exit3 = 0;
    for bit in flips {
        let mut damaged = f.small.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let what = format!("bit {bit} (byte {}) flipped", bit / 8);
        f.b.open(&damaged).failure();
        // Decodes with a wrong signature (3) or does not decode (1); never valid.
        if inspect_rejects(&damaged, &what).code() == Some(3) {
            inspect_exit3 += 1;
        }
    }
    assert!(
        inspect_exit3 > 0,
        "no flip decoded with a bad signature: inspect's exit 3 went untested"
    );
}

#[test]
fn damaged_large_bundle_is_refused() {
    let f = fixture();
    let share = f.b.realm_share("valley");
    let dir = tempfile::tempdir().unwrap();
    let c = Node::init(dir.path().join("c"), &["--realm", &share]);
    let payload = Rng::new(11).bytes(1 << 20);
    let big = c.seal(&["--to", &f.b.id, "--ephemeral"], &payload);
    let v = inspect_ok(&big);
    assert_eq!(field_u64(&v, "encoded_bytes"), big.len() as u64);
    let mut rng = Rng::new(12);
    // Truncations at random points (including inside the ciphertext) and bit flips
    // deep inside the ciphertext, where only the signature or the AEAD tag notices.
    for _ in 0..16 {
        let len = rng.below(big.len());
        inspect_rejects(&big[..len], &format!("1 MiB bundle cut to {len}"));
        f.b.open(&big[..len]).failure();
    }
    for _ in 0..16 {
        let bit = rng.below(big.len() * 8);
        let mut damaged = big.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        inspect_rejects(&damaged, &format!("1 MiB bundle, bit {bit} flipped"));
        f.b.open(&damaged).failure();
    }
}
