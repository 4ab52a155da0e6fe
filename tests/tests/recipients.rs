//! Bundles are readable by their recipient only: another node of the same realm gets
//! "addressed to another node", a node of another realm gets "foreign realm".

use ferry_tests::{byte_ramp, Node};

#[test]
fn only_the_addressed_node_opens_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let c = Node::init(dir.path().join("c"), &["--realm", &share]);
    let payload = byte_ramp(1);

    for mode in [&[][..], &["--ephemeral"][..]] {
        let mut args = vec!["--to", b.id.as_str()];
        args.extend_from_slice(mode);
        let bundle = a.seal(&args, &payload);
        assert!(b.open(&bundle).success().stdout == payload, "{mode:?}");
        // C is in the realm and verifies the signature, but it is not the recipient.
        c.open(&bundle).failure_with("another node");
        // Neither is the sender.
        a.open(&bundle).failure_with("another node");
    }
}

#[test]
fn nodes_of_other_realms_see_a_foreign_realm() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    // Another realm name; the same name with another secret; the default realm.
    let f1 = Node::init(dir.path().join("f1"), &["--realm", "hills"]);
    let f2 = Node::init(dir.path().join("f2"), &["--realm", "valley"]);
    let f3 = Node::init(dir.path().join("f3"), &[]);
    assert_ne!(
        f2.realm_share("valley"),
        share,
        "fresh realms get fresh secrets"
    );

    let to_b = a.seal(&["--to", &b.id], b"for b");
    let group = a.seal(&["--group"], b"for valley");
    for outsider in [&f1, &f2, &f3] {
        for bundle in [&to_b, &group] {
            outsider.open(bundle).failure_with("foreign realm");
        }
    }
    // A foreign node can address B directly, but B is not in its realm.
    let from_f1 = f1.seal(&["--to", &b.id], b"hello");
    b.open(&from_f1).failure_with("foreign realm");
}
