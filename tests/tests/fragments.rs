//! Large payloads in fragments (`[store] fragment_bytes`): real `ferry` processes,
//! real QUIC on 127.0.0.1. Each fragment is a bundle of its own (forwarded and
//! kept in custody alone); the destination's app gets the payload whole, once.

use ferry_tests::nodes::{linked_pair, payload, post_chunked, post_sized, TestNode, SETTLE};
use ferry_tests::{set_config_line, wait_until};

/// Fragments of at most 64 KiB: the smallest setting, so that a payload of a few
/// hundred KiB makes many.
const FRAGMENT_BYTES: &str = "65536";

/// Fragments a payload of `len` bytes makes (64 KiB bundles, 1 KiB of headroom).
fn fragments_of(len: usize) -> usize {
    len.div_ceil(65_536 - 1024)
}

fn fragment_small(n: &TestNode) {
    set_config_line(&n.config_path(), "fragment_bytes", FRAGMENT_BYTES);
}

/// A payload larger than `fragment_bytes` is cut into fragments at the source,
/// by every submission path (the CLI, an upload of announced length, a chunked
/// one), and B's app gets it whole and byte-identical under the id `send` printed.
/// Every fragment gets its receipt: A learns of the delivery and keeps nothing.
#[test]
fn a_large_payload_travels_in_fragments_and_is_delivered_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = linked_pair(dir.path(), "epidemic");
    fragment_small(&a);
    let da = a.start();
    let db = b.start();
    assert!(wait_until(SETTLE, || a.links() == 1), "{}", db.log_text());

    // The CLI (`ferry send` announces the length).
    let data = payload(700_001, 21);
    let id = a.send(&b.node.id, &["--lifetime", "1h"], &data);
    let got = b.recv(20, &dir.path().join("b-in"));
    assert_eq!(got.len(), 1, "{}", db.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data, "payload differs");
    assert!(
        wait_until(SETTLE, || a.delivered().contains(&id)),
        "A never saw the receipt:\n{}",
        da.log_text()
    );
    // Only the receipt (one, listing every fragment) stays on either node.
    let only_receipt = |n: &TestNode| {
        let ids = n.stored_ids();
        ids.len() <= 1 && !ids.contains(&id)
    };
    assert!(
        wait_until(SETTLE, || only_receipt(&a) && only_receipt(&b)),
        "fragments left: A {:?}, B {:?}",
        a.stored_ids(),
        b.stored_ids()
    );

    // An upload of announced length in uneven pieces, and a chunked one; the
    // answer says how many fragments.
    let query = format!("to={}&lifetime=1h", b.node.id);
    let sized = payload(300_000, 22);
    let answer = post_sized(a.api, &query, &sized, sized.len(), &[3, 65_536, 1, 99_999]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("\"fragments\":{}", fragments_of(sized.len()))),
        "{answer}"
    );
    let chunked = payload(200_000, 23);
    let answer = post_chunked(a.api, &query, &chunked, &[1, 7, 70_000, 3]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("\"fragments\":{}", fragments_of(chunked.len()))),
        "{answer}"
    );
    let mut got = b.recv(20, &dir.path().join("b-in2"));
    assert_eq!(got.len(), 2, "{}", db.log_text());
    got.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    assert!(got[0].1 == sized, "payload differs");
    assert!(got[1].1 == chunked, "payload differs");

    // A payload that fits one bundle is not fragmented.
    let small = payload(10_000, 24);
    let answer = post_sized(a.api, &query, &small, small.len(), &[10_000]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("fragments"), "{answer}");
    assert_eq!(b.recv(20, &dir.path().join("b-in3")).len(), 1);

    // An upload cut off after some fragments were sealed: refused, and B's app
    // never sees a payload with pieces missing.
    let answer = post_sized(a.api, &query, &sized[..200_000], sized.len(), &[50_000]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(b.recv(2, &dir.path().join("b-in4")).is_empty());
    assert!(
        b.status().expect("status")["fragments_held"]["messages"]
            .as_u64()
            .is_some_and(|m| m <= 1),
        "{}",
        db.log_text()
    );
    da.stop();
    db.stop();
}

/// Store-carry-forward in fragments: A hands every fragment to the relay B and
/// stops; B is SIGKILLed with the fragments in custody; restarted, it meets C,
/// whose app gets the payload whole, exactly once, even after C restarts with its
/// fragments stored (the table of fragments is rebuilt from the store).
#[test]
fn fragments_survive_sigkill_on_a_relay_and_are_delivered_once() {
    let (dir, a, b, c) = ferry_tests::nodes::relay_trio();
    fragment_small(&a);

    let db = b.start();
    let da = a.start();
    assert!(wait_until(SETTLE, || b.links() == 1));
    let data = payload(400_000, 25);
    let n = fragments_of(data.len());
    let id = a.send(&c.node.id, &["--lifetime", "1h"], &data);
    assert!(
        wait_until(SETTLE, || b.stored_ids().len() == n),
        "B holds {} of {n} fragments:\n{}",
        b.stored_ids().len(),
        db.log_text()
    );
    assert!(b.stored_ids().contains(&id));
    db.kill();
    da.stop();

    let db = b.start();
    assert_eq!(b.stored_ids().len(), n, "custody lost across SIGKILL");
    let dc = c.start();
    // C stores every fragment before its app takes the payload; kill C too once
    // they are all in, so that the delivery comes from a rebuilt table.
    assert!(
        wait_until(SETTLE, || c.stored_ids().len() == n),
        "C holds {} of {n}:\n{}",
        c.stored_ids().len(),
        dc.log_text()
    );
    dc.kill();
    let dc = c.start();
    let inbox = dir.path().join("c-in");
    let got = c.recv(30, &inbox);
    assert_eq!(got.len(), 1, "{}", dc.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data, "payload differs");
    // The receipt releases every fragment on B (which keeps the receipt for A).
    assert!(
        wait_until(SETTLE, || {
            let ids = b.stored_ids();
            ids.len() <= 1 && !ids.contains(&id)
        }),
        "B kept {:?}:\n{}",
        b.stored_ids(),
        db.log_text()
    );
    dc.stop();
    let dc = c.start();
    assert!(c.recv(3, &inbox).is_empty(), "delivered twice");
    dc.stop();
    db.stop();
}

/// A fragmented upload that meets the store's byte quota part way is refused with
/// 507 "store full"; the fragments committed before it stay in custody (they travel
/// and expire like any bundle) and the node keeps answering.
#[test]
fn a_fragmented_upload_over_the_quota_is_refused_as_store_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = linked_pair(dir.path(), "epidemic");
    fragment_small(&a);
    // Both `[store] max_bytes` and `[drives] max_bytes` (unused here) take it.
    set_config_line(&a.config_path(), "max_bytes", "400000");
    let da = a.start();
    let query = format!("to={}&lifetime=1h", b.node.id);
    let data = payload(1_000_000, 26);
    let answer = post_sized(a.api, &query, &data, data.len(), &[65_536]);
    assert!(
        answer.starts_with("HTTP/1.1 507"),
        "{answer}\n{}",
        da.log_text()
    );
    assert!(answer.contains("store full"), "{answer}");
    let held = a.stored_ids().len();
    assert!(
        (1..fragments_of(data.len())).contains(&held),
        "{held} fragments stored"
    );
    // Still answering: the status, and a refusal for the next large upload.
    assert!(a.status().is_some());
    let answer = post_sized(a.api, &query, &data, data.len(), &[65_536]);
    assert!(answer.starts_with("HTTP/1.1 507"), "{answer}");
    da.stop();
}
