//! Writes the seed packs of the `drive_pack` fuzz target (deterministic):
//!
//! ```sh
//! cargo run -p ferry-cl-drive --example fuzz_seeds -- fuzz/seeds/drive_pack
//! ```

use std::path::PathBuf;

use ferry_cl_drive::{Drive, DriveLimits};

/// (id byte, copies, body) of each entry.
type Entries = Vec<(u8, u32, Vec<u8>)>;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds/drive_pack".into()),
    );
    std::fs::create_dir_all(&out)?;
    let mount = tempfile::tempdir()?;
    let drive = Drive::open_or_init(mount.path(), DriveLimits::default())?;
    let packs: [(&str, Entries); 3] = [
        ("one_entry", vec![(1, 1, b"a bundle".to_vec())]),
        (
            "three_entries",
            vec![
                (1, 0, Vec::new()),
                (2, 3, (0..200u8).collect()),
                (3, 300, b"third".to_vec()),
            ],
        ),
        (
            "many_small",
            (0..20u8)
                .map(|n| (n, u32::from(n), vec![n; usize::from(n)]))
                .collect(),
        ),
    ];
    for (name, entries) in packs {
        let mut w = drive.pack_writer()?;
        for (n, copies, bytes) in &entries {
            w.push(&[*n; 32], *copies, bytes)?;
        }
        let pack = w.finish()?.ok_or_else(|| anyhow::anyhow!("empty"))?;
        std::fs::copy(&pack.path, out.join(name))?;
    }
    // For the harness-built mode (odd first byte): u16 LE body length 5, the body,
    // then an index with one entry (id 0xab…, len 5, copies 2, expiry 0).
    let mut built = vec![1, 5, 0];
    built.extend_from_slice(b"hello");
    built.push(1);
    built.extend_from_slice(&[0xab; 32]);
    built.extend_from_slice(&[5, 2, 0]);
    std::fs::write(out.join("harness_built_index"), built)?;
    Ok(())
}
