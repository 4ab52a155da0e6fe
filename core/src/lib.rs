//! # ferry-core
//!
//! The ground every other Ferry crate stands on: the secured bundle and its strict
//! codec, node identities, realms and the time types. No I/O, no tokio, no clock
//! reads: callers pass time in, so the same code runs in the daemon and in the
//! simulator.
//!
//! ```
//! use ferry_core::{Identity, Keyring, Realm, Recipient, SealParams, PayloadKind, Priority, DtnTime};
//! let mut rng = rand_core::OsRng;
//! let realm = Realm::new("valley", [7; 32]).unwrap();
//! let alice = Keyring::new(Identity::generate(&mut rng), vec![realm.clone()]);
//! let bob = Keyring::new(Identity::generate(&mut rng), vec![realm]);
//! let params = SealParams {
//!     recipient: Recipient::Node { id: bob.node_id(), endpoint: None },
//!     realm: "valley".into(),
//!     created: Some(DtnTime(800_000_000)),
//!     sequence: 1,
//!     lifetime: 7200,
//!     priority: Priority::Normal,
//!     hop_limit: 32,
//!     kind: PayloadKind::AppData,
//!     ephemeral: false,
//!     fragment: None,
//! };
//! let bundle = alice.seal(&params, b"hello", &mut rng).unwrap();
//! let wire = bundle.encode();
//! let received = bob.accept(&wire, Some(DtnTime(800_000_010))).unwrap();
//! assert_eq!(bob.open(&received).unwrap().payload, b"hello");
//! ```
#![forbid(unsafe_code)]

pub mod bundle;
pub mod codec;
pub mod crypto;
pub mod id;
pub mod identity;
pub mod realm;
pub mod time;

pub use bundle::{
    signature_message, Bundle, DecodeError, Destination, Envelope, Header, Limits, PayloadKind,
    Priority, DEFAULT_HOP_LIMIT, DEFAULT_MAX_BUNDLE_BYTES, SIG_CONTEXT, SIG_MESSAGE_LEN, VERSION,
};
pub use crypto::{
    verify, verify_many, Fragment, Keyring, OpenError, Opened, OpenedHead, OpenedInPlace,
    Recipient, SealError, SealParams, SealPlan, MAX_FRAGMENTS,
};
pub use id::{BundleId, IdParseError, NodeHash, NodeId};
pub use identity::{Identity, KeyFileError};
pub use rand_core;
pub use realm::{Realm, RealmError, RealmTag};
pub use time::{parse_lifetime, DtnTime, LifetimeError};
