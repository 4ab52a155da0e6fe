//! Configuration: `init` refuses bad settings before writing anything, and a damaged
//! `ferry.toml` stops every command that reads it with the line at fault.

use std::fs;
use std::path::Path;

use ferry_tests::{Ferry, Node};

#[track_caller]
fn refused_init(home: &Path, extra: &[&str], needle: &str) {
    Ferry::new(["init", "--home"])
        .arg_path(home)
        .args(extra)
        .run()
        .failure_with(needle);
    assert!(
        !home.join("identity.key").exists(),
        "a refused init left an identity"
    );
}

#[test]
fn init_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("n");
    for api in ["0.0.0.0:4557", "192.0.2.1:4557", "[::]:4557"] {
        refused_init(&home, &["--api", api], "loopback");
    }
    for peer in [
        "garbage",
        "@127.0.0.1:4556",
        "abc@127.0.0.1:4556",
        "x@host:1",
    ] {
        refused_init(&home, &["--peer", peer], "NODE_ID@host:port");
    }
    refused_init(&home, &["--routing", "flood"], "routing policy");
    refused_init(&home, &["--realm", "bad name"], "realm");
    refused_init(&home, &["--realm", "v:notbase32!"], "realm");
    refused_init(&home, &["--realm", "v", "--realm", "v"], "twice");

    // A valid peer (whose port is good) and a bad port.
    let other = Node::init(dir.path().join("other"), &[]);
    refused_init(
        &home,
        &["--peer", &format!("{}@127.0.0.1:0", other.id)],
        "NODE_ID@host:port",
    );
    refused_init(
        &home,
        &["--peer", &format!("{}@127.0.0.1", other.id)],
        "NODE_ID@host:port",
    );
}

#[test]
fn init_accepts_good_settings_and_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let other = Node::init(dir.path().join("other"), &[]);
    let peer = format!("{}@127.0.0.1:4556", other.id);
    let n = Node::init(
        dir.path().join("n"),
        &[
            "--api",
            "127.0.0.1:9999",
            "--listen",
            "127.0.0.1:5000",
            "--peer",
            &peer,
            "--routing",
            "prophet",
            "--max-store-bytes",
            "1048576",
        ],
    );
    let toml = fs::read_to_string(n.home.join("ferry.toml")).unwrap();
    for expected in [
        "api = \"127.0.0.1:9999\"",
        "listen = \"127.0.0.1:5000\"",
        "policy = \"prophet\"",
        "max_bytes = 1048576",
        &format!("peers = [\"{peer}\"]"),
    ] {
        assert!(
            toml.contains(expected),
            "ferry.toml lacks {expected}:\n{toml}"
        );
    }
    // The written config is read back by commands that need it.
    n.cmd(&["realm"]).run().success();
    // An IPv6 loopback API is fine too.
    Node::init(dir.path().join("v6"), &["--api", "[::1]:4557"]);
}

/// Replaces line `n` (1-based) of the home's ferry.toml.
fn set_line(home: &Path, n: usize, text: &str) {
    let path = home.join("ferry.toml");
    let old = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = old.lines().map(str::to_owned).collect();
    assert!(n <= lines.len(), "ferry.toml has {} lines", lines.len());
    lines[n - 1] = text.to_owned();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn line_of(home: &Path, prefix: &str) -> usize {
    let text = fs::read_to_string(home.join("ferry.toml")).unwrap();
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
        + 1
}

/// Commands that read ferry.toml (`ferry id` reads only the identity).
fn config_commands(n: &Node) -> Vec<Ferry> {
    vec![
        n.cmd(&["realm"]),
        n.cmd(&["bundle", "seal", "--group"]).stdin(b"x".to_vec()),
        n.cmd(&["bundle", "open", "-"]).stdin(b"x".to_vec()),
    ]
}

/// Damaged configs that produce a value error, each with the line it is on.
#[test]
fn damaged_config_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::init(dir.path().join("n"), &["--realm", "valley"]);
    let pristine = fs::read(n.home.join("ferry.toml")).unwrap();
    let cases: Vec<(&str, &str)> = vec![
        ("policy = ", "policy = \"flood\""),
        ("api = ", "bogus = 1"),
        ("listen = ", "listen = 5"),
        ("max_bytes = ", "max_bytes = \"lots\""),
        ("hop_limit = ", "hop_limit = 300"),
        // A TOML syntax error.
        ("api = ", "api = = 5"),
    ];
    for (prefix, bad) in cases {
        fs::write(n.home.join("ferry.toml"), &pristine).unwrap();
        let line = line_of(&n.home, prefix);
        set_line(&n.home, line, bad);
        for cmd in config_commands(&n) {
            let shown = cmd.display();
            let out = cmd.run();
            assert_eq!(out.code(), Some(1), "{shown} with `{bad}`: {out:?}");
            assert!(out.stdout.is_empty(), "{shown} with `{bad}`");
            assert!(
                out.stderr.starts_with("ferry: ") && out.stderr.contains("ferry.toml"),
                "{shown} with `{bad}`: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(&format!("(line {line})")),
                "{shown} with `{bad}` on line {line}: {}",
                out.stderr
            );
        }
    }
    // Values the types accept but the checks refuse have no line, but a reason.
    fs::write(n.home.join("ferry.toml"), &pristine).unwrap();
    set_line(
        &n.home,
        line_of(&n.home, "api = "),
        "api = \"0.0.0.0:4557\"",
    );
    for cmd in config_commands(&n) {
        cmd.run().failure_with("loopback");
    }
    // Not UTF-8.
    let mut bytes = pristine.clone();
    bytes.extend_from_slice(b"\xff\xfe\n");
    fs::write(n.home.join("ferry.toml"), &bytes).unwrap();
    for cmd in config_commands(&n) {
        let out = cmd.run();
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert!(out.stderr.contains("UTF-8"), "{}", out.stderr);
    }
    // Restored, everything works again, and `id` never needed the config.
    fs::write(n.home.join("ferry.toml"), &pristine).unwrap();
    n.cmd(&["realm"]).run().success();
    n.cmd(&["id"]).run().success();
}

/// Every config error is one line, as every `ferry` error must be: TOML *syntax*
/// errors, whose `toml` messages span two lines, and I/O errors, whose cause is both in
/// the message and in the error chain, included.
#[test]
fn config_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::init(dir.path().join("n"), &["--realm", "valley"]);
    let pristine = fs::read(n.home.join("ferry.toml")).unwrap();
    let line = line_of(&n.home, "api = ");
    for bad in ["api = = 5", "[node", "api = \"unterminated", "= 1"] {
        fs::write(n.home.join("ferry.toml"), &pristine).unwrap();
        set_line(&n.home, line, bad);
        for cmd in config_commands(&n) {
            cmd.run().failure_with(&format!("(line {line})"));
        }
    }
    let mut bytes = pristine.clone();
    bytes.extend_from_slice(b"\xff\xfe\n");
    fs::write(n.home.join("ferry.toml"), &bytes).unwrap();
    for cmd in config_commands(&n) {
        let reason = cmd.run().failure_with("UTF-8");
        assert_eq!(
            reason.matches("UTF-8").count(),
            1,
            "cause repeated: {reason}"
        );
    }
}
