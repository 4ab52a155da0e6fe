//! Drive behaviour on a real file system: round trips, atomicity, full and vanishing
//! drives, manifests, stray files and quarantine.

use std::fs;
use std::path::Path;

use anyhow::Result;
use ferry_cl_drive::{
    Drive, DriveError, DriveLimits, EntryError, PackEntry, PackError, PackRef, MIN_PACK_LEN,
};

fn id(n: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[31] = 0xee;
    id
}

fn body(n: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ n.wrapping_mul(31)) as u8)
        .collect()
}

fn init(mount: &Path) -> Result<Drive> {
    Ok(Drive::open_or_init(mount, DriveLimits::default())?)
}

fn write_pack(drive: &Drive, entries: &[(u32, u32, Vec<u8>)]) -> Result<Option<PackRef>> {
    let mut w = drive.pack_writer()?;
    for (n, copies, bytes) in entries {
        w.push(&id(*n), *copies, bytes)?;
    }
    Ok(w.finish()?)
}

fn read_all(drive: &Drive, pack: &PackRef) -> Result<Vec<PackEntry>> {
    let index = drive.read_index(pack)?;
    Ok(drive.entries(pack, &index)?.collect::<Result<_, _>>()?)
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn init_then_open_keeps_the_id() -> Result<()> {
    let mount = tempfile::tempdir()?;
    assert!(matches!(
        Drive::open(mount.path(), DriveLimits::default()),
        Err(DriveError::NotADrive { .. })
    ));
    let a = init(mount.path())?;
    let text = fs::read_to_string(mount.path().join("ferry/FORMAT"))?;
    assert_eq!(text, format!("ferry-drive 1\n{}\n", a.id()));
    assert_eq!(a.id().to_string().len(), 32);
    let b = Drive::open(mount.path(), DriveLimits::default())?;
    assert_eq!(a.id(), b.id());
    assert_eq!(init(mount.path())?.id(), a.id());
    for d in ["packs", "nodes", "tmp"] {
        assert!(mount.path().join("ferry").join(d).is_dir(), "{d}");
    }
    // Two drives get different ids.
    let other = tempfile::tempdir()?;
    assert_ne!(init(other.path())?.id(), a.id());
    Ok(())
}

#[test]
fn bad_format_files_are_typed_errors() -> Result<()> {
    let mount = tempfile::tempdir()?;
    init(mount.path())?;
    let format = mount.path().join("ferry/FORMAT");
    for (bytes, what) in [
        (
            &b"ferry-drive 2\n00112233445566778899aabbccddeeff\n"[..],
            "version",
        ),
        (b"hello", "not a Ferry drive"),
        (b"", "not a Ferry drive"),
        (&[0xffu8; 5000][..], "not a Ferry drive"),
        (b"ferry-drive 1\nxyz\n", "malformed"),
    ] {
        fs::write(&format, bytes)?;
        for r in [
            Drive::open(mount.path(), DriveLimits::default()),
            Drive::open_or_init(mount.path(), DriveLimits::default()),
        ] {
            match r {
                Err(e @ DriveError::BadFormat { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("FORMAT") && msg.contains(what), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // A missing mount is a vanished drive.
    let gone = mount.path().join("nope");
    assert!(matches!(
        Drive::open_or_init(&gone, DriveLimits::default()),
        Err(DriveError::Gone { .. })
    ));
    Ok(())
}

#[test]
fn round_trip_zero_one_many_and_big() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;

    // Zero entries: nothing is written.
    assert_eq!(write_pack(&drive, &[])?, None);
    assert!(dir_names(&drive.ferry_dir().join("packs")).is_empty());
    assert!(dir_names(&drive.ferry_dir().join("tmp")).is_empty());

    let one = vec![(1, 1, body(1, 100))];
    let many: Vec<_> = (0..300u32)
        .map(|n| (n, n % 7, body(n, (n as usize * 37) % 2000)))
        .collect();
    let edge = vec![
        (10, 0, Vec::new()),
        (11, u32::MAX, body(11, 1 << 20)),
        (12, 3, Vec::new()),
    ];
    let mut refs = Vec::new();
    for entries in [&one, &many, &edge] {
        let pack = write_pack(&drive, entries)?.expect("entries");
        assert_eq!(pack.size, fs::metadata(&pack.path)?.len());
        let got = read_all(&drive, &pack)?;
        assert_eq!(got.len(), entries.len());
        for (i, (e, (n, copies, bytes))) in got.iter().zip(entries.iter()).enumerate() {
            assert_eq!(e.index, i);
            assert_eq!(e.id, id(*n));
            assert_eq!(e.copies, *copies);
            assert_eq!(&e.bytes, bytes);
        }
        let index = drive.read_index(&pack)?;
        assert_eq!(index.content_name, pack.name);
        assert_eq!(index.file_size, pack.size);
        refs.push(pack);
    }
    let list = drive.list_packs()?;
    refs.sort();
    assert_eq!(list.packs, refs);
    assert!(list.stray.is_empty());
    assert!(dir_names(&drive.ferry_dir().join("tmp")).is_empty());

    // Names are deterministic: the same content on another drive gets the same name,
    // and re-exporting it here is idempotent.
    let other = tempfile::tempdir()?;
    let drive2 = init(other.path())?;
    let again = write_pack(&drive2, &many)?.expect("entries");
    assert!(refs.iter().any(|r| r.name == again.name));
    assert_eq!(
        fs::read(&again.path)?,
        fs::read(drive.ferry_dir().join(format!("packs/{}.fpk", again.name)))?
    );
    let before = drive.list_packs()?;
    let same = write_pack(&drive, &many)?.expect("entries");
    assert_eq!(same.name, again.name);
    assert_eq!(drive.list_packs()?, before);
    assert!(dir_names(&drive.ferry_dir().join("tmp")).is_empty());
    // Different copies: a different pack.
    let mut changed = many.clone();
    changed[0].1 += 1;
    assert_ne!(
        write_pack(&drive, &changed)?.expect("entries").name,
        same.name
    );
    Ok(())
}

#[test]
fn selected_entries_skip_the_others() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let entries: Vec<_> = (0..50u32)
        .map(|n| (n, 1, body(n, 3000 + n as usize)))
        .collect();
    let pack = write_pack(&drive, &entries)?.expect("entries");
    let index = drive.read_index(&pack)?;
    let got: Vec<_> = drive
        .read_entries(&pack, &index, |e| e.index % 3 == 1)?
        .collect::<Result<_, _>>()?;
    let expected: Vec<_> = entries.iter().skip(1).step_by(3).collect();
    assert_eq!(got.len(), expected.len());
    for (g, (n, _, bytes)) in got.iter().zip(expected) {
        assert_eq!(g.id, id(*n));
        assert_eq!(&g.bytes, bytes);
    }
    assert_eq!(
        drive.read_entries(&pack, &index, |_| false)?.count(),
        0,
        "nothing wanted"
    );
    Ok(())
}

/// The per-entry overhead (index entry plus the fixed parts shared out) for 1 KiB
/// bundles, computed from real file sizes.
#[test]
fn per_entry_overhead_is_small() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    for (count, copies) in [(1u32, 1u32), (100, 1), (100, 16), (1000, 200)] {
        // Real bundles carry their expiry (DTN seconds, 5-byte varints today).
        let mut w = drive.pack_writer()?;
        for n in 0..count {
            w.push_expiring(&id(n), copies, Some(800_000_000), &body(n, 1024))?;
        }
        let pack = w.finish()?.expect("entries");
        let overhead = pack.size - u64::from(count) * 1024;
        let per_entry = overhead as f64 / f64::from(count);
        // id 32 + len varint 2 + copies varint 1..2 + expiry varint 5, plus
        // 4 + count + 16 shared out.
        assert!(per_entry <= 64.0, "{count} entries: {per_entry} bytes each");
        if count == 100 && copies == 1 {
            assert_eq!(
                pack.size, 106_421,
                "the worked example in docs/sneakernet.md"
            );
        }
    }
    Ok(())
}

#[test]
fn dropped_writer_leaves_nothing_and_clean_tmp_removes_leftovers() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let tmp = drive.ferry_dir().join("tmp");
    {
        let mut w = drive.pack_writer()?;
        w.push(&id(1), 1, &body(1, 500_000))?;
        assert_eq!(dir_names(&tmp).len(), 1, "temp file while writing");
        assert_eq!(w.len(), 1);
        assert!(!w.is_empty());
        // dropped here, unfinished
    }
    assert!(dir_names(&tmp).is_empty());
    assert!(drive.list_packs()?.packs.is_empty());

    // A killed writer's leftovers (simulated) are removed by clean_tmp.
    fs::write(tmp.join("0123.fpk.tmp"), b"partial")?;
    fs::write(tmp.join("4567.w.tmp"), b"partial")?;
    fs::create_dir(tmp.join("weird"))?;
    assert_eq!(drive.clean_tmp()?, 3);
    assert!(dir_names(&tmp).is_empty());
    assert_eq!(drive.clean_tmp()?, 0);
    Ok(())
}

#[test]
fn write_budget_gives_full_and_leaves_packs_unchanged() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let mut drive = init(mount.path())?;
    let first =
        write_pack(&drive, &[(1, 1, body(1, 10_000)), (2, 2, body(2, 20))])?.expect("entries");
    let first_bytes = fs::read(&first.path)?;

    // Fail at many points: inside a body, at the index, at the trailer.
    let entries: Vec<_> = (0..20u32).map(|n| (n, 1, body(n, 40_000))).collect();
    // id 32 + len varint (40,000 needs 3 bytes) + copies 1 + expiry 1 = 37 per entry.
    let full_size = 4 + 20 * 40_000 + 1 + 20 * 37 + 16;
    for budget in [0u64, 3, 4, 100, 300_000, 800_004, 800_010, full_size - 1] {
        drive.set_write_budget(Some(budget));
        let err = write_pack(&drive, &entries).expect_err("over budget");
        let err = err.downcast::<DriveError>()?;
        assert!(err.is_full(), "budget {budget}: {err}");
        assert!(err.to_string().contains("tmp"), "names the file: {err}");
        assert_eq!(
            drive.list_packs()?.packs,
            vec![first.clone()],
            "budget {budget}"
        );
        assert!(dir_names(&drive.ferry_dir().join("tmp")).is_empty());
    }
    // A writer that hit Full is dead.
    drive.set_write_budget(Some(10));
    let mut w = drive.pack_writer()?;
    assert!(w
        .push(&id(1), 1, &body(1, 1_000_000))
        .unwrap_err()
        .is_full());
    assert!(matches!(
        w.push(&id(2), 1, b"x"),
        Err(DriveError::Poisoned { .. })
    ));
    assert!(matches!(w.finish(), Err(DriveError::Poisoned { .. })));
    // Manifests too.
    drive.set_write_budget(Some(5));
    assert!(drive.write_manifest("a", &[7; 100]).unwrap_err().is_full());
    assert!(drive.read_manifests()?.manifests.is_empty());

    // Exactly enough is enough.
    drive.set_write_budget(Some(full_size));
    let pack = write_pack(&drive, &entries)?.expect("entries");
    assert_eq!(pack.size, full_size);
    drive.set_write_budget(None);
    assert_eq!(fs::read(&first.path)?, first_bytes);
    assert_eq!(read_all(&drive, &first)?.len(), 2);
    assert_eq!(read_all(&drive, &pack)?.len(), 20);
    Ok(())
}

#[test]
fn pack_limits_are_enforced_on_write() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let limits = DriveLimits {
        max_entries: 3,
        max_body_bytes: 1000,
        max_pack_bytes: 2500,
        ..DriveLimits::default()
    };
    let drive = Drive::open_or_init(mount.path(), limits)?;
    let mut w = drive.pack_writer()?;
    assert!(matches!(
        w.push(&id(0), 1, &[0; 1001]),
        Err(DriveError::EntryTooLarge { .. })
    ));
    w.push(&id(1), 1, &[1; 1000])?;
    w.push(&id(2), 1, &[2; 1000])?;
    // 4 + 2000 + 1 + 2×36 + 16 = 2093; another 1000 would pass 2500.
    assert_eq!(w.bytes(), 2093);
    assert!(matches!(
        w.push(&id(3), 1, &[3; 1000]),
        Err(DriveError::PackLimit { .. })
    ));
    w.push(&id(3), 1, &[3; 10])?;
    assert!(matches!(
        w.push(&id(4), 1, &[]),
        Err(DriveError::PackLimit { entries: 3, .. })
    ));
    let pack = w.finish()?.expect("entries");
    assert_eq!(pack.size, 2093 + 10 + 35);
    assert_eq!(read_all(&drive, &pack)?.len(), 3);

    // A reader with smaller limits refuses it.
    let strict = Drive::open(
        mount.path(),
        DriveLimits {
            max_entries: 2,
            ..limits
        },
    )?;
    // The index is longer than two entries can be, so the trailer check refuses it
    // before the count is read. Over a limit is not corrupt: leave it in place.
    let err = strict.read_index(&pack).unwrap_err();
    assert!(
        matches!(
            err,
            PackError::TooManyEntries { .. } | PackError::IndexTooLarge { .. }
        ),
        "{err:?}"
    );
    assert!(err.is_over_limit() && !err.is_corrupt());
    let strict = Drive::open(
        mount.path(),
        DriveLimits {
            max_body_bytes: 999,
            ..limits
        },
    )?;
    assert!(matches!(
        strict.read_index(&pack),
        Err(PackError::EntryTooLarge { index: 0, .. })
    ));
    let strict = Drive::open(
        mount.path(),
        DriveLimits {
            max_pack_bytes: 2000,
            ..limits
        },
    )?;
    let err = strict.read_index(&pack).unwrap_err();
    assert!(matches!(err, PackError::TooLarge { .. }));
    assert!(err.is_over_limit() && !err.is_corrupt());
    Ok(())
}

