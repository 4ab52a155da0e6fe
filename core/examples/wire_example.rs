//! Prints the worked example of `docs/wire-format.md`: a 50-byte message from a
//! fixed-seed node to another, field by field in hex.
//!
//! `cargo run -p ferry-core --example wire_example`
#![allow(clippy::print_stdout)]

#[path = "../tests/support/wire.rs"]
mod support;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let (alice, bob, bundle) = support::worked_example();
    let payload = support::PAYLOAD;
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
