//! A flipped byte inside USR-A's data makes reads fail with an I/O error, never altered data.

use image_tests::{image, Machine, Setup};
use std::io::{Read, Seek, SeekFrom, Write};

/// The canary file's first block, as the image build wrote it (see xtask build_image/tree.rs).
fn canary_first_block() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(4096);
    while out.len() < 4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Finds the canary's first block inside USR-A (block aligned) and returns its disk offset.
fn find_canary(disk: &std::path::Path, usr_offset: u64) -> u64 {
    let needle = canary_first_block();
    let mut f = std::fs::File::open(disk).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for chunk in 0..1024u64 {
        f.seek(SeekFrom::Start(usr_offset + chunk * (1 << 20)))
            .unwrap();
        f.read_exact(&mut buf).unwrap();
        for (i, block) in buf.chunks(4096).enumerate() {
            if block == needle.as_slice() {
                return usr_offset + chunk * (1 << 20) + (i as u64) * 4096;
            }
        }
    }
    panic!("verity canary not found in USR-A (is /usr compressed differently?)");
}

#[test]
fn flipped_usr_byte_gives_io_error_not_altered_data() {
    let img = image();
    let mut m = Machine::create("verity", Setup::default()).unwrap();
    let at = find_canary(&m.disk, img.usr_a_offset) + 100;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&m.disk)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte[0] ^ 0x40]).unwrap();
    drop(f);

    m.boot().unwrap();
    let out = m
        .ssh_output("cat /usr/share/ferrocore/verity-canary > /dev/null")
        .unwrap();
    assert!(!out.status.success(), "reading a corrupted block must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    let log = m.ssh("sudo dmesg | grep -i verity").unwrap();
    assert!(log.contains("is corrupted"), "{log}");
    // Everything else still reads fine.
    m.ssh("cat /usr/lib/os-release > /dev/null").unwrap();
}
