//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ferry_core::{BundleId, Destination, NodeHash, Priority};
use ferry_storage::{BundleMeta, NewRecord, RoutingMeta};

/// A temporary directory on the same file system as the build (not a tmpfs).
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-storage-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// A distinct, well-spread id for `n` (and `salt`, to keep runs apart).
pub fn id_of(salt: u64, n: u64) -> BundleId {
    let mut b = [0u8; 32];
    let mut x = splitmix(salt ^ n.rotate_left(17) ^ 0x5151_5151);
    for chunk in b.chunks_mut(8) {
        x = splitmix(x);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    b[24..].copy_from_slice(&n.to_be_bytes());
    BundleId(b)
}

pub fn id(n: u64) -> BundleId {
    id_of(0, n)
}

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bundle bytes that are a function of the id, so any mix-up is detected.
pub fn payload(id: &BundleId, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = u64::from_le_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
    while out.len() < len {
        x = splitmix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn node(n: u8) -> NodeHash {
    NodeHash([n; 8])
}

pub fn meta(priority: Priority, destination: Destination, expires_at: Option<u64>) -> BundleMeta {
    BundleMeta {
        priority,
        destination,
        source: node(200),
        expires_at,
        received_at: 7,
        routing: RoutingMeta {
            holders: vec![node(201)],
            copies_left: 8,
            custody: ferry_storage::CustodyState::Held,
        },
    }
}

pub fn rec(n: u64, len: usize) -> NewRecord {
    rec_with(n, len, Priority::Normal, Destination::Group, None)
}

pub fn rec_with(
    n: u64,
    len: usize,
    priority: Priority,
    destination: Destination,
    expires_at: Option<u64>,
) -> NewRecord {
    let id = id(n);
    NewRecord {
        id,
        bytes: payload(&id, len),
        meta: meta(priority, destination, expires_at),
    }
}
