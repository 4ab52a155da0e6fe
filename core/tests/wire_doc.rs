//! `docs/wire-format.md` must show the bytes the code actually produces.

use ferry_core::DtnTime;

mod support;

#[test]
fn worked_example_in_docs_matches_the_codec() {
    let (_alice, bob, bundle) = support::wire::worked_example();
    let payload = &support::wire::PAYLOAD[..];
    let wire = bundle.encode();
    let hex: String = wire.iter().map(|b| format!("{b:02x}")).collect();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/wire-format.md"
    ))
    .unwrap();
    assert!(doc.contains(&hex), "docs/wire-format.md is stale: {hex}");
    assert!(doc.contains(&format!("encoded length      {} bytes", wire.len())));
    let opened = bob
        .open(&bob.accept(&wire, Some(DtnTime(848_623_300))).unwrap())
        .unwrap();
    assert_eq!(opened.payload, payload);
}
