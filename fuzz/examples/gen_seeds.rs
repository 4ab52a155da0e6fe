//! Writes the seed corpora to `fuzz/seeds/<target>/` (run from `fuzz/`:
//! `cargo run --example gen_seeds`). The bundles are sealed with the fixed keys of
//! src/lib.rs, so the targets accept and open them. Deterministic: rerunning it
//! rewrites the same files.

use std::fs;
use std::path::Path;

use ferry_core::{Identity, Realm};
use ferry_fuzz::{seed_bundles, OTHER_SEED, REALM_NAME, REALM_SECRET};
use ferry_router::config::Config;

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), bytes)
}

fn main() -> std::io::Result<()> {
    let bundles = seed_bundles();
    for (name, bytes) in &bundles {
        write("bundle_decode", name, bytes)?;
        write("bundle_accept_open", name, bytes)?;
    }
    // Structured paths of bundle_accept_open (first byte not the bundle version).
    write("bundle_accept_open", "seal_round_trip", b"\x00\x00\x01\x04mail\x01\x00\x00\x00\x05\x00\x10\x0e\x00\x00\x01\x20\x00\x07\x00\x00\x00\x00\x00\x00\x00hello")?;
    // Found by the fuzzer (a harness bug): an empty plaintext, refused at decoding.
    write(
        "bundle_accept_open",
        "plaintext_empty",
        b"\x23\x00\x00\x01\x20\x00\x07\x00\x00\x00\x00\x00\x00\x00\x68",
    )?;
    write("bundle_accept_open", "plaintext_endpoint", b"\x03\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x20\x82\x04mailhello")?;
    write(
        "bundle_accept_open",
        "plaintext_plain",
        b"\x03\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x20\x00hello",
    )?;

    let other = Identity::from_seed(OTHER_SEED).node_id();
    let cfg = Config {
        peers: vec![
            format!("{other}@127.0.0.1:4556"),
            format!("{other}@[::1]:4556"),
        ],
        ..Config::default()
    };
    write(
        "config_parse",
        "default",
        Config::default().to_commented_toml().as_bytes(),
    )?;
    write("config_parse", "peers", cfg.to_commented_toml().as_bytes())?;
    write("config_parse", "empty", b"")?;
    write(
        "config_parse",
        "short",
        b"[routing]\npolicy = \"prophet\"\ndefault_lifetime = \"2h\"\n[store]\nmax_bundle_bytes = 4096\n",
    )?;

    let identity = Identity::from_seed(OTHER_SEED);
    let realm = Realm::new(REALM_NAME, REALM_SECRET).expect("valid realm");
    write("key_files", "identity", identity.to_key_file().as_bytes())?;
    write("key_files", "realm", realm.to_share_string().as_bytes())?;
    write("key_files", "node_id", other.to_string().as_bytes())?;
    write(
        "key_files",
        "node_id_hex",
        ferry_fuzz::hex(other.as_bytes()).as_bytes(),
    )?;
    write(
        "key_files",
        "bundle_id",
        ferry_fuzz::hex(&[0xab; 32]).as_bytes(),
    )?;
    write(
        "key_files",
        "peer",
        format!("{other}@pi.local:4556").as_bytes(),
    )?;
    write("key_files", "lifetime", b"2h")?;
    println!("wrote {} bundles and the text seeds", bundles.len());
    Ok(())
}
