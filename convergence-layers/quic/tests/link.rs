//! Public-API tests of the QUIC link over real UDP sockets on 127.0.0.1. Every test is
//! bounded by a timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ferry_cl_api::{DownReason, LinkEvent, LinkId, TransferId};
use ferry_cl_quic::discovery::Beacon;
use ferry_cl_quic::{
    Backoff, Bound, ConnectError, DiscoveryConfig, QuicConfig, QuicLink, SendError,
};
use ferry_core::{Identity, NodeId, Realm};
use tokio::sync::mpsc::Receiver;

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

fn realm(n: u8) -> Realm {
    Realm::new("valley", [n; 32]).unwrap()
}

fn ident(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

fn cfg() -> QuicConfig {
    let mut c = QuicConfig::localhost();
    c.handshake_timeout = Duration::from_secs(5);
    c
}

async fn node(n: u8, realms: &[Realm], c: QuicConfig) -> Result<Bound> {
    Ok(QuicLink::bind(c, &ident(n), realms).await?)
}

async fn bounded<F: Future<Output = Result<()>>>(f: F) -> Result<()> {
    tokio::time::timeout(LIMIT, f)
        .await
        .context("test timed out")?
}

async fn next(rx: &mut Receiver<LinkEvent>) -> Result<LinkEvent> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .context("no event in time")?
        .context("event channel closed")
}

async fn expect_up(rx: &mut Receiver<LinkEvent>) -> Result<(LinkId, NodeId)> {
    match next(rx).await? {
        LinkEvent::Up { link, peer, caps } => {
            assert!(caps.reliable && !caps.broadcast);
            Ok((link, peer))
        }
        other => bail!("expected Up, got {other:?}"),
    }
}

async fn expect_down(rx: &mut Receiver<LinkEvent>) -> Result<(LinkId, DownReason)> {
    loop {
        match next(rx).await? {
            LinkEvent::Down { link, reason } => return Ok((link, reason)),
            LinkEvent::Sent { .. } | LinkEvent::SendFailed { .. } => continue,
            other => bail!("expected Down, got {other:?}"),
        }
    }
}

/// Nothing arrives for a little while.
async fn quiet(rx: &mut Receiver<LinkEvent>) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        Err(_) => Ok(()),
        Ok(ev) => bail!("unexpected event {ev:?}"),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..300 {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out waiting for {what}")
}

