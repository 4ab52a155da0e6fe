//! Payloads that arrive in fragments ([`ferry_core::Fragment`]): the daemon holds
//! each fragment's id until it has all of a message's, and then queues the whole
//! payload as one delivery. The fragments themselves stay in the custody store
//! (the engine delivered each); only ids and offsets are kept here, so a
//! restarted node rebuilds this table from the engine's re-deliveries.

use std::collections::{BTreeMap, HashMap};

use ferry_core::{BundleId, Fragment, NodeId, PayloadKind};

/// Most fragments held for messages not yet complete (each costs about 100 bytes
/// here; the bytes themselves are in the store). Past it, a new message's
/// fragments wait in the store until a restart, as a full delivery queue's do.
pub const MAX_HELD_FRAGMENTS: usize = 1 << 16;

/// A complete payload's fragments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The fragments' bundle ids; the first names the delivery.
    pub ids: Vec<BundleId>,
    /// Where each fragment's bytes start in the payload.
    pub offsets: Vec<u64>,
    /// The payload's length.
    pub total: u64,
}

impl Parts {
    /// The expected length of fragment `i`'s payload.
    pub fn len_of(&self, i: usize) -> u64 {
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.total);
        end.saturating_sub(self.offsets[i])
    }
}

/// What the first fragment of a message says about the whole; every later one
/// must say the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Endpoint (`""`: default).
    pub endpoint: String,
    /// Payload kind.
    pub kind: PayloadKind,
    /// Sent to the whole realm.
    pub group: bool,
    /// Fragments in the message.
    pub count: u32,
    /// The payload's length.
    pub total: u64,
}

#[derive(Debug)]
struct Partial {
    message: Message,
    got: BTreeMap<u32, (BundleId, u64)>,
}

/// The outcome of [`Reassembly::add`].
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Held; more fragments are to come.
    Waiting,
    /// Already held (a re-delivery).
    Duplicate,
    /// The last fragment: the message is complete and leaves the table.
    Complete(Message, Parts),
    /// Not held: too many fragments are waiting already.
    Full,
    /// Not held: it contradicts the message's other fragments (another count,
    /// length, kind or endpoint, another bundle at the same index, or offsets out
    /// of order).
    Conflict,
}

/// Fragments of incomplete messages, by source and message number.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: HashMap<(NodeId, u64), Partial>,
    of: HashMap<BundleId, (NodeId, u64)>,
}

impl Reassembly {
    /// Holds fragment `id` of `source`'s message `fragment.message`.
    pub fn add(
        &mut self,
        id: BundleId,
        source: NodeId,
        message: Message,
        fragment: Fragment,
    ) -> Added {
        if self.of.contains_key(&id) {
            return Added::Duplicate;
        }
        let key = (source, fragment.message);
        if !self.partial.contains_key(&key) && self.of.len() >= MAX_HELD_FRAGMENTS {
            return Added::Full;
        }
        let p = self.partial.entry(key).or_insert_with(|| Partial {
            message: message.clone(),
            got: BTreeMap::new(),
        });
        if p.message != message || p.got.contains_key(&fragment.index) {
            return Added::Conflict;
        }
        // Offsets must rise with the index.
        let before = p.got.range(..fragment.index).next_back();
        let after = p.got.range(fragment.index + 1..).next();
        if before.is_some_and(|(_, (_, o))| *o >= fragment.offset)
            || after.is_some_and(|(_, (_, o))| *o <= fragment.offset)
        {
            return Added::Conflict;
        }
        p.got.insert(fragment.index, (id, fragment.offset));
        if p.got.len() < p.message.count as usize {
            self.of.insert(id, key);
            return Added::Waiting;
        }
        let Some(p) = self.partial.remove(&key) else {
            return Added::Waiting;
        };
        let mut parts = Parts {
            ids: Vec::with_capacity(p.got.len()),
            offsets: Vec::with_capacity(p.got.len()),
            total: p.message.total,
        };
        for (part, offset) in p.got.into_values() {
            self.of.remove(&part);
            parts.ids.push(part);
            parts.offsets.push(offset);
        }
        if parts.offsets.first() != Some(&0) {
            return Added::Conflict;
        }
        Added::Complete(p.message, parts)
    }

    /// Forgets fragment `id` (expired, or removed by a receipt); whether it was held.
    pub fn remove(&mut self, id: &BundleId) -> bool {
        let Some(key) = self.of.remove(id) else {
            return false;
        };
        if let Some(p) = self.partial.get_mut(&key) {
            p.got.retain(|_, (part, _)| part != id);
            if p.got.is_empty() {
                self.partial.remove(&key);
            }
        }
        true
    }

    /// Fragments held.
    pub fn held(&self) -> usize {
        self.of.len()
    }

