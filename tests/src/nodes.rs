//! Real `ferry run` nodes for end-to-end tests: homes with free ports, daemons that
//! are stopped with SIGTERM (checked for a clean exit) or killed with SIGKILL.
#![allow(missing_docs, clippy::missing_panics_doc)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{wait_bounded, wait_until, Ferry, Node};

/// Longest wait for a state change between nodes (generous for loaded CI machines).
pub const SETTLE: Duration = Duration::from_secs(30);

/// A port free for both TCP (API) and UDP (QUIC) at the time of the call, which this
/// process has not handed out before. Nodes keep their ports across restarts, so a
/// port must stay theirs while they are down: ports come from below the kernel's
/// ephemeral range (32768–60999 by default on Linux), where no outgoing connection
/// takes one, and never twice to the tests of one binary (which run in parallel).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static DRAW: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let n = DRAW.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (crate::Rng::new(seed ^ n).next_u64() % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port");
}

/// A node home with its ports.
#[derive(Debug)]
pub struct TestNode {
    /// The node home.
    pub node: Node,
    /// Its QUIC port.
    pub quic: u16,
    /// Its API port (on 127.0.0.1).
    pub api: u16,
}

impl TestNode {
    pub fn init(dir: &Path, name: &str, realm: Option<&str>, policy: &str) -> Self {
        let quic = free_port();
        let api_port = free_port();
        let listen = format!("127.0.0.1:{quic}");
        let api = format!("127.0.0.1:{api_port}");
        let realm_arg = realm.unwrap_or("valley").to_owned();
        let node = Node::init(
            dir.join(name),
            &[
                "--listen",
                &listen,
                "--api",
                &api,
                "--no-discovery",
                "--realm",
                &realm_arg,
                "--routing",
                policy,
            ],
        );
        Self {
            node,
            quic,
            api: api_port,
        }
    }

    pub fn addr(&self) -> String {
        format!("{}@127.0.0.1:{}", self.node.id, self.quic)
    }

    pub fn config_path(&self) -> PathBuf {
        self.node.home.join("ferry.toml")
    }

    /// Replaces the static peers in ferry.toml.
    pub fn set_peers(&self, peers: &[String]) {
        let list: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        crate::set_config_line(
            &self.config_path(),
            "peers",
            &format!("[{}]", list.join(", ")),
        );
    }

    /// Adds a static route (destination → next hop) to ferry.toml.
    pub fn add_route(&self, dest: &str, hop: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("read config");
        let new = text.replace("[routes]\n", &format!("[routes]\n{dest:?} = {hop:?}\n"));
        std::fs::write(self.config_path(), new).expect("write config");
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(&self.node)
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.node.cmd(&["status", "--json"]).run();
        (out.code() == Some(0)).then(|| out.json())
    }

    pub fn send(&self, to: &str, extra: &[&str], payload: &[u8]) -> String {
        let out = self
            .node
            .cmd(&["send", "--to", to])
            .args(extra)
            .stdin(payload)
            .run()
            .success();
        out.stdout_text().trim().to_owned()
    }

