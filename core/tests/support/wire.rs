//! The worked example of `docs/wire-format.md`, shared by the `wire_example` example
//! (which prints it) and the `wire_doc` test (which checks the doc against it).

use ferry_core::{
    Bundle, DtnTime, Identity, Keyring, PayloadKind, Priority, Realm, Recipient, SealParams,
};

/// The 50-byte payload of the example.
pub const PAYLOAD: &[u8; 50] = b"Water level at station 7: 1.42 m, rising. -- field";

/// Source (seed a1), destination (seed b0), and the sealed bundle: realm `valley`
/// (secret 11), created 2026-11-22T00:40:54Z, sequence 1, lifetime 2 h, pair mode.
pub fn worked_example() -> (Keyring, Keyring, Bundle) {
    let realm = Realm::new("valley", [0x11; 32]).expect("valid realm");
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
        fragment: None,
    };
    // Ed25519 is deterministic and pair mode draws no randomness: same bytes always.
    let bundle = alice
        .seal(&params, PAYLOAD, &mut ferry_core::rand_core::OsRng)
        .expect("seal");
    (alice, bob, bundle)
}
