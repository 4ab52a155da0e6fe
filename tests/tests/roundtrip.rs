//! Sealing on one node and opening on another, through files and pipes, in the three
//! key modes (pair, ephemeral, group), and what `inspect --json` reports about it.

use std::fs;

use ferry_core::Realm;
use ferry_tests::{byte_ramp, field_str, field_u64, inspect_ok, Ferry, Node, Rng};

/// A and B in realm `valley` (B joins with A's `ferry realm` output).
fn two_nodes(dir: &std::path::Path) -> (Node, Node, String) {
    let a = Node::init(dir.join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.join("b"), &["--realm", &share]);
    assert_ne!(a.id, b.id, "two inits made the same identity");
    assert_eq!(b.realm_share("valley"), share, "B holds A's realm secret");
    (a, b, share)
}

fn realm_tag_hex(share: &str) -> String {
    Realm::from_share_string(share)
        .expect("ferry realm prints a valid share string")
        .tag()
        .to_string()
}

/// Fields every bundle A sealed must show.
#[track_caller]
fn check_common(v: &serde_json::Value, a: &Node, share: &str, file_len: usize) {
    assert_eq!(field_u64(v, "version"), 2, "{v}");
    assert_eq!(field_str(v, "source"), a.id, "{v}");
    assert_eq!(field_str(v, "realm_tag"), realm_tag_hex(share), "{v}");
    assert_eq!(field_u64(v, "encoded_bytes"), file_len as u64, "{v}");
    assert_eq!(v["signature_valid"], true, "{v}");
    assert_eq!(field_u64(v, "hop_count"), 0, "{v}");
    assert_eq!(field_u64(v, "hop_limit"), 32, "{v}");
    assert!(
        v["created_dtn"].is_u64(),
        "the test machine's clock is set: {v}"
    );
    assert!(v["age_secs"].is_null(), "{v}");
    assert_eq!(field_str(v, "id").len(), 64, "{v}");
}

#[test]
fn binary_payload_through_files_opens_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, share) = two_nodes(dir.path());
    let payload = byte_ramp(64); // 16 KiB of 0..=255
    let pfile = dir.path().join("payload.bin");
    fs::write(&pfile, &payload).unwrap();
    let bfile = dir.path().join("b.bundle");

    let out = a
        .cmd(&["bundle", "seal", "--to", &b.id, "--priority", "expedited"])
        .args(["--lifetime", "2h", "--out"])
        .arg_path(&bfile)
        .arg_path(&pfile)
        .run()
        .success();
    assert!(out.stdout.is_empty(), "--out leaves stdout empty");
    let bundle = fs::read(&bfile).unwrap();

    let v = inspect_ok(&bundle);
    check_common(&v, &a, &share, bundle.len());
    assert_eq!(field_str(&v, "priority"), "expedited");
    assert_eq!(field_u64(&v, "lifetime_secs"), 7200);
    assert_eq!(field_str(&v, "key_mode"), "pair");
    assert_eq!(field_str(&v, "destination"), b.destination());
    // kind byte + payload + Poly1305 tag
    assert_eq!(field_u64(&v, "ciphertext_bytes"), payload.len() as u64 + 17);
    // The same report from a file argument and as text.
    let from_file = Ferry::new(["bundle", "inspect", "--json"])
        .arg_path(&bfile)
        .run()
        .success()
        .json();
    assert_eq!(from_file, v);
    let text = Ferry::new(["bundle", "inspect"])
        .arg_path(&bfile)
        .run()
        .success()
        .stdout_text();
    assert!(text.contains(&a.id) && text.contains("valid"), "{text}");

    // B opens it from the file to stdout, and to --out.
    let opened = b.cmd(&["bundle", "open"]).arg_path(&bfile).run().success();
    assert!(opened.stdout == payload, "payload differs after open");
    let outfile = dir.path().join("opened.bin");
    b.cmd(&["bundle", "open"])
        .arg("--out")
        .arg_path(&outfile)
        .arg_path(&bfile)
        .run()
        .success();
    assert!(fs::read(&outfile).unwrap() == payload);
}