    /// Messages waiting for more fragments.
    pub fn messages(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Identity;
    use proptest::prelude::*;

    fn message(count: u32, total: u64) -> Message {
        Message {
            endpoint: String::new(),
            kind: PayloadKind::AppData,
            group: false,
            count,
            total,
        }
    }

    fn frag(index: u32, count: u32, offset: u64, total: u64) -> Fragment {
        Fragment {
            message: 7,
            index,
            count,
            offset,
            total,
        }
    }

    fn source() -> NodeId {
        Identity::from_seed([1; 32]).node_id()
    }

    #[test]
    fn completes_in_any_order_and_only_once() {
        let mut r = Reassembly::default();
        let src = source();
        let m = message(3, 30);
        assert_eq!(
            r.add(BundleId([2; 32]), src, m.clone(), frag(2, 3, 20, 30)),
            Added::Waiting
        );
        assert_eq!(
            r.add(BundleId([2; 32]), src, m.clone(), frag(2, 3, 20, 30)),
            Added::Duplicate
        );
        assert_eq!(
            r.add(BundleId([0; 32]), src, m.clone(), frag(0, 3, 0, 30)),
            Added::Waiting
        );
        assert_eq!((r.held(), r.messages()), (2, 1));
        let Added::Complete(got, parts) =
            r.add(BundleId([1; 32]), src, m.clone(), frag(1, 3, 10, 30))
        else {
            panic!("not complete")
        };
        assert_eq!(got, m);
        assert_eq!(
            parts.ids,
            vec![BundleId([0; 32]), BundleId([1; 32]), BundleId([2; 32])]
        );
        assert_eq!(parts.offsets, vec![0, 10, 20]);
        assert_eq!(parts.len_of(2), 10);
        assert_eq!((r.held(), r.messages()), (0, 0));
    }

    #[test]
    fn refuses_contradictions_and_forgets_removed_fragments() {
        let mut r = Reassembly::default();
        let src = source();
        assert_eq!(
            r.add(BundleId([0; 32]), src, message(3, 30), frag(0, 3, 0, 30)),
            Added::Waiting
        );
        // Another length, another bundle at the same index, offsets out of order.
        assert_eq!(
            r.add(BundleId([1; 32]), src, message(3, 31), frag(1, 3, 10, 31)),
            Added::Conflict
        );
        assert_eq!(
            r.add(BundleId([9; 32]), src, message(3, 30), frag(0, 3, 0, 30)),
            Added::Conflict
        );
        assert_eq!(
            r.add(BundleId([2; 32]), src, message(3, 30), frag(2, 3, 0, 30)),
            Added::Conflict
        );
        // A removed fragment leaves a gap that a re-delivery fills.
        assert!(r.remove(&BundleId([0; 32])));
        assert!(!r.remove(&BundleId([0; 32])));
        assert_eq!((r.held(), r.messages()), (0, 0));
        // The same message number from another source is another message.
        let other = Identity::from_seed([2; 32]).node_id();
        assert_eq!(
            r.add(BundleId([3; 32]), other, message(2, 20), frag(0, 2, 0, 20)),
            Added::Waiting
        );
        assert_eq!(
            r.add(BundleId([4; 32]), src, message(2, 20), frag(1, 2, 10, 20)),
            Added::Waiting
        );
        assert_eq!(r.messages(), 2);
    }

    proptest! {
        /// Fragments in any order, some twice: the message completes when the last
        /// one is in and not before, with every id in index order, and nothing is
        /// left held.
        #[test]
        fn any_arrival_order_completes_once(
            count in 2u32..40,
            order in proptest::collection::vec(any::<u32>(), 80),
        ) {
            let mut r = Reassembly::default();
            let src = source();
            let total = u64::from(count) * 100;
            let m = message(count, total);
            let mut arrivals: Vec<u32> = (0..count).collect();
            arrivals.extend(order.iter().map(|o| o % count));
            // Shuffle deterministically by the drawn keys.
            let mut keyed: Vec<(u32, u32)> = arrivals
                .iter()
                .enumerate()
                .map(|(i, a)| (order[i % order.len()].rotate_left(i as u32), *a))
                .collect();
            keyed.sort();
            let mut seen = std::collections::BTreeSet::new();
            let mut completed = false;
            for (_, i) in keyed {
                let id = BundleId([i as u8; 32]);
                let first = seen.insert(i);
                let got = r.add(id, src, m.clone(), frag(i, count, u64::from(i) * 100, total));
                if seen.len() == count as usize {
                    let Added::Complete(_, parts) = got else {
                        prop_assert!(false, "not complete with every fragment in: {:?}", got);
                        unreachable!()
                    };
                    let want: Vec<BundleId> =
                        (0..count).map(|i| BundleId([i as u8; 32])).collect();
                    prop_assert_eq!(parts.ids, want);
                    completed = true;
                    break;
                }
                prop_assert_eq!(got, if first { Added::Waiting } else { Added::Duplicate });
            }
            prop_assert!(completed);
            prop_assert_eq!((r.held(), r.messages()), (0, 0));
        }
    }
}
