//! The local API on a Unix socket (`node.api_socket`, `api.sock` in the home by
//! default): real `ferry run` processes, plain HTTP/1.1 over `UnixStream`. A bundle
//! submitted through A's socket reaches B's app through B's socket; the socket is
//! the node user's only (0600) and goes away with the node; a file in its way stops
//! the node with a clear error; `api_socket = ""` turns it off.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ferry_tests::nodes::{payload, running_pair, TestNode};
use ferry_tests::wait_until;

/// One HTTP/1.1 request over the socket: the status code and the body.
fn request(socket: &Path, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (code, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).expect("hex"), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + size]);
        b = &b[line + 2 + size + 2..];
    }
}

fn socket_of(n: &TestNode) -> std::path::PathBuf {
    n.node.home.join("api.sock")
}

#[test]
fn apps_on_unix_sockets_exchange_a_bundle_and_only_the_user_can_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, da, db) = running_pair(dir.path(), "epidemic");
    let (sa, sb) = (socket_of(&a), socket_of(&b));
    for s in [&sa, &sb] {
        let meta = std::fs::symlink_metadata(s).expect("the socket exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", s.display());
    }
    let (code, body) = request(&sa, "GET", "/v1/status", b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let status: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        status["node_id"].as_str(),
        Some(a.node.id.as_str()),
        "{status}"
    );

    let sent = payload(5000, 7);
    let (code, body) = request(
        &sa,
        "POST",
        &format!("/v1/bundles?to={}&endpoint=inbox", b.node.id),
        &sent,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut got = None;
    assert!(wait_until(Duration::from_secs(30), || {
        let (code, body) = request(&sb, "GET", "/v1/deliveries/next?endpoint=inbox&wait=1", b"");
        if code == 200 {
            got = Some(body);
        }
        got.is_some()
    }));
    assert_eq!(got.as_deref(), Some(&sent[..]));
    let (code, _) = request(&sb, "POST", &format!("/v1/deliveries/{id}/ack"), b"");
    assert!((200..300).contains(&code), "ack: {code}");
    // Bad input gets the API's answer there too.
    let (code, body) = request(&sa, "POST", "/v1/bundles?to=nobody", b"x");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));

    da.stop();
    db.stop();
    assert!(!sa.exists() && !sb.exists(), "sockets removed on stop");
}

#[test]
fn a_file_in_the_sockets_place_stops_the_node_and_an_empty_setting_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::init(dir.path(), "n", None, "epidemic");
    let sock = socket_of(&n);
    std::fs::write(&sock, b"not a socket").unwrap();
    let out = n.node.cmd(&["run"]).run();
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr.contains("is not a socket"),
        "stderr: {}",
        out.stderr
    );
    out.assert_no_panic();
    assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket", "left alone");
    std::fs::remove_file(&sock).unwrap();

    let cfg = std::fs::read_to_string(n.config_path()).unwrap();
    assert!(cfg.contains("api_socket = \"api.sock\""), "{cfg}");
    std::fs::write(
        n.config_path(),
        cfg.replace("api_socket = \"api.sock\"", "api_socket = \"\""),
    )
    .unwrap();
    let d = n.start();
    assert!(n.status().is_some(), "the TCP API still answers");
    assert!(!sock.exists());
    d.stop();
}
