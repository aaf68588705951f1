use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    payload: PathBuf,
    trusted: Vec<VerifyingKey>,
    other_key: Vec<VerifyingKey>,
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8)
        .collect()
}

fn fixture(version: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys::generate(&dir.path().join("keys/dev")).unwrap();
    let (_, other) = keys::generate(&dir.path().join("keys2/other")).unwrap();
    let usr = dir.path().join("usr.img");
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&usr, bytes(300_000, 7)).unwrap();
    std::fs::write(&kernel, bytes(50_000, 13)).unwrap();
    let payload = dir.path().join("payload");
    let release = Release {
        version: version.into(),
        build_id: "abc".into(),
        channel: "stable".into(),
        usr_root_hash: "00".into(),
        usr_data_blocks: 1,
        usr_salt: "-".into(),
    };
    create(
        &payload,
        release,
        &[("usr", &usr), ("kernel", &kernel)],
        &keys::load_signing(&sk).unwrap(),
    )
    .unwrap();
    Fixture {
        trusted: vec![keys::load_public(&pk).unwrap()],
        other_key: vec![keys::load_public(&other).unwrap()],
        _dir: dir,
        payload,
    }
}

#[test]
fn a_good_payload_verifies_and_round_trips() {
    let f = fixture("1.2.0");
    let m = verify(&f.payload, &f.trusted, "1.1.9", false).unwrap();
    assert_eq!(m.release.version, "1.2.0");
    assert_eq!(
        read_part(&f.payload, &m.parts[1]).unwrap(),
        bytes(50_000, 13)
    );
    // Any one of several trusted keys is enough (rotation).
    let both: Vec<_> = f.other_key.iter().chain(&f.trusted).copied().collect();
    verify(&f.payload, &both, "1.1.9", false).unwrap();
}

#[test]
fn a_flipped_byte_is_refused() {
    let f = fixture("1.2.0");
    let p = f.payload.join("usr.zst");
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&p, b).unwrap();
    assert!(matches!(
        verify(&f.payload, &f.trusted, "1.0", false),
        Err(Error::Hash {
            which: "compressed",
            ..
        })
    ));
}

#[test]
fn a_truncated_part_is_refused() {
    let f = fixture("1.2.0");
    let p = f.payload.join("kernel.zst");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 10]).unwrap();
    let err = verify(&f.payload, &f.trusted, "1.0", false).unwrap_err();
    assert!(matches!(err, Error::Size { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn a_wrong_key_or_edited_manifest_is_refused() {
    let f = fixture("1.2.0");
    assert!(matches!(
        verify(&f.payload, &f.other_key, "1.0", false),
        Err(Error::Signature)
    ));
    let m = f.payload.join(MANIFEST);
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"stable\"", "\"alpha\"");
    std::fs::write(&m, text).unwrap();
    assert!(matches!(
        verify(&f.payload, &f.trusted, "1.0", false),
        Err(Error::Signature)
    ));
}

#[test]
fn older_or_same_versions_need_an_explicit_downgrade() {
    let f = fixture("1.2.0");
    let err = verify(&f.payload, &f.trusted, "1.10.0", false).unwrap_err();
    assert!(matches!(err, Error::NotNewer { .. }), "{err}");
    assert!(matches!(
        verify(&f.payload, &f.trusted, "1.2.0", false),
        Err(Error::NotNewer { .. })
    ));
    verify(&f.payload, &f.trusted, "1.10.0", true).unwrap();
}

#[test]
fn keys_load_from_a_directory_and_reject_garbage() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        keys::load_trusted(dir.path()),
        Err(Error::NoTrustedKeys(_))
    ));
    keys::generate(&dir.path().join("a")).unwrap();
    keys::generate(&dir.path().join("b")).unwrap();
    assert_eq!(keys::load_trusted(dir.path()).unwrap().len(), 2);
    std::fs::write(dir.path().join("c.pub"), "not a key").unwrap();
    assert!(matches!(
        keys::load_trusted(dir.path()),
        Err(Error::BadKey(_))
    ));
}
