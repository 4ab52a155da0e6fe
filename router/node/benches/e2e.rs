//! End-to-end figures of two real `ferry run` processes over QUIC on 127.0.0.1.
//!
//! `cargo bench -p ferry-node --bench e2e` (about 3 minutes; set `FERRY_E2E_SMALL`,
//! `FERRY_E2E_WAITING` to change the bundle counts).
//!
//! 1. Latency at light load: one 64-byte bundle at a time, submit → payload at B's app.
//! 2. Throughput: 64-byte payloads submitted by 64 concurrent app connections to A,
//!    received and acknowledged by 8 app connections at B; bundles/s from the first
//!    submit to the last delivery. Each bundle is signed, encrypted, committed to LMDB
//!    at A, sent over QUIC, verified (in batches), committed at B, delivered, acked,
//!    and answered by a receipt. Next to it, the signing-plus-verification bound of
//!    this machine measured in the same run.
//!    2b. The same through the app stream (`/v1/stream`): `FERRY_E2E_STREAMS` (4)
//!    WebSockets submit to A, one receives and acknowledges at B.
//! 3. One 100 MiB payload end to end, three times (the first through fresh memory).
//! 4. Memory: RSS of an idle node, and of a node whose store holds 1,000,000 small
//!    bundles waiting (pre-filled through the store API, then the node started).
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, Verifier};
use ferry_core::rand_core::OsRng;
use ferry_core::{DtnTime, Keyring, PayloadKind, Priority, Recipient, SealParams};
use ferry_storage::{BundleMeta, CustodyStore, NewRecord, RoutingMeta};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

fn free_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port");
}

struct NodeDir {
    home: PathBuf,
    id: String,
    quic: u16,
    api: u16,
}