#[test]
fn one_mib_random_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, share) = two_nodes(dir.path());
    let payload = Rng::new(0x5eed_0001).bytes(1 << 20);
    let pfile = dir.path().join("random.bin");
    fs::write(&pfile, &payload).unwrap();
    let bfile = dir.path().join("random.bundle");
    a.cmd(&[
        "bundle",
        "seal",
        "--to",
        &b.id,
        "--priority",
        "bulk",
        "--out",
    ])
    .arg_path(&bfile)
    .arg_path(&pfile)
    .run()
    .success();
    let bundle = fs::read(&bfile).unwrap();
    assert!(bundle.len() > payload.len());
    let v = inspect_ok(&bundle);
    check_common(&v, &a, &share, bundle.len());
    assert_eq!(field_str(&v, "priority"), "bulk");
    assert_eq!(field_u64(&v, "lifetime_secs"), 86_400, "config default 1d");
    assert_eq!(field_str(&v, "key_mode"), "pair");

    let outfile = dir.path().join("random.out");
    b.cmd(&["bundle", "open"])
        .arg("--out")
        .arg_path(&outfile)
        .arg_path(&bfile)
        .run()
        .success();
    assert!(
        fs::read(&outfile).unwrap() == payload,
        "1 MiB payload differs"
    );
}

#[test]
fn stdin_to_stdout_and_back_through_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, share) = two_nodes(dir.path());
    let payload = byte_ramp(3);
    // Payload from stdin, explicitly as `-`, bundle to stdout.
    let bundle = a.seal(&["--to", &b.id, "--lifetime", "90s", "-"], &payload);
    let v = inspect_ok(&bundle);
    check_common(&v, &a, &share, bundle.len());
    assert_eq!(field_str(&v, "priority"), "normal");
    assert_eq!(field_u64(&v, "lifetime_secs"), 90);
    // Bundle to B on stdin.
    assert!(b.open(&bundle).success().stdout == payload);
    // An empty payload is a valid payload.
    let empty = a.seal(&["--to", &b.id], b"");
    assert!(b.open(&empty).success().stdout.is_empty());
}

#[test]
fn ephemeral_mode_round_trips_with_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, share) = two_nodes(dir.path());
    let payload = byte_ramp(2);
    let pair = a.seal(&["--to", &b.id], &payload);
    let eph = a.seal(
        &["--to", &b.id, "--ephemeral", "--endpoint", "mail"],
        &payload,
    );
    let v = inspect_ok(&eph);
    check_common(&v, &a, &share, eph.len());
    assert_eq!(field_str(&v, "key_mode"), "ephemeral");
    assert_eq!(field_str(&v, "destination"), b.destination());
    // 32-byte ephemeral key in the header; the endpoint (length byte + "mail") sealed
    // inside the ciphertext.
    assert_eq!(eph.len(), pair.len() + 32 + 5);
    assert_eq!(
        field_u64(&v, "ciphertext_bytes"),
        payload.len() as u64 + 17 + 5
    );

    let out = b
        .cmd(&["bundle", "open", "-v", "-"])
        .stdin(eph.clone())
        .run()
        .success();
    assert!(out.stdout == payload);
    assert!(
        out.stderr.contains("endpoint mail") && out.stderr.contains(&a.id),
        "-v names the source and endpoint: {}",
        out.stderr
    );
    // The sender itself cannot open what it sealed to B in ephemeral mode.
    a.open(&eph).failure_with("another node");
}

#[test]
fn group_bundles_open_for_every_member_and_no_outsider() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, share) = two_nodes(dir.path());
    let c = Node::init(dir.path().join("c"), &["--realm", &share]);
    // Same realm name, different secret: another realm.
    let d = Node::init(dir.path().join("d"), &["--realm", "valley"]);
    // Member of another realm and of valley: can open valley's group bundles.
    let e = Node::init(
        dir.path().join("e"),
        &["--realm", "hills", "--realm", &share],
    );
    let payload = Rng::new(7).bytes(5000);
    let bundle = a.seal(&["--group", "--endpoint", "news"], &payload);
    let v = inspect_ok(&bundle);
    check_common(&v, &a, &share, bundle.len());
    assert_eq!(field_str(&v, "key_mode"), "group");
    assert_eq!(field_str(&v, "destination"), "realm-group");

    for member in [&a, &b, &c, &e] {
        let out = member.open(&bundle).success();
        assert!(
            out.stdout == payload,
            "member {} got another payload",
            member.id
        );
    }
    d.open(&bundle).failure_with("foreign realm");

    // E sends a group bundle in its second realm: A (valley only) opens it.
    let from_e = e.seal(&["--group", "--realm", "valley"], b"hi");
    assert!(a.open(&from_e).success().stdout == b"hi");
    // In its first realm, hills, A is an outsider.
    let hills = e.seal(&["--group", "--realm", "hills"], b"hi");
    a.open(&hills).failure_with("foreign realm");
    // A has no realm called hills to send in.
    a.cmd(&["bundle", "seal", "--group", "--realm", "hills"])
        .stdin(b"x".to_vec())
        .run()
        .failure_with("hills");
    // Group bundles cannot use an ephemeral key.
    a.cmd(&["bundle", "seal", "--group", "--ephemeral"])
        .stdin(b"x".to_vec())
        .run()
        .failure_with("ephemeral");
}
