//! Property tests: round trips, arbitrary and damaged pack files never panic, every
//! truncation and every header bit flip is caught.

use std::fs;
use std::path::PathBuf;

use ferry_cl_drive::{Drive, DriveLimits, EntryError, PackRef};
use ferry_core::codec::put_varint;
use proptest::prelude::*;

type Entry = ([u8; 32], u32, Vec<u8>);

fn entries(max: usize, max_len: usize) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(0u32), Just(1), any::<u32>()],
            prop::collection::vec(any::<u8>(), 0..max_len),
        ),
        0..max,
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    drive: Drive,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let drive = Drive::open_or_init(dir.path(), DriveLimits::default()).unwrap();
    Fixture { _dir: dir, drive }
}

fn write(drive: &Drive, entries: &[Entry]) -> Option<PackRef> {
    let mut w = drive.pack_writer().unwrap();
    for (id, copies, bytes) in entries {
        w.push(id, *copies, bytes).unwrap();
    }
    w.finish().unwrap()
}

/// Puts `bytes` on the drive as a pack and returns its reference.
fn place(drive: &Drive, bytes: &[u8]) -> PackRef {
    let path: PathBuf = drive.ferry_dir().join("packs/0000000000000000.fpk");
    fs::write(&path, bytes).unwrap();
    PackRef {
        name: "0000000000000000".into(),
        path,
        size: bytes.len() as u64,
    }
}

/// Reads a pack the way an importer does; must never panic. Returns the entries
/// read intact.
fn read_everything(drive: &Drive, pack: &PackRef) -> Option<Vec<(usize, Vec<u8>)>> {
    let index = drive.read_index(pack).ok()?;
    assert!(index.len() <= drive.limits().max_entries);
    let mut out = Vec::new();
    for r in drive.entries(pack, &index).ok()? {
        match r {
            Ok(e) => {
                assert_eq!(e.bytes.len() as u64, index.entries[e.index].len);
                out.push((e.index, e.bytes));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    Some(out)
}

/// A pack built by hand from the layout in docs/sneakernet.md, with a correct check
/// over an arbitrary index, so the index parser is reached with anything.
fn hand_pack(bodies: &[u8], index: &[u8]) -> Vec<u8> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_entries_round_trip(entries in entries(40, 3000)) {
        let fx = fixture();
        let pack = write(&fx.drive, &entries);
        prop_assert_eq!(pack.is_none(), entries.is_empty());
        let Some(pack) = pack else { return Ok(()) };
        let index = fx.drive.read_index(&pack).unwrap();
        prop_assert_eq!(index.len(), entries.len());
        prop_assert_eq!(&index.content_name, &pack.name);
        let got: Vec<_> = fx.drive.entries(&pack, &index).unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(got.len(), entries.len());
        for (g, (id, copies, bytes)) in got.iter().zip(&entries) {
            prop_assert_eq!(&g.id, id);
            prop_assert_eq!(g.copies, *copies);
            prop_assert_eq!(&g.bytes, bytes);
        }
        // Written again: same name, same bytes.
        let fx2 = fixture();
        let again = write(&fx2.drive, &entries).unwrap();
        prop_assert_eq!(&again.name, &pack.name);
        prop_assert_eq!(fs::read(&again.path).unwrap(), fs::read(&pack.path).unwrap());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let fx = fixture();
        let pack = place(&fx.drive, &bytes);
        let _ = read_everything(&fx.drive, &pack);
        // With the magics around them.
        let mut framed = b"FPK1".to_vec();
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(b"FPK1");
        let pack = place(&fx.drive, &framed);
        let _ = read_everything(&fx.drive, &pack);
    }

    #[test]
    fn arbitrary_index_with_a_valid_check_never_panics(
        bodies in prop::collection::vec(any::<u8>(), 0..300),
        index in prop::collection::vec(any::<u8>(), 0..300),
        structured in entries(6, 60),
        count_delta in -2i64..3,
    ) {
        let fx = fixture();
        let _ = read_everything(&fx.drive, &place(&fx.drive, &hand_pack(&bodies, &index)));
        // A structured index whose count or sizes may disagree with the bodies.
        let mut idx = Vec::new();
        let count = (structured.len() as i64 + count_delta).max(0) as usize;
        put_varint(&mut idx, count as u64);
        let mut all_bodies = Vec::new();
        for (id, copies, b) in &structured {
            idx.extend_from_slice(id);
            put_varint(&mut idx, b.len() as u64);
            put_varint(&mut idx, u64::from(*copies));
            put_varint(&mut idx, 0); // expiry unknown
            all_bodies.extend_from_slice(b);
        }
        let pack = place(&fx.drive, &hand_pack(&all_bodies, &idx));
        let got = read_everything(&fx.drive, &pack);
        if count == structured.len() {
            // The hand-built pack follows the documented layout: it must read back.
            let got = got.expect("documented layout reads");
            prop_assert_eq!(got.len(), structured.len());
            for ((_, g), (_, _, b)) in got.iter().zip(&structured) {
                prop_assert_eq!(g, b);
            }
        } else {
            prop_assert!(got.is_none());
        }
    }

    #[test]
    fn every_truncation_is_caught(entries in entries(6, 80)) {
        let fx = fixture();
        let Some(pack) = write(&fx.drive, &entries) else { return Ok(()) };
        let full = fs::read(&pack.path).unwrap();
        let index = fx.drive.read_index(&pack).unwrap();
        for cut in 0..full.len() {
            fs::write(&pack.path, &full[..cut]).unwrap();
            // The index lives at the end: any cut loses it.
            prop_assert!(fx.drive.read_index(&pack).is_err(), "cut {}", cut);
            // With the index read before the cut, entries before it are intact and
            // every later one is Truncated.
            let got: Vec<_> = fx.drive.entries(&pack, &index).unwrap().collect();
            prop_assert_eq!(got.len(), entries.len());
            let mut cut_seen = false;
            for (i, r) in got.iter().enumerate() {
                let e = &index.entries[i];
                if !cut_seen && e.offset + e.len <= cut as u64 {
                    prop_assert_eq!(&r.as_ref().unwrap().bytes, &entries[i].2);
                } else {
                    cut_seen = true;
                    let truncated = matches!(r, Err(EntryError::Truncated { index, .. }) if *index == i);
                    prop_assert!(truncated, "cut {} entry {}: {:?}", cut, i, r);
                }
            }
        }
    }

    #[test]
    fn every_header_bit_flip_is_detected(entries in entries(5, 40)) {
        let fx = fixture();
        let Some(pack) = write(&fx.drive, &entries) else { return Ok(()) };
        let full = fs::read(&pack.path).unwrap();
        let index = fx.drive.read_index(&pack).unwrap();
        let body_end = 4 + index.body_bytes() as usize;
        // The head magic, the index and the trailer.
        let positions = (0..4).chain(body_end..full.len());
        for byte in positions {
            for bit in 0..8 {
                let mut damaged = full.clone();
                damaged[byte] ^= 1 << bit;
                fs::write(&pack.path, &damaged).unwrap();
                let r = fx.drive.read_index(&pack);
                prop_assert!(r.is_err(), "flip at byte {} bit {} undetected", byte, bit);
                prop_assert!(r.unwrap_err().is_corrupt());
            }
        }
    }
}
