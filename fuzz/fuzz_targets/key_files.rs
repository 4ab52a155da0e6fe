//! Parsers of user-supplied key material and ids: `Identity::from_key_file`,
//! `Realm::from_share_string`, `NodeId`/`BundleId`/`PeerAddr` `FromStr` and
//! `parse_lifetime`. Whatever parses must print back to something that parses to the
//! same value.
#![no_main]

use ferry_core::{parse_lifetime, BundleId, Identity, NodeId, Realm};
use ferry_router::config::PeerAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = Identity::from_key_file(s) {
        let again = Identity::from_key_file(&id.to_key_file()).expect("own key file parses");
        assert_eq!(again.node_id(), id.node_id());
    }
    if let Ok(r) = Realm::from_share_string(s) {
        let again = Realm::from_share_string(&r.to_share_string()).expect("own share parses");
        assert_eq!(again.name(), r.name());
        assert_eq!(again.tag(), r.tag());
        assert!(!r.name().is_empty() && r.name().len() <= 64);
    }
    if let Ok(n) = s.parse::<NodeId>() {
        let printed = n.to_string();
        assert_eq!(printed.len(), 52);
        assert_eq!(printed.parse::<NodeId>(), Ok(n));
        assert_eq!(NodeId::from_bytes(*n.as_bytes()), Ok(n));
        assert!(printed.starts_with(&n.short()));
    }
    if let Ok(b) = s.parse::<BundleId>() {
        assert_eq!(b.to_string().parse::<BundleId>(), Ok(b));
    }
    if let Ok(p) = s.parse::<PeerAddr>() {
        assert_eq!(p.to_string().parse::<PeerAddr>().ok(), Some(p));
    }
    if let Ok(secs) = parse_lifetime(s) {
        assert!(secs > 0);
    }
});
