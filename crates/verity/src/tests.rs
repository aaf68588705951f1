use super::*;
use std::process::Command;

fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// The oracle: cryptsetup's `veritysetup verify` on our file (data + superblock + tree).
fn veritysetup_verify(path: &Path, tree: &Tree) -> std::process::Output {
    Command::new("veritysetup")
        .arg("verify")
        .arg(path)
        .arg(path)
        .arg(tree.root_hash_hex())
        .arg(format!("--hash-offset={}", tree.hash_offset()))
        .output()
        .expect("veritysetup (Debian package cryptsetup-bin) must be installed")
}

#[test]
fn veritysetup_accepts_our_tree_at_several_sizes() {
    // One block, one full hash block's worth, one more (two levels), and a multi-level size.
    for blocks in [1usize, 128, 129, 128 * 128 + 3] {
        let f = file_with(&pattern(blocks * 4096 - 100, blocks as u8));
        let tree = append_to_file(f.path(), b"ferrocore-salt", [7; 16]).unwrap();
        assert_eq!(tree.data_blocks, blocks as u64);
        let out = veritysetup_verify(f.path(), &tree);
        assert!(
            out.status.success(),
            "{blocks} blocks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_flipped_data_byte_fails_veritysetup_and_our_check() {
    let f = file_with(&pattern(300 * 4096, 3));
    let tree = append_to_file(f.path(), &[1, 2, 3], [0; 16]).unwrap();
    let mut bytes = std::fs::read(f.path()).unwrap();
    bytes[200 * 4096 + 17] ^= 0x40;
    std::fs::write(f.path(), &bytes).unwrap();
    assert!(!veritysetup_verify(f.path(), &tree).status.success());
    let mut file = std::fs::File::open(f.path()).unwrap();
    let err = verify_data(
        &mut file,
        tree.data_blocks,
        &tree.salt,
        &tree.root_hash,
        "t",
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
}

#[test]
fn empty_data_is_refused() {
    let f = file_with(b"");
    assert!(matches!(
        append_to_file(f.path(), b"", [0; 16]),
        Err(Error::Empty(_))
    ));
}

#[test]
fn kernel_table_names_the_tree() {
    let f = file_with(&pattern(10 * 4096, 9));
    let tree = append_to_file(f.path(), &[0xab], [0; 16]).unwrap();
    assert_eq!(
        tree.kernel_table("PARTUUID=x"),
        format!(
            "0 80 verity 1 PARTUUID=x PARTUUID=x 4096 4096 10 11 sha256 {} ab",
            tree.root_hash_hex()
        )
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn any_changed_block_changes_the_root(blocks in 1u64..300, which in 0u64..300, salt in proptest::collection::vec(0u8.., 0..32)) {
        let which = which % blocks;
        let data = pattern((blocks * 4096) as usize, 1);
        let a = build(&data[..], blocks, &salt, [0; 16]).unwrap();
        let mut changed = data.clone();
        changed[(which * 4096) as usize] ^= 1;
        let b = build(&changed[..], blocks, &salt, [0; 16]).unwrap();
        proptest::prop_assert_ne!(a.root_hash, b.root_hash);
    }
}