#[test]
fn drive_removed_mid_write_is_a_typed_error() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let mut w = drive.pack_writer()?;
    w.push(&id(1), 1, &body(1, 300_000))?;
    fs::remove_dir_all(mount.path())?;
    // Writes to the open (now unlinked) temp file may still succeed; the rename
    // cannot. Either way: a typed error, no panic, nothing to clean up.
    let mut result = Ok(());
    for n in 2..10 {
        result = w.push(&id(n), 1, &body(n, 300_000));
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(e) => e,
        Ok(()) => w.finish().expect_err("rename into a deleted folder"),
    };
    assert!(err.is_gone(), "{err:?}");
    assert!(matches!(drive.list_packs(), Err(DriveError::Gone { .. })));
    assert!(matches!(drive.clean_tmp(), Err(DriveError::Gone { .. })));
    assert!(matches!(
        drive.write_manifest("a", b"x"),
        Err(DriveError::Gone { .. })
    ));
    assert!(matches!(drive.pack_writer(), Err(DriveError::Gone { .. })));
    Ok(())
}

#[test]
fn drive_removed_mid_read_is_a_typed_error() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let pack = write_pack(&drive, &[(1, 1, body(1, 10)), (2, 1, body(2, 10))])?.expect("entries");
    let index = drive.read_index(&pack)?;
    fs::remove_dir_all(mount.path())?;
    assert!(matches!(
        drive.read_index(&pack),
        Err(PackError::Gone { .. })
    ));
    assert!(matches!(
        drive.entries(&pack, &index),
        Err(PackError::Gone { .. })
    ));
    Ok(())
}

