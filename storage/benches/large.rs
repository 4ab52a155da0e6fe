//! Large bundles in the durable store: the time of one insert (its commit included)
//! and of one get, for bundles of 4, 32 and 100 MiB, in a fresh store under the build's
//! target directory. Bundles of at least `FILE_MIN` (1 MiB) are payload files next to
//! LMDB; what this measures is that path: write, `fdatasync`, directory sync, LMDB
//! commit, and reading the file back with its CRC check.
//!
//! `cargo bench -p ferry-storage --bench large` (about 20 s). `FERRY_BENCH_ROUNDS`
//! sets the rounds per size (5).
#![allow(clippy::disallowed_methods, clippy::print_stdout)] // a benchmark times and prints

use std::time::Instant;

use ferry_core::{BundleId, Destination, NodeHash, Priority};
use ferry_storage::{BundleMeta, CustodyStore, LmdbStore, NewRecord, RoutingMeta, StoreConfig};

fn record(n: u64, len: usize) -> NewRecord {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    NewRecord {
        id: BundleId(id),
        bytes: (0..len).map(|i| (i as u8) ^ (n as u8)).collect(),
        meta: BundleMeta {
            priority: Priority::Bulk,
            destination: Destination::Node(NodeHash([1; 8])),
            source: NodeHash([2; 8]),
            expires_at: None,
            received_at: 1,
            routing: RoutingMeta::default(),
        },
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u64 = std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let store = LmdbStore::open(
        dir.path(),
        StoreConfig {
            max_bytes: 1 << 30,
            max_count: 1000,
            map_size: None,
        },
    )?;
    println!("size      insert (commit)   get       MiB/s in  MiB/s out   (median of {rounds})");
    let mut n = 0;
    for mib in [4usize, 32, 100] {
        let (mut ins, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            n += 1;
            let r = record(n, mib << 20);
            let t = Instant::now();
            store.insert(&r)?;
            ins.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let got = store.get(&r.id)?.ok_or("inserted record missing")?;
            gets.push(t.elapsed().as_secs_f64());
            assert_eq!(got.bytes.len(), r.bytes.len());
            store.remove(&r.id)?;
        }
        let (i, g) = (median(ins), median(gets));
        println!(
            "{mib:>3} MiB   {:>9.1} ms   {:>9.1} ms   {:>8.0}  {:>9.0}",
            i * 1e3,
            g * 1e3,
            mib as f64 / i,
            mib as f64 / g
        );
    }
    Ok(())
}