fn ferry(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run ferry");
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn init(dir: &Path, name: &str, realm: &str, extra: &[&str]) -> NodeDir {
    let home = dir.join(name);
    let quic = free_port();
    let api = free_port();
    let listen = format!("127.0.0.1:{quic}");
    let api_s = format!("127.0.0.1:{api}");
    let mut args = vec![
        "init",
        "--home",
        home.to_str().expect("utf-8 path"),
        "--listen",
        &listen,
        "--api",
        &api_s,
        "--no-discovery",
        "--realm",
        realm,
        "--routing",
        "epidemic",
    ];
    args.extend_from_slice(extra);
    let id = ferry(&args);
    NodeDir {
        home,
        id,
        quic,
        api,
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .max_idle_connections_per_host(128)
        .build()
}

fn start(n: &NodeDir) -> Running {
    let child = Command::new(BIN)
        .args(["run", "--home", n.home.to_str().expect("utf-8")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let a = agent();
    let url = format!("http://127.0.0.1:{}/v1/status", n.api);
    let t = Instant::now();
    while a.get(&url).call().is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

fn status(n: &NodeDir) -> serde_json::Value {
    agent()
        .get(&format!("http://127.0.0.1:{}/v1/status", n.api))
        .call()
        .expect("status")
        .into_json()
        .expect("json")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn send(a: &ureq::Agent, from: &NodeDir, to: &str, payload: &[u8]) -> String {
    let v: serde_json::Value = a
        .post(&format!("http://127.0.0.1:{}/v1/bundles", from.api))
        .query("to", to)
        .query("lifetime", "1h")
        .send_bytes(payload)
        .expect("send")
        .into_json()
        .expect("json");
    v["id"].as_str().expect("id").to_owned()
}

/// Takes one delivery (waiting up to `wait` s) and acks it; returns its payload length.
fn take(a: &ureq::Agent, at: &NodeDir, wait: u64) -> Option<usize> {
    let r = a
        .get(&format!("http://127.0.0.1:{}/v1/deliveries/next", at.api))
        .query("wait", &wait.to_string())
        .call()
        .expect("next");
    if r.status() == 204 {
        return None;
    }
    let id = r.header("ferry-bundle-id").expect("id").to_owned();
    // As an app would: one buffer of the announced length.
    let announced = r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(announced.min(256 << 20));
    r.into_reader().read_to_end(&mut body).expect("body");
    a.post(&format!(
        "http://127.0.0.1:{}/v1/deliveries/{id}/ack",
        at.api
    ))
    .call()
    .expect("ack");
    Some(body.len())
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn ws_connect(n: &NodeDir, query: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{}/v1/stream{query}", n.api);
    let ws = tungstenite::connect(url).expect("websocket").0;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nodelay(true).expect("nodelay");
    }
    ws
}

fn ws_text(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("json")
            }
            tungstenite::Message::Binary(_) => panic!("unexpected binary message"),
            _ => continue,
        }
    }
}

/// `n` 64-byte payloads submitted on `senders` streams to A (each keeping up to 200
/// unanswered), received and acknowledged on one stream at B. Returns (delivered,
/// seconds from the first submit to the last delivery).
fn stream_throughput(a: &NodeDir, b: &NodeDir, n: usize, senders: usize) -> (usize, f64) {
    const OUTSTANDING: usize = 200;
    let mut rx = ws_connect(b, "?receive=true");
    let mut txs: Vec<Ws> = (0..senders.max(1)).map(|_| ws_connect(a, "")).collect();
    for tx in &mut txs {
        let params = serde_json::json!({ "type": "params", "to": b.id, "lifetime": "1h" });
        tx.send(tungstenite::Message::Text(params.to_string().into()))
            .expect("params");
        assert_eq!(ws_text(tx)["type"], "params");
    }
    let first = Instant::now();
    let per = n.div_ceil(txs.len());
    let submitters: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(k, mut tx)| {
            let count = per.min(n.saturating_sub(k * per));
            std::thread::spawn(move || {
                let (mut sent, mut answered) = (0, 0);
                while answered < count {
                    while sent < count && sent - answered < OUTSTANDING {
                        let p = vec![((k * per + sent) % 251) as u8; 64];
                        tx.write(tungstenite::Message::Binary(p.into()))
                            .expect("write");
                        sent += 1;
                    }
                    tx.flush().expect("flush");
                    let r = ws_text(&mut tx);
                    assert_eq!(r["type"], "submitted", "{r}");
                    answered += 1;
                }
            })
        })
        .collect();
    let mut got = 0;
    let mut last = first;
    while got < n && first.elapsed() < Duration::from_secs(300) {
        let meta = ws_text(&mut rx);
        assert_eq!(meta["type"], "delivery", "{meta}");
        let body = match rx.read().expect("read") {
            tungstenite::Message::Binary(b) => b,
            other => panic!("expected the payload, got {other:?}"),
        };
        assert_eq!(body.len(), 64);
        let ack = serde_json::json!({ "type": "ack", "id": meta["id"] });
        rx.send(tungstenite::Message::Text(ack.to_string().into()))
            .expect("ack");
        got += 1;
        last = Instant::now();
    }
    for s in submitters {
        let _ = s.join();
    }
    (got, last.duration_since(first).as_secs_f64())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = init(dir.path(), "a", "bench", &[]);
    let share = ferry(&["realm", "--home", a.home.to_str().expect("utf-8"), "bench"]);
    let peer = format!("{}@127.0.0.1:{}", a.id, a.quic);
    let b = init(dir.path(), "b", &share, &["--peer", &peer]);
    let ra = start(&a);
    let rb = start(&b);
    let t = Instant::now();
    while status(&a)["links"].as_u64() != Some(1) {
        assert!(t.elapsed() < Duration::from_secs(30), "no link");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    println!("== memory, idle (two nodes linked, empty stores) ==");
    println!(
        "RSS A {} KiB, B {} KiB",
        rss_kib(ra.0.id()),
        rss_kib(rb.0.id())
    );

    // 1. Latency at light load.
    let ag = agent();
    let mut lat = Vec::new();
    for i in 0..200u32 {
        let t = Instant::now();
        send(&ag, &a, &b.id, &[i as u8; 64]);
        let got = take(&ag, &b, 10).expect("delivery");
        assert_eq!(got, 64);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("\n== latency, 64-byte payload, one at a time (200 bundles) ==");
    println!(
        "submit -> delivered to B's app: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99)
    );

    // 2. Throughput.
    let n = env_usize("FERRY_E2E_SMALL", 20_000);
    let senders = 64;
    let receivers = 8;
    let sent = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    let first = Instant::now();
    let last = Arc::new(Mutex::new(first));
    let mut threads = Vec::new();
    for _ in 0..receivers {
        let got = got.clone();
        let last = last.clone();
        let b_api = b.api;
        threads.push(std::thread::spawn(move || {
            let ag = agent();
            let bn = NodeDir {
                home: PathBuf::new(),
                id: String::new(),
                quic: 0,
                api: b_api,
            };
            while got.load(Ordering::Relaxed) < n {
                if take(&ag, &bn, 1).is_some() {
                    got.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = last.lock() {
                        *l = Instant::now();
                    }
                } else if first.elapsed() > Duration::from_secs(300) {
                    break;
                }
            }
        }));
    }
    for _ in 0..senders {
        let sent = sent.clone();
        let a_api = a.api;
        let to = b.id.clone();
        threads.push(std::thread::spawn(move || {
            let ag = agent();
            let an = NodeDir {
                home: PathBuf::new(),
                id: String::new(),
                quic: 0,
                api: a_api,
            };
            loop {
                let i = sent.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                send(&ag, &an, &to, &[(i % 251) as u8; 64]);
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let received = got.load(Ordering::Relaxed);
    let elapsed = last
        .lock()
        .map(|l| l.duration_since(first))
        .unwrap_or_default();
    let rate = received as f64 / elapsed.as_secs_f64();

    // The machine's signing + verification bound, measured now.
    let sk = SigningKey::generate(&mut OsRng);
    let vk = sk.verifying_key();
    let msg = [7u8; ferry_core::SIG_MESSAGE_LEN];
    let iters = 4000;
    let t = Instant::now();
    for _ in 0..iters {
        let s = sk.sign(&msg);
        vk.verify(&msg, &s).expect("verify");
    }
    let per = t.elapsed().as_secs_f64() / f64::from(iters);
    let bound = 2.0 / per;
    println!("\n== throughput, 64-byte payloads, {senders} senders, {receivers} receivers ==");
    println!(
        "{received}/{n} bundles delivered in {:.2} s: {:.0} bundles/s",
        elapsed.as_secs_f64(),
        rate
    );
    println!(
        "sign+verify: {:.1} us per bundle -> bound on 2 cores {:.0} bundles/s; achieved {:.1}% of it",
        per * 1e6,
        bound,
        100.0 * rate / bound
    );

    // 2b. Throughput through the app stream (`/v1/stream`, one WebSocket per app).
    let streamed = stream_throughput(&a, &b, n, env_usize("FERRY_E2E_STREAMS", 4));
    println!(
        "\n== throughput through /v1/stream, 64-byte payloads, {} sending streams, 1 receiving ==",
        env_usize("FERRY_E2E_STREAMS", 4)
    );
    println!(
        "{}/{n} bundles delivered in {:.2} s: {:.0} bundles/s ({:.1}% of the bound)",
        streamed.0,
        streamed.1,
        streamed.0 as f64 / streamed.1,
        100.0 * streamed.0 as f64 / streamed.1 / bound
    );

    // 3. One 100 MiB payload.
    let big: Vec<u8> = (0..100u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // Three times: the first moves through memory the two processes never touched
    // (on this VM, pages new to the guest are slow), the others through pages they
    // had and gave back.
    println!("\n== 100 MiB payload end to end (3 times) ==");
    let mut times = Vec::new();
    for round in 1..=3 {
        let t = Instant::now();
        send(&ag, &a, &b.id, &big);
        let len = take(&ag, &b, 300).expect("big delivery");
        let el = t.elapsed().as_secs_f64();
        assert_eq!(len, big.len());
        println!("run {round}: {:.2} s: {:.1} MiB/s", el, 100.0 / el);
        times.push(el);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median {:.2} s: {:.1} MiB/s; best {:.1} MiB/s",
        times[1],
        100.0 / times[1],
        100.0 / times[0]
    );
    drop(big);
    drop(ra);
    drop(rb);

    // 4. RSS with 1,000,000 small bundles waiting.
    let waiting = env_usize("FERRY_E2E_WAITING", 1_000_000);
    let c = init(dir.path(), "c", "bench", &[]);
    {
        let home = ferry_router::home::Home::open(&c.home).expect("home");
        let store = home.open_store().expect("store");
        let keyring: &Keyring = home.keyring();
        let dest = ferry_core::Identity::generate(&mut OsRng).node_id();
        let mut params = SealParams {
            recipient: Recipient::Node {
                id: dest,
                endpoint: None,
            },
            realm: "bench".into(),
            created: Some(DtnTime(860_000_000)),
            sequence: 0,
            lifetime: 30 * 86_400,
            priority: Priority::Normal,
            hop_limit: 32,
            kind: PayloadKind::AppData,
            ephemeral: false,
            fragment: None,
        };
        let t = Instant::now();
        let seqs = store.reserve_sequence(waiting as u64).expect("seq");
        let mut batch = Vec::with_capacity(1024);
        for (i, seq) in seqs.enumerate() {
            params.sequence = seq;
            let bundle = keyring
                .seal(&params, &[(i % 251) as u8; 64], &mut OsRng)
                .expect("seal");
            batch.push(NewRecord {
                id: bundle.id(),
                bytes: bundle.encode(),
                meta: BundleMeta {
                    priority: Priority::Normal,
                    destination: bundle.header().destination,
                    source: keyring.node_id().hash(),
                    expires_at: bundle.expires_at(),
                    received_at: 860_000_000,
                    routing: RoutingMeta::default(),
                },
            });
            if batch.len() == 1024 {
                store.insert_batch(&batch).expect("insert");
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.insert_batch(&batch).expect("insert");
        }
        println!(
            "\n(pre-filled {waiting} bundles into C's store in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    let rc = start(&c);
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&c);
    let rss = rss_kib(rc.0.id());
    println!(
        "== memory with {} bundles waiting ==",
        s["store"]["bundles"]
    );
    println!("RSS C {rss} KiB ({:.1} MiB)", rss as f64 / 1024.0);
    let listed = agent()
        .get(&format!("http://127.0.0.1:{}/v1/bundles", c.api))
        .query("limit", "10000")
        .call()
        .map(|r| r.status())
        .unwrap_or(0);
    println!(
        "RSS C after listing 10,000 bundles through the API: {} KiB (HTTP {listed})",
        rss_kib(rc.0.id())
    );
    drop(rc);
}