/// Two connected nodes in realm 1.
async fn pair(ca: QuicConfig, cb: QuicConfig) -> Result<(Bound, Bound, LinkId, LinkId)> {
    let mut a = node(1, &[realm(1)], ca).await?;
    let mut b = node(2, &[realm(1)], cb).await?;
    let la = a
        .link
        .connect(b.link.node_id(), b.link.local_addr())
        .await?;
    let (ua, pa) = expect_up(&mut a.events).await?;
    let (ub, pb) = expect_up(&mut b.events).await?;
    assert_eq!((ua, pa), (la, b.link.node_id()));
    assert_eq!(pb, a.link.node_id());
    Ok((a, b, la, ub))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_both_ways_carries_node_ids() -> Result<()> {
    bounded(async {
        let (mut a, mut b, la, lb) = pair(cfg(), cfg()).await?;
        // Connecting again (either way) reuses the link.
        assert_eq!(
            a.link
                .connect(b.link.node_id(), b.link.local_addr())
                .await?,
            la
        );
        assert_eq!(
            b.link
                .connect(a.link.node_id(), a.link.local_addr())
                .await?,
            lb
        );
        assert_eq!(a.link.links(), vec![(la, b.link.node_id())]);
        // The other way round, with a third node dialing in.
        let mut c = node(3, &[realm(2), realm(1)], cfg()).await?;
        let lc = c
            .link
            .connect(a.link.node_id(), a.link.local_addr())
            .await?;
        assert_eq!(expect_up(&mut c.events).await?, (lc, a.link.node_id()));
        let (_, p) = expect_up(&mut a.events).await?;
        assert_eq!(p, c.link.node_id());
        // Closing reports Down on both ends.
        a.link.close_link(la, "bye");
        assert_eq!(expect_down(&mut a.events).await?, (la, DownReason::Closed));
        assert_eq!(expect_down(&mut b.events).await?, (lb, DownReason::Closed));
        assert_eq!(
            a.link.send_frame(la, vec![1]).await,
            Err(SendError::UnknownLink(la))
        );
        for n in [&a.link, &b.link, &c.link] {
            n.shutdown().await;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_is_refused() -> Result<()> {
    bounded(async {
        let mut a = node(1, &[realm(1)], cfg()).await?;
        let mut x = node(2, &[realm(1)], cfg()).await?;
        let y = ident(3).node_id();
        // Dialing X's address while expecting Y: X cannot prove Y's id.
        let err = a.link.connect(y, x.link.local_addr()).await.unwrap_err();
        assert_eq!(
            err,
            ConnectError::WrongPeer {
                expected: y,
                presented: x.link.node_id()
            }
        );
        assert_eq!(a.link.stats().handshake_failures, 1);
        quiet(&mut a.events).await?;
        quiet(&mut x.events).await?;
        wait_for("X counts the failed handshake", || {
            x.link.stats().handshake_failures == 1
        })
        .await?;
        assert!(a.link.links().is_empty() && x.link.links().is_empty());
        // A node does not dial itself.
        assert_eq!(
            a.link.connect(a.link.node_id(), x.link.local_addr()).await,
            Err(ConnectError::SelfDial)
        );
        a.link.shutdown().await;
        x.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_realm_is_refused_on_both_sides() -> Result<()> {
    bounded(async {
        let mut a = node(1, &[realm(1)], cfg()).await?;
        let mut b = node(2, &[realm(2)], cfg()).await?;
        let err = a
            .link
            .connect(b.link.node_id(), b.link.local_addr())
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::ForeignRealm);
        wait_for("both sides count the refusal", || {
            a.link.stats().refused_realm == 1 && b.link.stats().refused_realm == 1
        })
        .await?;
        quiet(&mut a.events).await?;
        quiet(&mut b.events).await?;
        // And the other way round.
        let err = b
            .link
            .connect(a.link.node_id(), a.link.local_addr())
            .await
            .unwrap_err();
        assert_eq!(err, ConnectError::ForeignRealm);
        assert!(a.link.links().is_empty() && b.link.links().is_empty());
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_in_order() -> Result<()> {
    bounded(async {
        let (a, mut b, la, lb) = pair(cfg(), cfg()).await?;
        const N: u32 = 2000;
        let sender = a.link.clone();
        let send = tokio::spawn(async move {
            for i in 0..N {
                let mut f = i.to_le_bytes().to_vec();
                f.resize(4 + (i as usize * 37) % 3000, (i % 251) as u8);
                sender.send_frame(la, f).await?;
            }
            sender.send_frame(la, Vec::new()).await?;
            anyhow::Ok(())
        });
        for i in 0..N {
            match next(&mut b.events).await? {
                LinkEvent::Frame { link, bytes } => {
                    assert_eq!(link, lb);
                    assert_eq!(bytes[..4], i.to_le_bytes());
                    assert_eq!(bytes.len(), 4 + (i as usize * 37) % 3000);
                    assert!(bytes[4..].iter().all(|&x| x == (i % 251) as u8));
                }
                other => bail!("expected Frame {i}, got {other:?}"),
            }
        }
        match next(&mut b.events).await? {
            LinkEvent::Frame { bytes, .. } => assert!(bytes.is_empty()),
            other => bail!("expected the empty frame, got {other:?}"),
        }
        send.await??;
        // Larger than the peer's limit: refused before sending.
        assert_eq!(
            a.link.send_frame(la, vec![0; (1 << 20) + 1]).await,
            Err(SendError::TooLarge {
                len: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_bundle_arrives_intact() -> Result<()> {
    bounded(async {
        let (mut a, mut b, la, lb) = pair(cfg(), cfg()).await?;
        let data: Vec<u8> = (0..10u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        a.link
            .send_bundle(la, TransferId(42), Bytes::from(data.clone()))
            .await?;
        match next(&mut b.events).await? {
            LinkEvent::Bundle {
                link,
                transfer,
                bytes,
            } => {
                assert_eq!((link, transfer), (lb, TransferId(42)));
                assert!(bytes == data, "bundle differs");
            }
            other => bail!("expected Bundle, got {other:?}"),
        }
        assert_eq!(
            next(&mut a.events).await?,
            LinkEvent::Sent {
                link: la,
                transfer: TransferId(42)
            }
        );
        // An empty bundle is a bundle too.
        a.link.send_bundle(la, TransferId(43), Bytes::new()).await?;
        assert!(matches!(
            next(&mut b.events).await?,
            LinkEvent::Bundle { transfer: TransferId(43), ref bytes, .. } if bytes.is_empty()
        ));
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_over_peer_limit_is_refused_before_sending() -> Result<()> {
    bounded(async {
        let mut cb = cfg();
        cb.max_bundle_bytes = 1000;
        let (mut a, mut b, la, lb) = pair(cfg(), cb).await?;
        assert_eq!(
            a.link
                .send_bundle(la, TransferId(1), Bytes::from(vec![0; 1001]))
                .await,
            Err(SendError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
        a.link
            .send_bundle(la, TransferId(2), Bytes::from(vec![7; 1000]))
            .await?;
        assert!(matches!(
            next(&mut b.events).await?,
            LinkEvent::Bundle { link, transfer: TransferId(2), ref bytes } if link == lb && bytes.len() == 1000
        ));
        assert!(matches!(
            next(&mut a.events).await?,
            LinkEvent::Sent {
                transfer: TransferId(2),
                ..
            }
        ));
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_bundle_waits_when_max_in_flight_reached() -> Result<()> {
    bounded(async {
        let mut ca = cfg();
        ca.max_in_flight = 2;
        // B accepts little and its router does not read: transfers stall in flow control.
        let mut cb = cfg();
        cb.max_bundle_bytes = 64 << 10;
        cb.recv_budget_bytes = 64 << 10;
        cb.event_queue = 1;
        cb.max_frame_bytes = 1024;
        let (mut a, mut b, la, _) = pair(ca, cb).await?;
        let bundle = Bytes::from(vec![1u8; 64 << 10]);
        let mut accepted = 0u64;
        let mut sent = 0u64;
        loop {
            let f = a.link.send_bundle(la, TransferId(accepted), bundle.clone());
            match tokio::time::timeout(Duration::from_secs(2), f).await {
                Ok(r) => {
                    r?;
                    accepted += 1;
                    if accepted > 100 {
                        bail!("send_bundle never waited");
                    }
                }
                Err(_) => break,
            }
            while let Ok(ev) = a.events.try_recv() {
                assert!(matches!(ev, LinkEvent::Sent { .. }), "{ev:?}");
                sent += 1;
            }
        }
        while let Ok(ev) = a.events.try_recv() {
            assert!(matches!(ev, LinkEvent::Sent { .. }), "{ev:?}");
            sent += 1;
        }
        // Exactly two transfers are unfinished while the next send waits.
        assert_eq!(accepted, sent + 2, "accepted {accepted}, sent {sent}");
        // B's router reads again: everything flows.
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while n < accepted + 1 {
                if let LinkEvent::Bundle { .. } = next(&mut b.events).await? {
                    n += 1;
                }
            }
            anyhow::Ok(b)
        });
        a.link
            .send_bundle(la, TransferId(accepted), bundle.clone())
            .await?;
        let b = reader.await??;
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_reconnects_after_peer_restart() -> Result<()> {
    bounded(async {
        let mut ca = cfg();
        ca.reconnect = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(800),
            Duration::from_secs(60),
        );
        ca.handshake_timeout = Duration::from_secs(2);
        let mut a = node(1, &[realm(1)], ca).await?;
        let b = node(2, &[realm(1)], cfg()).await?;
        let b_addr = b.link.local_addr();
        let b_id = b.link.node_id();
        a.link.dial(b_id, b_addr.to_string());
        let (l1, p) = expect_up(&mut a.events).await?;
        assert_eq!(p, b_id);

        // B goes away and comes back on the same port.
        b.link.shutdown().await;
        drop(b);
        let (l, _) = expect_down(&mut a.events).await?;
        assert_eq!(l, l1);
        let mut rebound = None;
        for _ in 0..50 {
            let mut c = cfg();
            c.listen = b_addr;
            match QuicLink::bind(c, &ident(2), &[realm(1)]).await {
                Ok(b) => {
                    rebound = Some(b);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut b = rebound.context("could not rebind B's port")?;
        let (l2, p) = expect_up(&mut a.events).await?;
        assert_eq!(p, b_id);
        assert!(l2 > l1);
        let (_, p) = expect_up(&mut b.events).await?;
        assert_eq!(p, a.link.node_id());

        // undial: a lost link is not restored.
        a.link.undial(&b_id);
        b.link.shutdown().await;
        drop(b);
        expect_down(&mut a.events).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(a.link.links().is_empty());
        a.link.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_dial_keeps_one_connection() -> Result<()> {
    bounded(async {
        let mut a = node(1, &[realm(1)], cfg()).await?;
        let mut b = node(2, &[realm(1)], cfg()).await?;
        a.link
            .dial(b.link.node_id(), b.link.local_addr().to_string());
        b.link
            .dial(a.link.node_id(), a.link.local_addr().to_string());
        wait_for("one link each", || {
            a.link.links().len() == 1 && b.link.links().len() == 1
        })
        .await?;
        // Let any duplicate settle, then check it stays at one link each and that the
        // two ends agree (a frame sent on A's link arrives on B's).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let la = a.link.links();
        let lb = b.link.links();
        assert_eq!((la.len(), lb.len()), (1, 1));
        while a.events.try_recv().is_ok() {}
        while b.events.try_recv().is_ok() {}
        a.link.send_frame(la[0].0, b"ping".to_vec()).await?;
        assert_eq!(
            next(&mut b.events).await?,
            LinkEvent::Frame {
                link: lb[0].0,
                bytes: b"ping".to_vec()
            }
        );
        a.link.shutdown().await;
        b.link.shutdown().await;
        Ok(())
    })
    .await
}

/// A free UDP port on 127.0.0.1 (released before use; fine for tests).
fn free_udp_port() -> Result<SocketAddr> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?)
}

fn with_discovery(bind: SocketAddr, targets: Vec<SocketAddr>) -> QuicConfig {
    let mut c = cfg();
    let mut d = DiscoveryConfig::unicast(bind, targets);
    d.interval = Duration::from_millis(200);
    c.discovery = Some(d);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_peers_of_the_realm_only() -> Result<()> {
    bounded(async {
        let (da, db) = (free_udp_port()?, free_udp_port()?);
        let mut a = node(1, &[realm(1)], with_discovery(da, vec![db])).await?;
        let mut b = node(2, &[realm(1)], with_discovery(db, vec![da])).await?;
        assert_eq!(a.link.discovery_addr(), Some(da));
        let mut da_rx = a.discovered.take().context("discovery on")?;
        let mut db_rx = b.discovered.take().context("discovery on")?;
        let a_found = tokio::time::timeout(WAIT, da_rx.recv())
            .await?
            .context("closed")?;
        assert_eq!(a_found.node, b.link.node_id());
        assert_eq!(a_found.addr, b.link.local_addr());
        let b_found = tokio::time::timeout(WAIT, db_rx.recv())
            .await?
            .context("closed")?;
        assert_eq!(b_found.node, a.link.node_id());
        assert_eq!(b_found.addr, a.link.local_addr());
        // The node dials what it discovered.
        a.link.connect(a_found.node, a_found.addr).await?;
        expect_up(&mut a.events).await?;
        expect_up(&mut b.events).await?;

        // A node of another realm beacons to A: ignored.
        let dc = free_udp_port()?;
        let c = node(3, &[realm(2)], with_discovery(dc, vec![da])).await?;
        let before = a.link.stats().beacons_rejected;
        wait_for("foreign beacons rejected", || {
            a.link.stats().beacons_rejected >= before + 2
        })
        .await?;
        // A forged beacon (valid realm proof, bad signature): ignored.
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let mut forged = Beacon::sign(&ident(4), &[realm(1)], 9999, u64::MAX / 4).encode();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let before = a.link.stats().beacons_rejected;
        sock.send_to(&forged, da).await?;
        wait_for("forged beacon rejected", || {
            a.link.stats().beacons_rejected > before
        })
        .await?;
        // Nothing but B was ever announced to A.
        while let Ok(d) = da_rx.try_recv() {
            assert_eq!(d.node, b.link.node_id());
        }
        assert!(a.link.stats().beacons_accepted >= 1);
        for n in [&a.link, &b.link, &c.link] {
            n.shutdown().await;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused() -> Result<()> {
    let mut c = cfg();
    c.keep_alive = c.idle_timeout;
    assert!(QuicLink::bind(c, &ident(1), &[realm(1)]).await.is_err());
    assert!(QuicLink::bind(cfg(), &ident(1), &[]).await.is_err());
    let many: Vec<Realm> = (0..17).map(realm).collect();
    assert!(QuicLink::bind(cfg(), &ident(1), &many).await.is_err());
    let mut c = cfg();
    c.event_queue = 0;
    assert!(QuicLink::bind(c, &ident(1), &[realm(1)]).await.is_err());
    Ok(())
}
