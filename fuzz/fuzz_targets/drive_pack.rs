//! `ferry_cl_drive` pack reading (`Drive::read_index` + `Drive::entries`) on arbitrary
//! files. Nothing may panic or allocate beyond the limits; whatever reads must agree
//! with the file: the bodies tile the file between the head magic and the index, each
//! entry yields exactly `len` bytes, and the index's name is stable.
//!
//! A mutated file almost never passes the BLAKE3 index check, so inputs whose first
//! byte is odd are built into a pack by the harness: byte 1 and 2 (u16 LE) choose how
//! many of the remaining bytes are bodies, the rest is the index, and the harness
//! writes the trailer with a correct check (the layout of docs/sneakernet.md), so the
//! index parser is reached with anything. Other inputs are written as they are.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ferry_cl_drive::{Drive, DriveLimits, PackRef};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    drive: Drive,
    pack: PackRef,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let mount = base.join(format!("ferry-fuzz-drive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&mount);
        std::fs::create_dir_all(&mount).expect("temp mount");
        // Small limits so the limit paths are reachable with small inputs.
        let limits = DriveLimits {
            max_entries: 64,
            max_body_bytes: 4096,
            max_pack_bytes: 1 << 20,
            ..DriveLimits::default()
        };
        let drive = Drive::open_or_init(&mount, limits).expect("drive");
        let path = drive.ferry_dir().join("packs/0000000000000000.fpk");
        let pack = PackRef {
            name: "0000000000000000".into(),
            path,
            size: 0,
        };
        Fixture { drive, pack }
    })
}

fn hand_pack(data: &[u8]) -> Vec<u8> {
    let (split, rest) = match data {
        [_, a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, &[][..]),
    };
    let split = split.min(rest.len());
    let (bodies, index) = rest.split_at(split);
    let mut f = b"FPK1".to_vec();
    f.extend_from_slice(bodies);
    f.extend_from_slice(index);
    let len = index.len() as u32;
    let mut h = blake3::Hasher::new();
    h.update(index);
    h.update(&len.to_le_bytes());
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&h.finalize().as_bytes()[..8]);
    f.extend_from_slice(b"FPK1");
    f
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let file = match data.first() {
        Some(b) if b & 1 == 1 => hand_pack(data),
        _ => data.to_vec(),
    };
    std::fs::write(&fx.pack.path, &file).expect("write pack");
    let Ok(index) = fx.drive.read_index(&fx.pack) else {
        return;
    };
    let limits = fx.drive.limits();
    assert!(index.len() <= limits.max_entries);
    assert_eq!(index.file_size, file.len() as u64);
    let mut offset = 4u64;
    for (i, e) in index.entries.iter().enumerate() {
        assert_eq!(e.index, i);
        assert_eq!(e.offset, offset);
        assert!(e.len <= limits.max_body_bytes);
        offset += e.len;
    }
    assert_eq!(&file[..4], b"FPK1");
    assert_eq!(&file[file.len() - 4..], b"FPK1");
    let mut n = 0;
    for r in fx.drive.entries(&fx.pack, &index).expect("open pack") {
        let e = r.expect("a pack whose index reads has every body");
        let ie = &index.entries[e.index];
        assert_eq!(e.index, n);
        assert_eq!(e.id, ie.id);
        assert_eq!(e.copies, ie.copies);
        let start = ie.offset as usize;
        assert_eq!(&e.bytes[..], &file[start..start + ie.len as usize]);
        n += 1;
    }
    assert_eq!(n, index.len());
    // Every other entry, with seeks.
    let odd: Vec<_> = fx
        .drive
        .read_entries(&fx.pack, &index, |e| e.index % 2 == 1)
        .expect("open pack")
        .map(|r| r.expect("body").index)
        .collect();
    assert!(odd.iter().all(|i| i % 2 == 1));
    assert_eq!(odd.len(), index.len() / 2);
    assert_eq!(fx.drive.read_index(&fx.pack).expect("reads again"), index);
});
