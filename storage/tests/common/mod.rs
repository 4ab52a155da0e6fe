//! Helpers shared by the integration tests: the record builders of the behavioural
//! suite ([`ferry_storage::conformance`]), and a temporary directory.
#![allow(dead_code, unused_imports)]

pub use ferry_storage::conformance::{id, id_of, meta, node, payload, rec, rec_with, splitmix};

/// A temporary directory on the same file system as the build (not a tmpfs).
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-storage-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}
