//! The slot writer on a real GPT disk image: a good payload lands in USR-B with the ESP files
//! and try-once bits; a payload that fails verification in any way writes nothing at all.

mod common;
use common::machine::{machine, Machine};
use common::*;
use update::agent::engine::{Agent, Outcome};

fn setup(running: &str) -> (tempfile::TempDir, Keys, Machine) {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let m = machine(dir.path(), running, &k.trusted_dir);
    (dir, k, m)
}

#[test]
fn a_good_payload_is_installed_into_usr_b() {
    let (dir, k, m) = setup("1.0.0");
    let p = payload(dir.path(), "2.0.0", &k.signing, 3_000_000);
    let usr_a_before = m.usr_a();
    let agent = Agent::new(&m.root, &m.disk);
    assert_eq!(
        agent.apply_offline(&p.dir, false).unwrap(),
        Outcome::Installed {
            version: "2.0.0".into()
        }
    );
    m.assert_updated(&p);
    // The running slot's partition and boot files are untouched.
    assert!(m.usr_a() == usr_a_before, "USR-A changed");
    assert_eq!(
        m.esp_file("ferrocore/usr-a/boot.cfg"),
        update::testdisk::BOOT_CFG_A.as_bytes()
    );
    let st = agent.status();
    assert_eq!(
        st.current_op,
        update::agent::status::Operation::UpdatedNeedReboot
    );
    assert_eq!(st.new_version.as_deref(), Some("2.0.0"));
}

/// Each way a payload can be bad: it is refused with a clear error and the disk image is
/// byte-for-byte what it was.
#[test]
fn bad_payloads_are_refused_and_nothing_is_written() {
    type Spoil = fn(&Payload, &Keys, &std::path::Path);
    let cases: [(&str, &str, Spoil, &str); 6] = [
        (
            "flipped byte in usr.zst",
            "2.0.0",
            |p, _, _| flip(&p.dir.join("usr.zst"), 5000),
            "usr",
        ),
        (
            "flipped byte in kernel.zst",
            "2.0.0",
            |p, _, _| flip(&p.dir.join("kernel.zst"), 100),
            "kernel",
        ),
        (
            "truncated usr.zst",
            "2.0.0",
            |p, _, _| truncate(&p.dir.join("usr.zst")),
            "truncated",
        ),
        (
            "edited manifest",
            "2.0.0",
            |p, _, _| {
                let m = p.dir.join("manifest.json");
                let t = std::fs::read_to_string(&m)
                    .unwrap()
                    .replace("build-2.0.0", "build-2.0.1");
                std::fs::write(m, t).unwrap();
            },
            "signature",
        ),
        (
            "signed by an untrusted key",
            "2.0.0",
            |p, _, dir| {
                let other = keys(&dir.join("other"));
                let q = payload(&dir.join("other"), "2.0.0", &other.signing, 100_000);
                std::fs::remove_dir_all(&p.dir).unwrap();
                std::fs::rename(&q.dir, &p.dir).unwrap();
            },
            "signature",
        ),
        (
            "older than the running version",
            "0.9.0",
            |_, _, _| {},
            "not newer",
        ),
    ];
    for (what, version, spoil, expect) in cases {
        let (dir, k, m) = setup("1.0.0");
        let p = payload(dir.path(), version, &k.signing, 1_000_000);
        spoil(&p, &k, dir.path());
        let before = std::fs::read(&m.disk).unwrap();
        let agent = Agent::new(&m.root, &m.disk);
        let err = agent
            .apply_offline(&p.dir, false)
            .expect_err(what)
            .to_string();
        assert!(err.contains(expect), "{what}: {err}");
        assert!(
            std::fs::read(&m.disk).unwrap() == before,
            "{what}: the disk image changed"
        );
        assert!(agent.status().last_error.is_some(), "{what}");
    }
}

#[test]
fn a_usr_bigger_than_the_slot_is_refused_before_writing() {
    let (dir, k, m) = setup("1.0.0");
    let p = payload(
        dir.path(),
        "2.0.0",
        &k.signing,
        (machine::USR_SIZE + 4096) as usize,
    );
    let before = std::fs::read(&m.disk).unwrap();
    let err = Agent::new(&m.root, &m.disk)
        .apply_offline(&p.dir, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds only"), "{err}");
    assert!(std::fs::read(&m.disk).unwrap() == before);
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn truncate(path: &std::path::Path) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..b.len() - 100]).unwrap();
}

/// A payload signed by a trusted key whose usr does not decompress to what its manifest says (a
/// broken build): caught on the stream while writing, before activation. USR-B is left unbootable
/// and A boots next, as before.
#[test]
fn a_usr_not_matching_its_signed_manifest_leaves_the_slot_inert() {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let (dir, k, m) = setup("1.0.0");
    let p = payload(dir.path(), "2.0.0", &k.signing, 1_000_000);
    let mpath = p.dir.join("manifest.json");
    let mut man: update::payload::Manifest =
        serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    man.parts
        .iter_mut()
        .find(|x| x.name == "usr")
        .unwrap()
        .sha256 = "00".repeat(32);
    let bytes = serde_json::to_vec_pretty(&man).unwrap();
    let sig = update::payload::keys::load_signing(&k.signing)
        .unwrap()
        .sign(&bytes);
    std::fs::write(&mpath, &bytes).unwrap();
    std::fs::write(
        p.dir.join("manifest.json.sig"),
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    )
    .unwrap();
    let usr_a = m.usr_a();
    let err = Agent::new(&m.root, &m.disk)
        .apply_offline(&p.dir, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("usr: the decompressed data does not match"),
        "{err}"
    );
    let (a, b, env) = m.slots();
    assert!(!b.bootable(), "{b:?}");
    assert_eq!(gptprio::grubenv_slot(&env, gptprio::Slot::B), Some(b));
    assert_eq!(gptprio::choose_next(a, b), Some(gptprio::Slot::A));
    assert!(m.usr_a() == usr_a);
    assert!(
        update::testdisk::esp_file(&m.disk, "ferrocore/usr-b/boot.cfg").is_err(),
        "boot files were written for a slot that failed"
    );
}
