//! Custody: acknowledgments only after the commit, group commit, a full store,
//! a relay that crashes after acknowledging, redelivery after a restart.

mod engine_net;

use std::sync::Arc;

use engine_net::{config, keyring, Net, WALL0};
use ferry_cl_api::{LinkCaps, LinkId, TransferId};
use ferry_core::{DtnTime, PayloadKind, Priority, Recipient, SealParams};
use ferry_router::engine::{
    decode_frame, Engine, EngineConfig, Frame, Input, Millis, Origin, Output, PolicyConfig,
    RefuseReason,
};
use ferry_storage::{CustodyStore, MemStore, StoreConfig};

fn frames(e: &mut Engine<MemStore>) -> (Vec<Frame>, Vec<Output>) {
    let mut frames = Vec::new();
    let mut others = Vec::new();
    while let Some(o) = e.poll_output() {
        match o {
            Output::SendFrame { bytes, .. } => frames.push(decode_frame(&bytes).unwrap()),
            o => others.push(o),
        }
    }
    (frames, others)
}

#[test]
fn custody_is_acknowledged_only_after_the_commit_and_commits_are_grouped() {
    let (ka, kb) = (keyring(1), keyring(2));
    let store = Arc::new(MemStore::default());
    let cfg = EngineConfig {
        policy: PolicyConfig::Epidemic,
        commit_batch: 3,
        commit_delay: Millis(20),
        ..EngineConfig::default()
    };
    let mut b = Engine::new(store.clone(), kb.clone(), cfg, Millis(0));
    let wall = Some(DtnTime(WALL0));
    let link = LinkId(1);
    b.handle_input(
        Millis(0),
        wall,
        Input::ContactUp {
            link,
            peer: ka.node_id(),
            caps: LinkCaps::ip_stream(),
        },
    )
    .unwrap();
    // Let start-up work (the redelivery scan, the first purge) finish.
    while b.poll_timeout().is_some_and(|t| t == Millis(0)) {
        b.handle_timeout(Millis(0), wall).unwrap();
    }
    frames(&mut b);
    let seal = |seq: u64| {
        let p = SealParams {
            recipient: Recipient::Group { endpoint: None },
            realm: "valley".into(),
            created: wall,
            sequence: seq,
            lifetime: 600,
            priority: Priority::Normal,
            hop_limit: 8,
            kind: PayloadKind::AppData,
            ephemeral: false,
            fragment: None,
        };
        let mut bundle = ka
            .seal(&p, b"data", &mut ferry_core::rand_core::OsRng)
            .unwrap();
        bundle.add_hop().unwrap();
        bundle
    };
    let receive = |e: &mut Engine<MemStore>, t: u64, seq: u64| {
        let bundle = seal(seq);
        let id = bundle.id();
        e.handle_input(
            Millis(t),
            wall,
            Input::Received {
                link,
                transfer: TransferId(seq),
                bundle,
            },
        )
        .unwrap();
        id
    };

    // One bundle: buffered, not stored, not acknowledged.
    let first = receive(&mut b, 1, 1);
    let (f, _) = frames(&mut b);
    assert!(!f.iter().any(|f| matches!(f, Frame::Ack(_))));
    assert!(!store.contains(&first).unwrap());
    assert_eq!(b.poll_timeout(), Some(Millis(21)));

    // At the deadline: committed, then acknowledged.
    b.handle_timeout(Millis(21), wall).unwrap();
    assert!(store.contains(&first).unwrap());
    let (f, _) = frames(&mut b);
    assert_eq!(f, vec![Frame::Ack(vec![first.0[..16].try_into().unwrap()])]);
    assert_eq!(b.stats().commits, 1);

    // Three bundles fill a batch: one commit, one ack frame, no timeout needed.
    let ids: Vec<_> = (2..5).map(|s| receive(&mut b, 30, s)).collect();
    assert_eq!(b.stats().commits, 2);
    let (f, _) = frames(&mut b);
    let acked: Vec<_> = f
        .iter()
        .filter_map(|f| match f {
            Frame::Ack(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].len(), 3);
    for id in &ids {
        assert!(store.contains(id).unwrap());
    }
}

#[test]
fn a_full_store_refuses_and_the_sender_keeps_custody_without_retrying_at_once() {
    let cfgs = vec![
        config(PolicyConfig::Epidemic),
        config(PolicyConfig::Epidemic),
    ];
    let store = StoreConfig {
        max_bytes: 1 << 20,
        max_count: 1,
        map_size: None,
    };
    let mut net = Net::with(cfgs, store);
    // Node 1's store is full with a short-lived bundle of its own.
    let filler = net.seal(1, Some(0), b"filler", 20, Priority::Normal, 8);
    let filler = net.submit(1, filler);
    assert!(net.holds(1, &filler));
    let b = net.seal(0, Some(1), b"no room", 3600, Priority::Normal, 8);
    let id = net.submit(0, b);
    let (la, _) = net.up(0, 1);
    net.run_for(50);
    // Node 1 refused node 0's bundle (and node 0 refused the filler: it is full too).
    assert!(net.nodes[1].refused.contains(&id));
    assert!(!net.holds(1, &id));
    assert!(net.holds(0, &id));
    let holders = net.nodes[0]
        .store
        .get_info(&id)
        .unwrap()
        .unwrap()
        .meta
        .routing
        .holders;
    assert!(holders.is_empty());
    assert_eq!(net.crossings(0, 1, &id), 1);
    // Inside the back-off nothing is offered again, even after the filler expired.
    net.run_for(25_000);
    assert!(!net.holds(1, &filler));
    assert_eq!(net.crossings(0, 1, &id), 1);
    assert!(net.nodes[0].engine.links().any(|(l, _)| l == la));
    // After it, a new reconciliation finds the bundle still missing and sends it.
    net.run_for(10_000);
    assert_eq!(net.crossings(0, 1, &id), 2);
    assert_eq!(net.delivered_count(1, &id), 1);
}

#[test]
fn a_relay_killed_after_acknowledging_still_delivers_exactly_once() {
    let mut net = Net::new(3, PolicyConfig::SprayAndWait { copies: 2 });
    let id = net.send(0, 2, b"survives");
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    assert!(
        net.holds(1, &id),
        "B acknowledged custody: it is in its store"
    );
    // B is killed: its engine (and all its RAM state) is gone; the store survives.
    let store = net.nodes[1].store.clone();
    let k = net.nodes[1].keyring.clone();
    let cfg = net.nodes[1].config.clone();
    net.nodes[1].engine = Engine::new(store, k, cfg, net.now);
    net.up(1, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 1);
    // A, which kept one copy, meets C later: nothing is delivered twice.
    net.up(0, 2);
    net.run_for(100);
    assert_eq!(net.delivered_count(2, &id), 1);
    assert_eq!(net.nodes[0].confirmed, vec![id]);
}

#[test]
fn unacknowledged_deliveries_are_delivered_again_after_a_restart() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    net.nodes[1].auto_ack = false;
    let id = net.send(0, 1, b"at least once");
    net.up(0, 1);
    net.run_for(50);
    net.down(0, 1);
    assert_eq!(net.delivered_count(1, &id), 1);
    // Restart before the app acknowledged it.
    let store = net.nodes[1].store.clone();
    let k = net.nodes[1].keyring.clone();
    let cfg = net.nodes[1].config.clone();
    net.nodes[1].engine = Engine::new(store, k, cfg, net.now);
    net.run_for(10);
    assert_eq!(
        net.delivered_count(1, &id),
        2,
        "delivered again; the app dedups by id"
    );
    // Now the app acknowledges; the receipt goes out at the next contact.
    net.input(1, Input::AppAck { id });
    net.run_for(10);
    assert!(!net.holds(1, &id));
    net.up(0, 1);
    net.run_for(50);
    assert_eq!(net.nodes[0].confirmed, vec![id]);
}

