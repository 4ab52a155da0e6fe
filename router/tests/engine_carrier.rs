//! Carrier contacts (USB drives) through the engine alone: a drive is modelled as a
//! list of written bundles; the test plays the drive driver (accept, import, export,
//! report writes durable).

use std::sync::Arc;

use ferry_cl_api::{LinkCaps, LinkId};
use ferry_core::{
    Bundle, BundleId, DtnTime, Identity, Keyring, NodeHash, PayloadKind, Priority, Realm,
    Recipient, SealParams,
};
use ferry_router::engine::{
    Engine, EngineConfig, ImportOutcome, Input, Millis, Output, PolicyConfig, RemoveReason,
};
use ferry_storage::{CustodyStore, MemStore};

const WALL: Option<DtnTime> = Some(DtnTime(800_000_000));

fn realm() -> Realm {
    Realm::new("valley", [7; 32]).unwrap()
}

struct Node {
    engine: Engine<MemStore>,
    store: Arc<MemStore>,
    keyring: Arc<Keyring>,
    now: Millis,
    delivered: Vec<BundleId>,
    confirmed: Vec<BundleId>,
    removed: Vec<(BundleId, RemoveReason)>,
}

/// What a drive holds: (bundle bytes, copies).
#[derive(Clone)]
struct Drive {
    entries: Vec<(Vec<u8>, u32)>,
    /// Writes that fail from this index on (a full drive).
    capacity: Option<usize>,
    /// The drive's pseudo-peer hash.
    hash: NodeHash,
}

impl Drive {
    fn new(n: u8) -> Drive {
        Drive {
            entries: Vec::new(),
            capacity: None,
            hash: NodeHash([n; 8]),
        }
    }
}

impl Node {
    fn new(seed: u8, policy: PolicyConfig) -> Node {
        let keyring = Arc::new(Keyring::new(Identity::from_seed([seed; 32]), vec![realm()]));
        let store = Arc::new(MemStore::default());
        let cfg = EngineConfig {
            policy,
            ..EngineConfig::default()
        };
        Node {
            engine: Engine::new(store.clone(), keyring.clone(), cfg, Millis(0)),
            store,
            keyring,
            now: Millis(0),
            delivered: Vec::new(),
            confirmed: Vec::new(),
            removed: Vec::new(),
        }
    }

    fn hash(&self) -> NodeHash {
        self.keyring.node_id().hash()
    }

    fn send(&mut self, to: &Node, payload: &[u8], priority: Priority) -> BundleId {
        let params = SealParams {
            recipient: Recipient::Node {
                id: to.keyring.node_id(),
                endpoint: None,
            },
            realm: "valley".into(),
            created: WALL,
            sequence: self.engine.next_sequence().unwrap(),
            lifetime: 3600,
            priority,
            hop_limit: 8,
            kind: PayloadKind::AppData,
            ephemeral: false,
            fragment: None,
        };
        let b = self
            .keyring
            .seal(&params, payload, &mut ferry_core::rand_core::OsRng)
            .unwrap();
        let id = b.id();
        self.input(Input::Submit { bundle: b });
        self.settle(&mut Vec::new(), &mut Drive::new(0));
        id
    }

    fn input(&mut self, i: Input) {
        self.now = Millis(self.now.0 + 1);
        self.engine.handle_input(self.now, WALL, i).unwrap();
    }

    /// Drains outputs and runs timers until nothing is due; exports go to `drive`,
    /// import outcomes to `imported`.
    fn settle(&mut self, imported: &mut Vec<(BundleId, ImportOutcome)>, drive: &mut Drive) {
        for _ in 0..10_000 {
            let mut inputs = Vec::new();
            while let Some(o) = self.engine.poll_output() {
                match o {
                    Output::Deliver { id, .. } => {
                        self.delivered.push(id);
                        inputs.push(Input::AppAck { id });
                    }
                    Output::Delivered { id, .. } => self.confirmed.push(id),
                    Output::Removed { id, reason } => self.removed.push((id, reason)),
                    Output::Imported { id, outcome, .. } => imported.push((id, outcome)),
                    Output::Export {
                        link,
                        transfer,
                        bytes,
                        copies,
                        ..
                    } => {
                        let full = drive.capacity.is_some_and(|c| drive.entries.len() >= c);
                        if full {
                            inputs.push(Input::TransferFailed { link, transfer });
                        } else {
                            drive.entries.push((bytes, copies));
                            inputs.push(Input::TransferDone { link, transfer });
                        }
                    }
                    _ => {}
                }
            }
            if !inputs.is_empty() {
                for i in inputs {
                    self.input(i);
                }
                continue;
            }
            match self.engine.poll_timeout() {
                Some(t) if t.0 <= self.now.0 + 100 => {
                    self.now = Millis(t.0.max(self.now.0));
                    self.engine.handle_timeout(self.now, WALL).unwrap();
                }
                _ => return,
            }
        }
        panic!("engine did not settle");
    }

