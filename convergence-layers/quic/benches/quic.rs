//! QUIC link throughput between two endpoints in one process over 127.0.0.1:
//! (a) 64-byte bundles per second with many in flight, (b) MiB/s of 100 MiB bundles,
//! (c) 64-byte control frames per second. Prints a table; runs well under a minute.
//!
//! `cargo bench -p ferry-cl-quic`
// A benchmark reads the clock and prints its results.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_cl_api::{LinkEvent, LinkId, TransferId};
use ferry_cl_quic::{Bound, QuicConfig, QuicLink};
use ferry_core::{Identity, Realm};
use tokio::sync::mpsc::Receiver;

struct Pair {
    a: QuicLink,
    b: QuicLink,
    a_events: Receiver<LinkEvent>,
    b_events: Receiver<LinkEvent>,
    link: LinkId,
}

async fn pair(max_in_flight: u32) -> Pair {
    let realm = Realm::new("bench", [1; 32]).unwrap();
    let mut c = QuicConfig::localhost();
    c.max_in_flight = max_in_flight;
    c.event_queue = 4096;
    let Bound {
        link: a,
        events: mut a_events,
        ..
    } = QuicLink::bind(
        c.clone(),
        &Identity::from_seed([1; 32]),
        std::slice::from_ref(&realm),
    )
    .await
    .unwrap();
    let Bound {
        link: b,
        events: mut b_events,
        ..
    } = QuicLink::bind(c, &Identity::from_seed([2; 32]), &[realm])
        .await
        .unwrap();
    let link = a.connect(b.node_id(), b.local_addr()).await.unwrap();
    assert!(matches!(a_events.recv().await, Some(LinkEvent::Up { .. })));
    assert!(matches!(b_events.recv().await, Some(LinkEvent::Up { .. })));
    Pair {
        a,
        b,
        a_events,
        b_events,
        link,
    }
}

/// Drains the sender's events until `n` transfers are reported; returns how many
/// failed.
fn drain_sender(mut rx: Receiver<LinkEvent>, n: u64) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (mut done, mut failed) = (0, 0);
        while done < n {
            match rx.recv().await {
                Some(LinkEvent::Sent { .. }) => done += 1,
                Some(LinkEvent::SendFailed { .. }) => {
                    done += 1;
                    failed += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        failed
    })
}

/// Sends `n` bundles of `size` bytes; returns (elapsed from first send to last bundle
/// received, bytes received).
async fn bundles(max_in_flight: u32, n: u64, size: usize) -> (Duration, u64) {
    let Pair {
        a,
        b,
        a_events,
        mut b_events,
        link,
    } = pair(max_in_flight).await;
    let failed = drain_sender(a_events, n);
    let payload = Bytes::from(vec![0xa5u8; size]);
    let start = Instant::now();
    let sender = a.clone();
    let send = tokio::spawn(async move {
        for i in 0..n {
            sender
                .send_bundle(link, TransferId(i), payload.clone())
                .await
                .unwrap();
        }
    });
    let mut got = 0u64;
    let mut bytes = 0u64;
    while got < n {
        match b_events.recv().await {
            Some(LinkEvent::Bundle { bytes: b, .. }) => {
                got += 1;
                bytes += b.len() as u64;
            }
            Some(_) => {}
            None => break,
        }
    }
    let elapsed = start.elapsed();
    send.await.unwrap();
    // Every transfer reported before closing.
    let failed = failed.await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(failed, 0, "transfers failed");
    assert_eq!(got, n);
    (elapsed, bytes)
}

async fn frames(n: u64, size: usize) -> Duration {
    let Pair {
        a,
        b,
        a_events,
        mut b_events,
        link,
    } = pair(64).await;
    // The sender reports nothing for frames (the queue holds the final Down).
    let _a_events = a_events;
    let start = Instant::now();
    let sender = a.clone();
    let send = tokio::spawn(async move {
        for _ in 0..n {
            sender.send_frame(link, vec![0x5a; size]).await.unwrap();
        }
    });
    let mut got = 0u64;
    while got < n {
        match b_events.recv().await {
            Some(LinkEvent::Frame { .. }) => got += 1,
            Some(_) => {}
            None => break,
        }
    }
    let elapsed = start.elapsed();
    send.await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(got, n);
    elapsed
}

fn row(what: &str, n: u64, elapsed: Duration, rate: String) {
    println!(
        "| {what:<40} | {n:>8} | {:>9.3} s | {rate:>18} |",
        elapsed.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("QUIC link over 127.0.0.1, two endpoints in one process (2 worker threads)");
        println!(
            "| {:<40} | {:>8} | {:>11} | {:>18} |",
            "test", "count", "time", "rate"
        );
        println!("|{:-<42}|{:-<10}|{:-<13}|{:-<20}|", "", "", "", "");
        // Warm-up.
        let _ = bundles(64, 2_000, 64).await;

        for inflight in [64u32, 256] {
            let n = 100_000;
            let (t, _) = bundles(inflight, n, 64).await;
            row(
                &format!("(a) 64-byte bundles, {inflight} in flight"),
                n,
                t,
                format!("{:.0} bundles/s", n as f64 / t.as_secs_f64()),
            );
        }

        let n = 5;
        let (t, bytes) = bundles(2, n, 100 << 20).await;
        row(
            "(b) 100 MiB bundles, 2 in flight",
            n,
            t,
            format!(
                "{:.0} MiB/s",
                bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
            ),
        );
        let (t, bytes) = bundles(1, 3, 100 << 20).await;
        row(
            "(b) 100 MiB bundles, 1 in flight",
            3,
            t,
            format!(
                "{:.0} MiB/s",
                bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
            ),
        );

        let n = 300_000;
        let t = frames(n, 64).await;
        row(
            "(c) 64-byte control frames",
            n,
            t,
            format!("{:.0} frames/s", n as f64 / t.as_secs_f64()),
        );
    });
}