#[test]
fn truncated_file_under_an_index_yields_truncated_entries() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let entries: Vec<_> = (0..5u32).map(|n| (n, 1, body(n, 100))).collect();
    let pack = write_pack(&drive, &entries)?.expect("entries");
    let index = drive.read_index(&pack)?;
    // Cut inside entry 2's body.
    let bytes = fs::read(&pack.path)?;
    fs::write(&pack.path, &bytes[..4 + 250])?;
    assert!(drive.read_index(&pack).is_err());
    let got: Vec<_> = drive.entries(&pack, &index)?.collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].as_ref().unwrap().bytes, body(0, 100));
    assert_eq!(got[1].as_ref().unwrap().bytes, body(1, 100));
    for (i, r) in got.iter().enumerate().skip(2) {
        assert!(
            matches!(r, Err(EntryError::Truncated { index, .. }) if *index == i),
            "{r:?}"
        );
    }
    Ok(())
}

#[test]
fn manifests_replace_and_refuse_bad_names_and_oversize() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let limits = DriveLimits {
        max_manifest_bytes: 1000,
        ..DriveLimits::default()
    };
    let drive = Drive::open_or_init(mount.path(), limits)?;
    drive.write_manifest("node-b", b"one")?;
    drive.write_manifest("node-a", b"two")?;
    drive.write_manifest("node-b", b"three")?;
    let list = drive.read_manifests()?;
    let got: Vec<_> = list
        .manifests
        .iter()
        .map(|m| (m.name.as_str(), m.bytes.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![("node-a", &b"two"[..]), ("node-b", &b"three"[..])]
    );
    assert!(list.errors.is_empty() && list.stray.is_empty());
    assert!(dir_names(&drive.ferry_dir().join("tmp")).is_empty());

    for bad in ["", "Node", "a/b", "../x", "a.fm", &"x".repeat(65)] {
        assert!(
            matches!(
                drive.write_manifest(bad, b"x"),
                Err(DriveError::BadName { .. })
            ),
            "{bad:?}"
        );
    }
    drive.write_manifest(&"x".repeat(64), &[0; 1000])?;
    let err = drive.write_manifest("big", &[0; 1001]).unwrap_err();
    assert!(matches!(err, DriveError::ManifestTooLarge { .. }));
    assert!(err.to_string().contains("big.fm"), "{err}");

    // Oversized or odd files placed by someone else are reported, not fatal.
    let nodes = drive.ferry_dir().join("nodes");
    fs::write(nodes.join("huge.fm"), vec![0; 5000])?;
    fs::write(nodes.join("README.txt"), b"hi")?;
    fs::write(nodes.join("Bad_Name.fm"), b"hi")?;
    fs::create_dir(nodes.join("dir.fm"))?;
    let list = drive.read_manifests()?;
    assert_eq!(list.manifests.len(), 3);
    assert_eq!(list.errors.len(), 1);
    assert!(list.errors[0].to_string().contains("huge.fm"));
    assert_eq!(list.stray.len(), 3);
    Ok(())
}

