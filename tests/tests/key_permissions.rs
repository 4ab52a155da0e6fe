//! Key files: `init` writes them owner-only, and every command that needs a key
//! refuses one that group or others can access, with a one-line `chmod 600` hint.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_tests::{Ferry, Node};

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn init_writes_key_files_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(
        dir.path().join("a"),
        &["--realm", "valley", "--realm", "hills"],
    );
    assert_eq!(mode_of(&a.home.join("identity.key")), 0o600);
    assert_eq!(mode_of(&a.home.join("realms/valley.key")), 0o600);
    assert_eq!(mode_of(&a.home.join("realms/hills.key")), 0o600);
    // Joining with a given secret writes it owner-only too.
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    assert_eq!(mode_of(&b.home.join("identity.key")), 0o600);
    assert_eq!(mode_of(&b.home.join("realms/valley.key")), 0o600);
    // The key files hold what the commands print.
    let key = fs::read_to_string(b.home.join("realms/valley.key")).unwrap();
    assert_eq!(key.trim(), share);
    let ident = fs::read_to_string(b.home.join("identity.key")).unwrap();
    assert!(ident.starts_with("ferry-identity-v1\n"), "{ident}");
}

/// The key-needing commands of node `a` (which holds a bundle `to_a` from `b`).
fn key_commands(a: &Node, b: &Node, to_a: &Path, out: &Path) -> Vec<(Ferry, bool)> {
    // (command, needs the identity key only)
    vec![
        (a.cmd(&["id"]), true),
        (a.cmd(&["id", "--short"]), true),
        (a.cmd(&["realm"]), false),
        (a.cmd(&["realm", "valley"]), false),
        (
            a.cmd(&["bundle", "seal", "--to", &b.id])
                .arg("--out")
                .arg_path(out)
                .stdin(b"payload".to_vec()),
            false,
        ),
        (
            a.cmd(&["bundle", "seal", "--group"])
                .stdin(b"payload".to_vec()),
            false,
        ),
        (a.cmd(&["bundle", "open"]).arg_path(to_a), false),
    ]
}

#[test]
fn readable_key_files_are_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let to_a = dir.path().join("to_a.bundle");
    fs::write(&to_a, b.seal(&["--to", &a.id], b"secret")).unwrap();
    let out = dir.path().join("sealed.bundle");

    let identity = a.home.join("identity.key");
    let realm = a.home.join("realms/valley.key");
    for (file, is_identity) in [(&identity, true), (&realm, false)] {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602, 0o610] {
            chmod(file, mode);
            for (cmd, identity_only) in key_commands(&a, &b, &to_a, &out) {
                let shown = cmd.display();
                let result = cmd.run();
                if identity_only && !is_identity {
                    // `ferry id` reads no realm key.
                    result.success();
                    continue;
                }
                let reason = result.failure_with("chmod 600");
                assert!(
                    reason.contains(&file.display().to_string())
                        && reason.contains(&format!("{mode:03o}")),
                    "{shown} with {} at {mode:03o}: {reason}",
                    file.display()
                );
                assert!(!out.exists(), "{shown} wrote a bundle despite the refusal");
            }
        }
        // Owner-only modes are accepted again.
        for mode in [0o600, 0o400, 0o700] {
            chmod(file, mode);
            for (cmd, _) in key_commands(&a, &b, &to_a, &out) {
                cmd.run().success();
            }
            let _ = fs::remove_file(&out);
        }
        chmod(file, 0o600);
    }
    // The refusals did not change the keys: the node still opens B's bundle.
    let opened = a.cmd(&["bundle", "open"]).arg_path(&to_a).run().success();
    assert_eq!(opened.stdout, b"secret");
}
