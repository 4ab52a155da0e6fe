//! Prints the worked example of `docs/wire-format.md`: a 50-byte message from a
//! fixed-seed node to another, field by field in hex.
//!
//! `cargo run -p ferry-core --example wire_example`
#![allow(clippy::print_stdout)]

use ferry_core::{DtnTime, Identity, Keyring, PayloadKind, Priority, Realm, Recipient, SealParams};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let realm = Realm::new("valley", [0x11; 32]).expect("valid realm");
    let alice = Keyring::new(Identity::from_seed([0xa1; 32]), vec![realm.clone()]);
    let bob = Keyring::new(Identity::from_seed([0xb0; 32]), vec![realm]);
    let params = SealParams {
        recipient: Recipient::Node {
            id: bob.node_id(),
            endpoint: None,
        },
        realm: "valley".into(),
        created: Some(DtnTime(848_623_254)), // 2026-11-22T00:40:54Z
        sequence: 1,
        lifetime: 7200,
        priority: Priority::Normal,
        hop_limit: 32,
        kind: PayloadKind::AppData,
        ephemeral: false,
    };
    let payload = b"Water level at station 7: 1.42 m, rising. -- field";
    let payload = &payload[..50];
    let bundle = alice
        .seal(&params, payload, &mut ferry_core::rand_core::OsRng)
        .expect("seal");
    let wire = bundle.encode();
    println!("source node id      {}", alice.node_id());
    println!("destination node id {}", bob.node_id());
    println!("payload (50 bytes)  {:?}", String::from_utf8_lossy(payload));
    println!("encoded length      {} bytes", wire.len());
    println!("bundle id           {}", bundle.id());
    let mut at = 0usize;
    let mut field = |name: &str, n: usize| {
        println!("{name:<22} {}", hex(&wire[at..at + n]));
        at += n;
    };
    field("version", 1);
    field("flags", 1);
    field("realm tag", 4);
    field("source", 32);
    field("destination hash", 8);
    field("created (u32 LE)", 4);
    field("sequence (varint)", 1);
    field("lifetime (varint)", 2);
    field("hop limit", 1);
    field("ciphertext length", 1);
    field("ciphertext", 67);
    field("signature", 64);
    field("hop count", 1);
    field("envelope CRC-8", 1);
    assert_eq!(at, wire.len());
    println!("full                 {}", hex(&wire));
}
