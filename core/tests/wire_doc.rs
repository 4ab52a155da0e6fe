//! `docs/wire-format.md` must show the bytes the code actually produces.

use ferry_core::{DtnTime, Identity, Keyring, PayloadKind, Priority, Realm, Recipient, SealParams};

#[test]
fn worked_example_in_docs_matches_the_codec() {
    let realm = Realm::new("valley", [0x11; 32]).unwrap();
    let alice = Keyring::new(Identity::from_seed([0xa1; 32]), vec![realm.clone()]);
    let bob = Keyring::new(Identity::from_seed([0xb0; 32]), vec![realm]);
    let params = SealParams {
        recipient: Recipient::Node {
            id: bob.node_id(),
            endpoint: None,
        },
        realm: "valley".into(),
        created: Some(DtnTime(848_623_254)),
        sequence: 1,
        lifetime: 7200,
        priority: Priority::Normal,
        hop_limit: 32,
        kind: PayloadKind::AppData,
        ephemeral: false,
    };
    let payload = &b"Water level at station 7: 1.42 m, rising. -- field"[..50];
    let wire = alice
        .seal(&params, payload, &mut ferry_core::rand_core::OsRng)
        .unwrap()
        .encode();
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
