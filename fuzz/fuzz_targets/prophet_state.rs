//! `Prophet::restore` (PRoPHET's table as saved in the store) on arbitrary bytes.
//! Whatever restores holds only predictabilities in [0, 1), and saving it again
//! and restoring that gives the same table.
#![no_main]

use ferry_core::NodeHash;
use ferry_router::engine::prophet::Prophet;
use ferry_router::engine::{Millis, ProphetParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let own = NodeHash([0; 8]);
    let mut p = Prophet::new(own, ProphetParams::default());
    if p.restore(data, Millis(1_000), Some(900_000_000)).is_err() {
        return;
    }
    let table: Vec<_> = p.table().collect();
    assert!(table.iter().all(|(_, q)| (0.0..1.0).contains(q)));
    let saved = p.save(Millis(1_000), Some(900_000_000));
    let mut q = Prophet::new(own, ProphetParams::default());
    q.restore(&saved, Millis(1_000), Some(900_000_000))
        .expect("a saved table restores");
    assert_eq!(q.table().collect::<Vec<_>>(), table);
});