    /// One visit of the drive: import everything, then export. Returns the import
    /// outcomes and the number of bundles written.
    fn sync(
        &mut self,
        drive: &mut Drive,
        reach: Vec<NodeHash>,
    ) -> (Vec<(BundleId, ImportOutcome)>, usize) {
        let link = LinkId(77);
        self.input(Input::CarrierUp {
            link,
            carrier: drive.hash,
            caps: LinkCaps::ip_stream(),
            reach,
        });
        let inventory: Vec<BundleId> = drive
            .entries
            .iter()
            .map(|(b, _)| Bundle::decode(b, &Default::default()).unwrap().id())
            .collect();
        self.input(Input::Holders {
            peer: drive.hash,
            ids: inventory,
        });
        let mut imported = Vec::new();
        for (bytes, copies) in drive.entries.clone() {
            let b = self.keyring.accept(&bytes, WALL).unwrap();
            self.input(Input::Carried {
                link,
                bundle: b,
                copies,
            });
        }
        self.settle(&mut imported, drive);
        let before = drive.entries.len();
        self.input(Input::CarrierExport { link });
        self.settle(&mut imported, drive);
        self.input(Input::ContactDown { link });
        self.settle(&mut imported, drive);
        (imported, drive.entries.len() - before)
    }
}

#[test]
fn a_drive_carries_a_bundle_two_hops_and_the_receipt_back() {
    let mut a = Node::new(1, PolicyConfig::Epidemic);
    let mut b = Node::new(2, PolicyConfig::Epidemic);
    let mut c = Node::new(3, PolicyConfig::Epidemic);
    let id = a.send(&c, b"for C", Priority::Normal);
    let (mut d1, mut d2) = (Drive::new(1), Drive::new(2));

    // A → d1: written once; a second sync writes nothing.
    assert_eq!(a.sync(&mut d1, vec![]).1, 1);
    assert_eq!(a.sync(&mut d1, vec![]).1, 0);
    assert!(
        a.store.contains(&id).unwrap(),
        "writing to a drive keeps custody"
    );

    // d1 → B (stored), B → d2.
    let (imp, _) = b.sync(&mut d1, vec![]);
    assert_eq!(imp, vec![(id, ImportOutcome::Stored)]);
    let (imp, _) = b.sync(&mut d1, vec![]);
    assert_eq!(imp, vec![(id, ImportOutcome::Duplicate)]);
    assert_eq!(b.sync(&mut d2, vec![]).1, 1);

    // d2 → C: delivered; its receipt goes onto d2.
    let written = c.sync(&mut d2, vec![]).1;
    assert_eq!(c.delivered, vec![id]);
    assert_eq!(written, 1, "C writes its receipt in the same visit");
    assert_eq!(c.sync(&mut d2, vec![]).1, 0);

    // d2 → B: the receipt releases B's copy; B carries the receipt to d1 → A.
    b.sync(&mut d2, vec![]);
    assert!(!b.store.contains(&id).unwrap());
    assert!(b.sync(&mut d1, vec![]).1 >= 1);
    assert!(
        a.store.contains(&id).unwrap(),
        "only the receipt releases A's copy"
    );
    a.sync(&mut d1, vec![]);
    assert_eq!(a.confirmed, vec![id]);
    assert!(!a.store.contains(&id).unwrap());
}

