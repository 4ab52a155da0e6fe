//! `ferry run` with `[drives] watch`: a drive (a directory holding `ferry/`) that
//! appears under a watched root is a contact: it is synced at once; its removal ends
//! the contact. Real daemon, real directories.

use std::path::Path;
use std::time::Duration;

use ferry_tests::nodes::{payload, realm_of, TestNode, SETTLE};
use ferry_tests::wait_until;

/// Sets `[drives]` in the node's ferry.toml.
fn watch(n: &TestNode, root: &Path) {
    let path = n.config_path();
    let text = std::fs::read_to_string(&path).expect("read config");
    let start = text.find("[drives]").expect("a [drives] section");
    let end = start + text[start..].find("\n\n").expect("end of [drives]");
    let section = format!(
        "[drives]\nwatch = [{:?}]\npoll_secs = 1\nmax_bytes = 0",
        root.display().to_string()
    );
    let new = format!("{}{}{}", &text[..start], section, &text[end..]);
    std::fs::write(&path, new).expect("write config");
}

fn packs(mount: &Path) -> usize {
    std::fs::read_dir(mount.join("ferry/packs"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[test]
fn a_drive_plugged_into_a_watched_root_is_synced_and_unplugging_ends_the_contact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, "epidemic");
    let c = TestNode::init(dir.path(), "c", Some(&realm_of(&a)), "epidemic");
    let root = dir.path().join("media");
    std::fs::create_dir_all(&root).expect("root");
    watch(&a, &root);
    let da = a.start();
    let data = payload(20_000, 3);
    let id = a.send(&c.node.id, &[], &data);

    // A directory without `ferry/` is not a drive: left alone.
    let stick = root.join("usb-stick");
    std::fs::create_dir_all(&stick).expect("stick");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!stick.join("ferry").exists(), "{}", da.log_text());

    // A prepared drive (an empty `ferry/`, as `mkdir ferry` leaves it) under
    // ROOT/USER/LABEL, as udisks mounts it: synced without anyone asking.
    let drive = root.join("user").join("FIELD");
    std::fs::create_dir_all(drive.join("ferry")).expect("drive");
    assert!(
        wait_until(SETTLE, || packs(&drive) == 1),
        "the watched drive was not synced:\n{}",
        da.log_text()
    );
    assert!(wait_until(SETTLE, || da
        .log_text()
        .contains("drive contact up")));
    assert!(!da.log_text().contains("drive contact down"));
    // Still plugged in: nothing more is written, and custody stays with A.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(packs(&drive), 1);
    assert!(a.stored_ids().contains(&id));

    // Unplugged (moved away, as an unmount does): the contact ends.
    let carried = dir.path().join("carried");
    std::fs::rename(&drive, &carried).expect("unplug");
    assert!(
        wait_until(SETTLE, || da.log_text().contains("drive contact down")),
        "{}",
        da.log_text()
    );
    da.stop();

    // The drive carries the bundle to C, byte for byte.
    let out = c
        .node
        .cmd(&["drive", "sync", "--json"])
        .arg_path(&carried)
        .run()
        .success();
    assert_eq!(out.json()["imported"], 1);
    let dc = c.start();
    let got = c.recv(10, &dir.path().join("c-in"));
    assert_eq!(got.len(), 1, "{}", dc.log_text());
    assert_eq!(got[0].0, id);
    assert!(got[0].1 == data);
    dc.stop();
}
