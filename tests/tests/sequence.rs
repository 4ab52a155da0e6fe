//! Sequence numbers (per-bundle keys depend on them) are never reused: not between
//! successive seals, not between concurrent seals, not after a seal is killed.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use ferry_tests::{field_u64, inspect_ok, wait_bounded, wait_until, Node, Rng};

fn sequence_of(bundle: &[u8]) -> u64 {
    field_u64(&inspect_ok(bundle), "sequence")
}

/// Reads the sequence number from the first bytes of a bundle (the header, as in
/// docs/wire-format.md): version, flags, realm tag, source, [destination],
/// [creation time], then the sequence as a LEB128 varint.
fn sequence_from_prefix(prefix: &[u8]) -> u64 {
    assert_eq!(prefix[0], 2, "version byte");
    let flags = prefix[1];
    let mut pos = 2 + 4 + 32;
    if flags & 0b1100 == 0 {
        pos += 8;
    }
    if flags & 0b1_0000 != 0 {
        pos += 4;
    }
    let mut v = 0u64;
    for i in 0..10 {
        let b = prefix[pos + i];
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return v;
        }
    }
    panic!("unterminated sequence varint in {prefix:02x?}");
}

/// The process state letter from /proc (Linux), e.g. 'S' when blocked in a read.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

fn spawn_seal(a: &Node, to: &str) -> Child {
    a.cmd(&["bundle", "seal", "--to", to])
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry bundle seal")
}

#[track_caller]
fn assert_killed(child: &mut Child) {
    child.kill().expect("kill");
    let status = wait_bounded(child, Duration::from_secs(10)).expect("reaped after SIGKILL");
    assert_eq!(
        status.signal(),
        Some(9),
        "the seal should still have been running: {status}"
    );
}

#[test]
fn sequences_increase_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let mut seen = Vec::new();

    for i in 0..5u8 {
        let bundle = a.seal(&["--to", &b.id], &[i; 10]);
        seen.push(sequence_of(&bundle));
        assert_eq!(b.open(&bundle).success().stdout, [i; 10]);
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "sequences not strictly increasing: {seen:?}"
    );

    // Killed while reading its payload from a pipe we keep open.
    let mut child = spawn_seal(&a, &b.id);
    let mut stdin = child.stdin.take().expect("stdin pipe");
    stdin.write_all(b"half a payload").expect("write to seal");
    // Wait (bounded) until it sleeps in its stdin read; the check below holds even if
    // it is killed earlier.
    wait_until(Duration::from_secs(5), || {
        proc_state(child.id()) == Some('S')
    });
    assert_killed(&mut child);
    drop(stdin);
    let after_read_kill = sequence_of(&a.seal(&["--to", &b.id], b"next"));
    assert!(
        after_read_kill > *seen.last().unwrap(),
        "{after_read_kill} after {seen:?}"
    );
    seen.push(after_read_kill);

    // Killed after it reserved a sequence number and started writing its bundle: a
    // 4 MiB bundle cannot fit in the stdout pipe we do not drain, so it blocks there.
    let mut child = spawn_seal(&a, &b.id);
    let mut stdin = child.stdin.take().expect("stdin pipe");
    let payload = Rng::new(6).bytes(4 << 20);
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&payload);
    });
    let mut stdout = child.stdout.take().expect("stdout pipe");
    let (tx, rx) = sync_channel(1);
    let reader = std::thread::spawn(move || {
        let mut prefix = [0u8; 96];
        let r = stdout.read_exact(&mut prefix).map(|()| prefix);
        let _ = tx.send(r);
        stdout // keep the pipe open until the kill
    });
    let prefix = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(p)) => p,
        other => {
            let _ = child.kill();
            panic!("no bundle header from the seal within 30 s: {other:?}");
        }
    };
    assert_killed(&mut child);
    drop(reader.join());
    let _ = writer.join();
    let killed_seq = sequence_from_prefix(&prefix);
    assert!(
        killed_seq > after_read_kill,
        "killed seal used {killed_seq} after {seen:?}"
    );
    seen.push(killed_seq);

    for _ in 0..3 {
        let s = sequence_of(&a.seal(&["--to", &b.id], b"after the kill"));
        assert!(
            s > *seen.last().unwrap(),
            "sequence {s} reused or went back after a SIGKILLed seal: {seen:?}"
        );
        seen.push(s);
    }
    // The store is still healthy: bundles sealed after the kills open.
    let last = a.seal(&["--to", &b.id, "--ephemeral"], b"fine");
    assert_eq!(b.open(&last).success().stdout, b"fine");
}

#[test]
fn concurrent_seals_never_share_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::init(dir.path().join("a"), &["--realm", "valley"]);
    let share = a.realm_share("valley");
    let b = Node::init(dir.path().join("b"), &["--realm", &share]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                (0..4)
                    .map(|i| {
                        let args = ["--to", b.id.as_str()];
                        let group = ["--group"];
                        let bundle = a.seal(if i % 2 == 0 { &args } else { &group }, &[t, i]);
                        sequence_of(&bundle)
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let seqs = t.join().expect("sealing thread");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one thread's seals went back: {seqs:?}"
        );
        all.extend(seqs);
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a sequence was reused: {all:?}");
    assert_eq!(distinct.len(), 16);
}