#[test]
fn policies_decide_what_goes_on_a_drive() {
    // Direct delivery: nothing for an unknown reader, the bundle for its destination.
    let mut a = Node::new(1, PolicyConfig::Direct);
    let c = Node::new(3, PolicyConfig::Direct);
    a.send(&c, b"x", Priority::Normal);
    let mut d = Drive::new(1);
    assert_eq!(a.sync(&mut d, vec![]).1, 0);
    assert_eq!(a.sync(&mut d, vec![NodeHash([9; 8])]).1, 0);
    assert_eq!(a.sync(&mut d, vec![c.hash()]).1, 1);

    // Spray-and-wait: half the copies go to the drive, and are spent.
    let mut a = Node::new(1, PolicyConfig::SprayAndWait { copies: 8 });
    let id = a.send(&c, b"x", Priority::Normal);
    let mut d = Drive::new(1);
    assert_eq!(a.sync(&mut d, vec![]).1, 1);
    assert_eq!(d.entries[0].1, 4);
    let info = a.store.get_info(&id).unwrap().unwrap();
    assert_eq!(info.meta.routing.copies_left, 4);
    // Another drive gets half of what is left.
    let mut d2 = Drive::new(2);
    let other = NodeHash([0xd2; 8]);
    a.input(Input::CarrierUp {
        link: LinkId(5),
        carrier: other,
        caps: LinkCaps::ip_stream(),
        reach: vec![],
    });
    a.input(Input::CarrierExport { link: LinkId(5) });
    a.settle(&mut Vec::new(), &mut d2);
    assert_eq!(d2.entries.len(), 1);
    assert_eq!(d2.entries[0].1, 2);

    // Static routes: the drive is used when the next hop reads it.
    let c_id = c.keyring.node_id();
    let b = Node::new(2, PolicyConfig::Direct);
    let routes = std::collections::BTreeMap::from([(c_id, b.keyring.node_id())]);
    let mut a = Node::new(1, PolicyConfig::Static { routes });
    a.send(&c, b"x", Priority::Normal);
    let mut d = Drive::new(1);
    assert_eq!(a.sync(&mut d, vec![]).1, 0);
    assert_eq!(a.sync(&mut d, vec![b.hash()]).1, 1);
}

#[test]
fn holders_expedited_first_and_a_full_drive() {
    let mut a = Node::new(1, PolicyConfig::Epidemic);
    let c = Node::new(3, PolicyConfig::Epidemic);
    let bulk: Vec<BundleId> = (0..5)
        .map(|i| a.send(&c, &[i; 100], Priority::Bulk))
        .collect();
    let urgent = a.send(&c, b"urgent", Priority::Expedited);
    // C's manifest says it holds bulk[0]: not written for it.
    a.input(Input::Holders {
        peer: c.hash(),
        ids: vec![bulk[0]],
    });
    // A drive with room for two: the expedited bundle goes first.
    let mut d = Drive {
        capacity: Some(2),
        ..Drive::new(1)
    };
    assert_eq!(a.sync(&mut d, vec![c.hash()]).1, 2);
    let first = Bundle::decode(&d.entries[0].0, &Default::default()).unwrap();
    assert_eq!(first.id(), urgent);
    let second = Bundle::decode(&d.entries[1].0, &Default::default()).unwrap();
    assert_eq!(second.id(), bulk[1]);
    // Room again: the rest, except what C holds and what is already on the drive.
    d.capacity = None;
    assert_eq!(a.sync(&mut d, vec![c.hash()]).1, 3);
    let on_drive: Vec<BundleId> = d
        .entries
        .iter()
        .map(|(b, _)| Bundle::decode(b, &Default::default()).unwrap().id())
        .collect();
    assert!(!on_drive.contains(&bulk[0]));
    // Nothing was released by writing.
    for id in bulk.iter().chain([&urgent]) {
        assert!(a.store.contains(id).unwrap());
    }
    assert!(a.removed.is_empty());
}

#[test]
fn epidemic_fills_a_drive_even_when_its_known_readers_hold_everything() {
    // The drive is a peer of its own: whoever reads it next may lack the bundle.
    let mut a = Node::new(1, PolicyConfig::Epidemic);
    let c = Node::new(3, PolicyConfig::Epidemic);
    let reader = NodeHash([0x77; 8]);
    let id = a.send(&c, b"x", Priority::Normal);
    a.input(Input::Holders {
        peer: reader,
        ids: vec![id],
    });
    let mut d = Drive::new(1);
    assert_eq!(a.sync(&mut d, vec![reader]).1, 1);
    // Direct delivery does not: the reader is not the destination.
    let mut a = Node::new(1, PolicyConfig::Direct);
    a.send(&c, b"x", Priority::Normal);
    let mut d = Drive::new(1);
    assert_eq!(a.sync(&mut d, vec![reader]).1, 0);
}
