//! Tests that need the crate's insides: peers that break the rules (mismatched keys,
//! no client certificate, oversized or malformed streams), and timeouts.

use std::sync::Arc;
use std::time::Duration;

use ferry_cl_api::{DownReason, LinkEvent, LinkId, TransferId};
use ferry_core::{Identity, NodeId, Realm};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc::Receiver;

use crate::link::code;
use crate::{tls, Bound, ConnectError, QuicConfig, QuicLink};

const WAIT: Duration = Duration::from_secs(15);

fn realm() -> Realm {
    Realm::new("valley", [1; 32]).unwrap()
}

fn ident(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

fn cfg() -> QuicConfig {
    let mut c = QuicConfig::localhost();
    c.handshake_timeout = Duration::from_secs(5);
    c
}

async fn node(n: u8, c: QuicConfig) -> Bound {
    QuicLink::bind(c, &ident(n), &[realm()]).await.unwrap()
}

async fn next(rx: &mut Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no event in time")
        .expect("channel closed")
}

async fn up(rx: &mut Receiver<LinkEvent>) -> (LinkId, NodeId) {
    match next(rx).await {
        LinkEvent::Up { link, peer, .. } => (link, peer),
        other => panic!("expected Up, got {other:?}"),
    }
}

async fn down(rx: &mut Receiver<LinkEvent>) -> (LinkId, DownReason) {
    loop {
        match next(rx).await {
            LinkEvent::Down { link, reason } => return (link, reason),
            LinkEvent::Sent { .. } | LinkEvent::SendFailed { .. } => {}
            other => panic!("expected Down, got {other:?}"),
        }
    }
}

async fn quiet(rx: &mut Receiver<LinkEvent>) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn pair(ca: QuicConfig, cb: QuicConfig) -> (Bound, Bound, LinkId, LinkId) {
    let mut a = node(1, ca).await;
    let mut b = node(2, cb).await;
    let la = a
        .link
        .connect(b.link.node_id(), b.link.local_addr())
        .await
        .unwrap();
    assert_eq!(up(&mut a.events).await.0, la);
    let (lb, _) = up(&mut b.events).await;
    (a, b, la, lb)
}

/// A node whose certificate is for `claimed`'s key while it signs with `real`'s key.
async fn liar(real: u8, claimed: u8) -> Bound {
    let cert = tls::self_signed_cert(&ident(claimed)).unwrap();
    let key = tls::signing_key(&ident(real)).unwrap();
    let ck = Arc::new(CertifiedKey::new(vec![cert], key));
    assert!(ck.keys_match().is_err());
    QuicLink::bind_with_cert(cfg(), &ident(real), &[realm()], ck)
        .await
        .unwrap()
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_key_cannot_complete() {
    bounded(async {
        let mut a = node(1, cfg()).await;
        // M holds X's secret (seed 5) but presents Y's certificate (seed 6).
        let mut m = liar(5, 6).await;
        let (x, y) = (ident(5).node_id(), ident(6).node_id());
        // Dialing M as Y: the certificate says Y, but the handshake signature is X's.
        let err = a.link.connect(y, m.link.local_addr()).await.unwrap_err();
        assert!(matches!(err, ConnectError::Handshake(_)), "{err:?}");
        // Dialing M as X: the certificate is not X's.
        let err = a.link.connect(x, m.link.local_addr()).await.unwrap_err();
        assert_eq!(
            err,
            ConnectError::WrongPeer {
                expected: x,
                presented: y
            }
        );
        // M dialing A, claiming to be Y: A refuses it.
        let err = m
            .link
            .connect(a.link.node_id(), a.link.local_addr())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::Handshake(_) | ConnectError::TimedOut),
            "{err:?}"
        );
        wait_for("A counts three failed handshakes", || {
            a.link.stats().handshake_failures == 3
        })
        .await;
        quiet(&mut a.events).await;
        quiet(&mut m.events).await;
        assert!(a.link.links().is_empty());
        a.link.shutdown().await;
        m.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    bounded(async {
        let mut b = node(2, cfg()).await;
        let provider = tls::provider();
        let (verifier, _) = tls::ServerVerifier::new(b.link.node_id(), &provider);
        let mut tls_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls_cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
        let client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls_cfg).unwrap()));
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = ep
            .connect_with(client, b.link.local_addr(), "ferry")
            .unwrap();
        // The client may believe the handshake finished; the server refuses it.
        if let Ok(conn) = connecting.await {
            let e = tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
            assert!(!matches!(e, quinn::ConnectionError::LocallyClosed), "{e:?}");
        }
        wait_for("B counts the failed handshake", || {
            b.link.stats().handshake_failures == 1
        })
        .await;
        quiet(&mut b.events).await;
        assert!(b.link.links().is_empty());
        b.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_the_link() {
    bounded(async {
        let mut ca = cfg();
        ca.max_frame_bytes = 4096;
        let mut cb = cfg();
        cb.max_frame_bytes = 1024;
        let (mut a, mut b, la, lb) = pair(ca, cb).await;
        // A's send_frame refuses it; a misbehaving sender bypasses that check.
        assert!(a.link.send_frame(la, vec![0; 1025]).await.is_err());
        let link = a.link.inner().link(la).unwrap();
        link.frames.send(vec![0; 1024]).await.unwrap();
        link.frames.send(vec![0; 1025]).await.unwrap();
        assert!(matches!(next(&mut b.events).await, LinkEvent::Frame { ref bytes, .. } if bytes.len() == 1024));
        let (l, reason) = down(&mut b.events).await;
        assert_eq!(l, lb);
        assert!(matches!(reason, DownReason::Error(ref s) if s.contains("1025-byte")), "{reason:?}");
        let (l, reason) = down(&mut a.events).await;
        assert_eq!(l, la);
        assert!(matches!(reason, DownReason::Error(ref s) if s.contains("too large")), "{reason:?}");
        assert_eq!(b.link.stats().protocol_errors, 1);
        a.link.shutdown().await;
        b.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_malformed_bundles_are_refused_and_the_link_keeps_working() {
    bounded(async {
        let mut cb = cfg();
        cb.max_bundle_bytes = 1024;
        let (mut a, mut b, la, lb) = pair(cfg(), cb).await;
        let conn = a.link.inner().link(la).unwrap().conn.clone();
        let header = |t: u64, len: u64| {
            let mut h = t.to_le_bytes().to_vec();
            h.extend_from_slice(&len.to_le_bytes());
            h
        };
        // Over the limit: B stops the stream.
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&header(1, 10 << 20)).await.unwrap();
        // (B may have stopped the stream already.)
        let _ = s.write_all(&[0; 4096]).await;
        let stopped = tokio::time::timeout(WAIT, s.stopped())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped, Some(code::BUNDLE_TOO_LARGE));
        wait_for("B counts the refused bundle", || {
            b.link.stats().bundles_refused == 1
        })
        .await;
        // Shorter than announced, longer than announced, cut inside the header.
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&header(2, 100)).await.unwrap();
        s.write_all(&[0; 50]).await.unwrap();
        s.finish().unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&header(3, 10)).await.unwrap();
        s.write_all(&[0; 20]).await.unwrap();
        s.finish().unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&[1, 2, 3]).await.unwrap();
        s.finish().unwrap();
        wait_for("three malformed bundles", || {
            b.link.stats().bundles_malformed == 3
        })
        .await;
        // The link still works.
        a.link
            .send_bundle(la, TransferId(9), vec![5; 1024].into())
            .await
            .unwrap();
        match next(&mut b.events).await {
            LinkEvent::Bundle {
                link,
                transfer,
                bytes,
            } => {
                assert_eq!((link, transfer, bytes.len()), (lb, TransferId(9), 1024));
            }
            other => panic!("expected the bundle, got {other:?}"),
        }
        assert_eq!(
            next(&mut a.events).await,
            LinkEvent::Sent {
                link: la,
                transfer: TransferId(9)
            }
        );
        quiet(&mut b.events).await;
        a.link.shutdown().await;
        b.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_times_out() {
    bounded(async {
        let mut c = cfg();
        c.idle_timeout = Duration::from_millis(1500);
        c.keep_alive = Duration::from_millis(300);
        let (mut a, mut b, la, lb) = pair(c.clone(), c).await;
        // Keep-alives hold an idle link up past the idle timeout.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(a.link.links().len(), 1);
        // B moves to another port: A hears nothing from it any more (a client drops
        // packets from unknown addresses), and B's packets get no answer.
        let old = b.link.inner().endpoint.local_addr().unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.link.inner().endpoint.rebind(sock).unwrap();
        // Hold B's old port with a socket that never answers: otherwise another test's
        // QUIC endpoint may be given the port and answer A's packets with a stateless
        // reset (seen in CI as "connection reset" instead of the timeout).
        let _silent = std::net::UdpSocket::bind(old);
        assert_eq!(down(&mut a.events).await, (la, DownReason::Timeout));
        assert_eq!(down(&mut b.events).await, (lb, DownReason::Timeout));
        a.link.shutdown().await;
        b.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_in_flight_fail_when_the_link_goes_down() {
    bounded(async {
        let (mut a, b, la, _) = pair(cfg(), cfg()).await;
        let big = bytes::Bytes::from(vec![0u8; 32 << 20]);
        a.link.send_bundle(la, TransferId(1), big).await.unwrap();
        b.link.shutdown().await;
        // Every accepted transfer is reported before Down.
        let mut saw = None;
        loop {
            match next(&mut a.events).await {
                LinkEvent::SendFailed { transfer, .. } | LinkEvent::Sent { transfer, .. } => {
                    saw = Some(transfer)
                }
                LinkEvent::Down { link, .. } => {
                    assert_eq!(link, la);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(saw, Some(TransferId(1)));
        a.link.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_resets_the_old_connection() {
    bounded(async {
        let mut c = cfg();
        c.idle_timeout = Duration::from_secs(30);
        c.keep_alive = Duration::from_millis(300);
        let mut a = node(1, c.clone()).await;
        // B runs on its own runtime, so it can "crash": dropping that runtime stops
        // B's tasks without sending anything.
        let rt_b = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cb = c.clone();
        let mut b = rt_b
            .spawn(async move { QuicLink::bind(cb, &ident(2), &[realm()]).await.unwrap() })
            .await
            .unwrap();
        let b_addr = b.link.local_addr();
        let la = a.link.connect(b.link.node_id(), b_addr).await.unwrap();
        assert_eq!(up(&mut a.events).await.0, la);
        up(&mut b.events).await;
        rt_b.shutdown_background();
        drop(b);
        // A new run of B on the same address.
        let mut c2 = c.clone();
        c2.listen = b_addr;
        let mut b2 = None;
        for _ in 0..100 {
            match QuicLink::bind(c2.clone(), &ident(2), &[realm()]).await {
                Ok(b) => {
                    b2 = Some(b);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let b2 = b2.expect("rebind B's port");
        // Its stateless reset (same derived key) ends A's link well before the 30 s
        // idle timeout.
        let (l, reason) = tokio::time::timeout(Duration::from_secs(5), down(&mut a.events))
            .await
            .expect("reset within 5 s");
        assert_eq!(l, la);
        assert!(
            matches!(reason, DownReason::Error(ref s) if s.contains("reset")),
            "{reason:?}"
        );
        a.link.shutdown().await;
        b2.link.shutdown().await;
    })
    .await
}