#[test]
fn submissions_are_checked_and_reported() {
    let mut net = Net::new(2, PolicyConfig::Epidemic);
    let foreign = net.seal(1, Some(0), b"not yours", 60, Priority::Normal, 8);
    let e = &mut net.nodes[0].engine;
    assert!(e
        .handle_input(Millis(0), None, Input::Submit { bundle: foreign })
        .is_err());
    let b = net.seal(0, Some(1), b"mine", 60, Priority::Normal, 8);
    let id = b.id();
    let e = &mut net.nodes[0].engine;
    e.handle_input(Millis(0), None, Input::Submit { bundle: b.clone() })
        .unwrap();
    e.handle_timeout(Millis(100), None).unwrap();
    let mut stored = false;
    while let Some(o) = e.poll_output() {
        stored |= o
            == Output::Stored {
                id,
                origin: Origin::Local,
            };
    }
    assert!(stored);
    // Submitting it again is idempotent.
    e.handle_input(Millis(100), None, Input::Submit { bundle: b })
        .unwrap();
    e.handle_timeout(Millis(200), None).unwrap();
    let mut again = false;
    while let Some(o) = e.poll_output() {
        again |= matches!(o, Output::Stored { id: i, .. } if i == id);
    }
    assert!(again);
    assert_eq!(net.nodes[0].store.stats().unwrap().count, 1);
    let _ = RefuseReason::StoreFull;
}

#[test]
fn failed_transfers_are_retried_then_given_up_and_found_again() {
    let mut net = Net::new(2, PolicyConfig::Direct);
    let id = net.send(0, 1, b"flaky");
    let sent = |net: &Net| net.nodes[0].engine.stats().bundles_sent;
    net.lose_bundles = true;
    net.up(0, 1);
    net.run_for(100);
    // Three attempts (`max_send_retries`), then the link goes quiet.
    assert_eq!(sent(&net), 3);
    assert!(net.holds(0, &id));
    net.lose_bundles = false;
    net.run_for(20_000);
    assert_eq!(sent(&net), 3, "no retry inside the back-off");
    net.run_for(15_000);
    assert_eq!(sent(&net), 4);
    assert_eq!(net.delivered_count(1, &id), 1);
    assert!(!net.holds(0, &id));
}
