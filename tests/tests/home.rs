//! The node home: `FERRY_HOME` stands for `--home`, and `init` never overwrites an
//! existing identity.

use std::fs;

use ferry_tests::{Ferry, Node};

#[test]
fn ferry_home_stands_for_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("envhome");
    let init = Ferry::new(["init", "--realm", "valley"])
        .env("FERRY_HOME", &home)
        .run()
        .success();
    let id = init.stdout_text().trim().to_owned();
    assert!(home.join("identity.key").is_file());
    assert!(home.join("realms/valley.key").is_file());

    let via_env = |args: &[&str]| Ferry::new(args).env("FERRY_HOME", &home).run().success();
    assert_eq!(via_env(&["id"]).stdout_text().trim(), id);
    assert_eq!(via_env(&["id", "--short"]).stdout_text().trim(), &id[..10]);
    let share = via_env(&["realm", "valley"])
        .stdout_text()
        .trim()
        .to_owned();
    assert!(share.starts_with("valley:"), "{share}");

    // The env-home node and a --home node exchange a bundle.
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let bundle = Ferry::new(["bundle", "seal", "--to", &b.id])
        .env("FERRY_HOME", &home)
        .stdin(b"via env".to_vec())
        .run()
        .success()
        .stdout;
    assert_eq!(b.open(&bundle).success().stdout, b"via env");
    let back = b.seal(&["--to", &id], b"reply");
    let opened = Ferry::new(["bundle", "open", "-"])
        .env("FERRY_HOME", &home)
        .stdin(back)
        .run()
        .success();
    assert_eq!(opened.stdout, b"reply");

    // --home wins over FERRY_HOME.
    let out = Ferry::new(["id", "--home"])
        .arg_path(&b.home)
        .env("FERRY_HOME", &home)
        .run()
        .success();
    assert_eq!(out.stdout_text().trim(), b.id);

    // A FERRY_HOME without a node is an error naming `ferry init`.
    Ferry::new(["id"])
        .env("FERRY_HOME", dir.path().join("nothing-here"))
        .run()
        .failure_with("ferry init");
}

#[test]
fn init_twice_refuses_and_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let files = ["identity.key", "realms/valley.key", "ferry.toml"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(a.home.join(f)).unwrap())
        .collect();

    // Plain, with other settings, through FERRY_HOME.
    a.cmd(&["init"])
        .run()
        .failure_with("already holds a node identity");
    a.cmd(&["init", "--realm", "other", "--routing", "prophet"])
        .run()
        .failure_with("already holds a node identity");
    Ferry::new(["init"])
        .env("FERRY_HOME", &a.home)
        .run()
        .failure_with("already holds a node identity");

    let out = a.cmd(&["id"]).run().success();
    assert_eq!(out.stdout_text().trim(), a.id, "node id changed");
    for (f, old) in files.iter().zip(&before) {
        assert!(
            &fs::read(a.home.join(f)).unwrap() == old,
            "{f} changed by a refused init"
        );
    }
    assert!(
        !a.home.join("realms/other.key").exists(),
        "a refused init wrote a realm key"
    );
}

#[test]
fn commands_on_a_missing_home_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let b = dir.path().join("b.bundle");
    fs::write(&b, b"x").unwrap();
    for args in [
        vec!["id"],
        vec!["realm"],
        vec!["bundle", "seal", "--group"],
        vec!["bundle", "open", b.to_str().unwrap()],
    ] {
        Ferry::new(&args)
            .arg("--home")
            .arg_path(&missing)
            .run()
            .failure_with("ferry init");
    }
    assert!(!missing.exists(), "a read-only command created the home");
}