#[test]
fn stray_files_are_reported_and_quarantined() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let pack = write_pack(&drive, &[(1, 1, body(1, 10))])?.expect("entries");
    let packs = drive.ferry_dir().join("packs");
    for name in [
        "notes.txt",
        "0123456789ABCDEF.fpk",
        "0123456789abcde.fpk",
        "0123456789abcdef.fpk.bak",
    ] {
        fs::write(packs.join(name), b"?")?;
    }
    fs::create_dir(packs.join("0123456789abcdef.fpk"))?;
    let list = drive.list_packs()?;
    assert_eq!(list.packs, vec![pack.clone()]);
    assert_eq!(list.stray.len(), 5);

    // A corrupt pack: detected, quarantined, no longer listed.
    let bad = packs.join("ffffffffffffffff.fpk");
    fs::write(&bad, b"FPK1 not really a pack at all")?;
    let bad_ref = drive
        .list_packs()?
        .packs
        .into_iter()
        .find(|p| p.path == bad)
        .expect("listed");
    let err = drive.read_index(&bad_ref).unwrap_err();
    assert!(err.is_corrupt());
    assert!(err.to_string().contains("ffffffffffffffff.fpk"), "{err}");
    let moved = drive.quarantine_file(&bad)?;
    assert_eq!(
        moved,
        drive.ferry_dir().join("quarantine/ffffffffffffffff.fpk.1")
    );
    assert!(!bad.exists() && moved.exists());
    fs::write(&bad, b"again")?;
    assert_eq!(
        drive.quarantine_file(&bad)?,
        drive.ferry_dir().join("quarantine/ffffffffffffffff.fpk.2")
    );
    for stray in drive.list_packs()?.stray {
        drive.quarantine_file(&stray)?;
    }
    let list = drive.list_packs()?;
    assert_eq!(list.packs, vec![pack]);
    assert!(list.stray.is_empty());

    // Only files inside ferry/ (and not already quarantined).
    let outside = mount.path().join("elsewhere");
    fs::write(&outside, b"x")?;
    assert!(matches!(
        drive.quarantine_file(&outside),
        Err(DriveError::NotOnDrive { .. })
    ));
    assert!(matches!(
        drive.quarantine_file(&drive.ferry_dir().join("packs/../../elsewhere")),
        Err(DriveError::NotOnDrive { .. })
    ));
    assert!(matches!(
        drive.quarantine_file(drive.ferry_dir()),
        Err(DriveError::NotOnDrive { .. })
    ));
    Ok(())
}

