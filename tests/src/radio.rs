//! `ferry radio-emulator` as a test fixture: an emulated LoRa channel or serial cable
//! over pseudo-terminals, driven through its stdin commands.
#![allow(missing_docs, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::nodes::TestNode;
use crate::{wait_bounded, Ferry};

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    child: Option<Child>,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Node name → pseudo-terminal path.
    pub paths: serde_json::Map<String, serde_json::Value>,
}

impl Emulator {
    /// Starts `ferry radio-emulator ARGS --dir DIR`.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Ferry::new(["radio-emulator"])
            .args(args)
            .args(["--dir"])
            .arg_path(dir)
            .command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start the emulator");
        let stdin = child.stdin.take().expect("stdin");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the emulator prints its ports");
        let v: serde_json::Value = serde_json::from_str(&first).expect("JSON");
        let paths = v["nodes"].as_object().expect("nodes").clone();
        Self {
            child: Some(child),
            stdin,
            lines,
            paths,
        }
    }

    /// The pseudo-terminal of `node`.
    pub fn path(&self, node: &str) -> PathBuf {
        PathBuf::from(self.paths[node].as_str().expect("path"))
    }

    /// Sends one command line.
    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("emulator stdin");
        self.stdin.flush().expect("flush");
    }

    /// The emulator's counters now.
    pub fn stats(&mut self) -> serde_json::Value {
        while self.lines.try_recv().is_ok() {}
        self.command("stats");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("stats line");
        serde_json::from_str(&line).expect("stats JSON")
    }

    /// Quits and returns the final counters.
    pub fn stop(mut self) -> serde_json::Value {
        let stats = self.stats();
        self.command("quit");
        if let Some(mut c) = self.child.take() {
            let status = wait_bounded(&mut c, Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "emulator exit {status:?}"
            );
        }
        stats
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Appends a `[[serial]]` section to a node's ferry.toml (`extra` is more TOML for the
/// section, e.g. `baud = 921600` or a `[serial.radio]` table).
pub fn add_serial(node: &TestNode, port: &Path, mode: &str, extra: &str) {
    let path = node.config_path();
    let mut text = std::fs::read_to_string(&path).expect("read config");
    text.push_str(&format!(
        "\n[[serial]]\nport = {:?}\nmode = {mode:?}\n{extra}\n",
        port.display().to_string()
    ));
    std::fs::write(&path, text).expect("write config");
}

/// A node's serial port status (the first port) from `ferry status --json`.
pub fn port_status(node: &TestNode) -> serde_json::Value {
    node.status()
        .and_then(|s| {
            s["serial"]
                .as_object()
                .and_then(|m| m.values().next().cloned())
        })
        .unwrap_or(serde_json::Value::Null)
}

/// Nodes called `names` in one realm (epidemic routing), each with a `[[serial]]` port
/// in `mode` on the emulator's pseudo-terminal of the same name (`extra`: more TOML
/// for the section), started.
pub fn radio_nodes(
    dir: &Path,
    emu: &Emulator,
    names: &[&str],
    mode: &str,
    extra: &str,
) -> (Vec<TestNode>, Vec<crate::nodes::Daemon>) {
    let first = TestNode::init(dir, names[0], None, "epidemic");
    let realm = crate::nodes::realm_of(&first);
    let mut nodes = vec![first];
    for n in &names[1..] {
        nodes.push(TestNode::init(dir, n, Some(&realm), "epidemic"));
    }
    for (node, name) in nodes.iter().zip(names) {
        add_serial(node, &emu.path(name), mode, extra);
    }
    let daemons = nodes.iter().map(TestNode::start).collect();
    (nodes, daemons)
}