    pub fn stored_ids(&self) -> Vec<String> {
        let out = self.node.cmd(&["bundles", "--json"]).run();
        if out.code() != Some(0) {
            return Vec::new();
        }
        out.json()["bundles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn links(&self) -> usize {
        self.status().and_then(|s| s["links"].as_u64()).unwrap_or(0) as usize
    }

    /// Receives into `dir`; returns (bundle id, payload) pairs.
    pub fn recv(&self, wait: u64, dir: &Path) -> Vec<(String, Vec<u8>)> {
        let _ = std::fs::create_dir_all(dir);
        let before: Vec<PathBuf> = list_dir(dir);
        self.node
            .cmd(&["recv", "--wait", &wait.to_string(), "--out"])
            .arg_path(dir)
            .timeout(Duration::from_secs(wait + 30))
            .run()
            .success();
        list_dir(dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .map(|p| {
                let id = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                (id, std::fs::read(&p).expect("read payload"))
            })
            .collect()
    }

    pub fn delivered(&self) -> Vec<String> {
        self.status()
            .and_then(|s| {
                s["delivered"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|d| d["id"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

pub fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A running `ferry run` process.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn start(node: &Node) -> Self {
        let log = node.home.join("daemon.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd: Command = Ferry::new(["run", "--home"]).arg_path(&node.home).command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // FERRY_TEST_LOG raises the daemons' log level when a test needs looking into.
            .env(
                "RUST_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let child = cmd.spawn().expect("start ferry run");
        let d = Self {
            child: Some(child),
            log,
        };
        let up = wait_until(SETTLE, || {
            node.cmd(&["status", "--json"]).run().code() == Some(0)
        });
        assert!(up, "ferry run did not come up:\n{}", d.log_text());
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = wait_bounded(&mut c, Duration::from_secs(20));
            let status =
                status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", self.log_text()));
            assert!(
                status.success(),
                "exit {status:?} after SIGTERM:\n{}",
                self.log_text()
            );
            assert!(!self.log_text().contains("panicked"), "{}", self.log_text());
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn payload(n: usize, seed: u8) -> Vec<u8> {
    // Deterministic, non-repeating bytes.
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Joins nodes in the same realm: everyone takes the first node's realm secret.
pub fn realm_of(first: &TestNode) -> String {
    first.node.realm_share("valley")
}

/// [`linked_pair`], both started, once their link is up: (a, b, a's daemon, b's).
pub fn running_pair(dir: &Path, policy: &str) -> (TestNode, TestNode, Daemon, Daemon) {
    let (a, b) = linked_pair(dir, policy);
    let da = a.start();
    let db = b.start();
    assert!(
        wait_until(SETTLE, || a.links() == 1),
        "no link:\n{}",
        db.log_text()
    );
    (a, b, da, db)
}

/// Nodes `a` and `b` of one realm under `policy`, `b` configured to dial `a`
/// (neither started).
pub fn linked_pair(dir: &Path, policy: &str) -> (TestNode, TestNode) {
    let a = TestNode::init(dir, "a", None, policy);
    let b = TestNode::init(dir, "b", Some(&realm_of(&a)), policy);
    b.set_peers(&[a.addr()]);
    (a, b)
}

/// POSTs `payload` to a node's `/v1/bundles` with chunked transfer encoding, in
/// chunks of the given sizes (cycled); returns the raw HTTP answer.
pub fn post_chunked(api: u16, query: &str, payload: &[u8], sizes: &[usize]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /v1/bundles?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut out = head.into_bytes();
    let (mut at, mut i) = (0, 0);
    while at < payload.len() {
        let n = sizes[i % sizes.len()].min(payload.len() - at);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&payload[at..at + n]);
        out.extend_from_slice(b"\r\n");
        (at, i) = (at + n, i + 1);
    }
    out.extend_from_slice(b"0\r\n\r\n");
    // A node that refuses the body may answer and close before reading all of it.
    let _ = s.write_all(&out);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Posts `payload` with a `Content-Length` of `declared` bytes, written in pieces of
/// `sizes` (a short payload is an upload cut off: the client stops writing).
pub fn post_sized(
    api: u16,
    query: &str,
    payload: &[u8],
    declared: usize,
    sizes: &[usize],
) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    let head = format!(
        "POST /v1/bundles?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let (mut at, mut i) = (0, 0);
    while at < payload.len() {
        let n = sizes[i % sizes.len()].min(payload.len() - at);
        if s.write_all(&payload[at..at + n]).is_err() {
            break;
        }
        (at, i) = (at + n, i + 1);
    }
    if payload.len() < declared {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A, B and C (epidemic) where A and C only ever dial B, the relay.
pub fn relay_trio() -> (tempfile::TempDir, TestNode, TestNode, TestNode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = TestNode::init(dir.path(), "a", None, "epidemic");
    let share = realm_of(&a);
    let b = TestNode::init(dir.path(), "b", Some(&share), "epidemic");
    let c = TestNode::init(dir.path(), "c", Some(&share), "epidemic");
    a.set_peers(&[b.addr()]);
    c.set_peers(&[b.addr()]);
    (dir, a, b, c)
}