#[test]
fn remove_pack_deletes_only_packs_of_this_drive() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let a = write_pack(&drive, &[(1, 1, body(1, 10))])?.expect("entries");
    let b = write_pack(&drive, &[(2, 1, body(2, 10))])?.expect("entries");
    drive.remove_pack(&a)?;
    drive.remove_pack(&a)?; // already gone: fine
    assert_eq!(drive.list_packs()?.packs, vec![b.clone()]);
    let forged = PackRef {
        path: drive.ferry_dir().join("FORMAT"),
        ..b.clone()
    };
    assert!(matches!(
        drive.remove_pack(&forged),
        Err(DriveError::BadName { .. })
    ));
    assert!(drive.ferry_dir().join("FORMAT").exists());
    let forged = PackRef {
        name: "../FORMAT".into(),
        path: drive.ferry_dir().join("packs/../FORMAT.fpk"),
        size: 0,
    };
    assert!(drive.remove_pack(&forged).is_err());
    Ok(())
}

#[test]
fn tiny_and_empty_files_are_refused() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let packs = drive.ferry_dir().join("packs");
    for len in 0..MIN_PACK_LEN as usize + 3 {
        let path = packs.join("00000000000000aa.fpk");
        fs::write(
            &path,
            b"FPK1FPK1FPK1FPK1FPK1FPK1".repeat(2).get(..len).unwrap(),
        )?;
        let r = PackRef {
            name: "00000000000000aa".into(),
            path,
            size: len as u64,
        };
        assert!(drive.read_index(&r).unwrap_err().is_corrupt());
    }
    Ok(())
}

/// Expiry times written with the entries come back from the index (none stays none).
#[test]
fn expiry_is_kept_in_the_index() -> Result<()> {
    let mount = tempfile::tempdir()?;
    let drive = init(mount.path())?;
    let mut w = drive.pack_writer()?;
    w.push_expiring(&id(1), 1, Some(800_000_000), b"a")?;
    w.push_expiring(&id(2), 3, None, b"bb")?;
    w.push(&id(3), 1, b"ccc")?;
    let pack = w.finish()?.expect("entries");
    let ix = drive.read_index(&pack)?;
    let got: Vec<(u32, Option<u64>)> = ix.entries.iter().map(|e| (e.copies, e.expires)).collect();
    assert_eq!(got, vec![(1, Some(800_000_000)), (3, None), (1, None)]);
    Ok(())
}
