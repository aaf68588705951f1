//! Downloads resume with HTTP Range from what the staging file already holds, against the real
//! server; a staging file that does not match the offered hash is thrown away.

mod common;
use common::*;
use update::agent::download::{fetch, Error, Fetched};

fn setup() -> (tempfile::TempDir, Server, Vec<u8>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 3_000_000);
    let srv = server(&dir.path().join("data"), &[]);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let usr = std::fs::read(p.dir.join("usr.zst")).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&usr))
    };
    let url = format!("{}/v1/payload/2.0.0/usr.zst", srv.url);
    (dir, srv, usr, sha, url)
}

#[test]
fn resumes_from_a_partial_file() {
    let (dir, _srv, usr, sha, url) = setup();
    let dest = dir.path().join("usr.zst.part");
    let half = usr.len() / 2;
    std::fs::write(&dest, &usr[..half]).unwrap();
    let client = reqwest::blocking::Client::new();
    let mut seen = Vec::new();
    let f = fetch(
        &client,
        &url,
        &dest,
        usr.len() as u64,
        Some(&sha),
        &mut |d, t| seen.push((d, t)),
    )
    .unwrap();
    assert_eq!(
        f,
        Fetched {
            transferred: (usr.len() - half) as u64,
            resumed_from: half as u64
        }
    );
    assert!(std::fs::read(&dest).unwrap() == usr);
    // Progress counts from what was already there, up to the whole size.
    assert!(seen.first().unwrap().0 > half as u64);
    assert_eq!(*seen.last().unwrap(), (usr.len() as u64, usr.len() as u64));
    // Complete already: nothing more is fetched.
    let f = fetch(
        &client,
        &url,
        &dest,
        usr.len() as u64,
        Some(&sha),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(f.transferred, 0);
}

#[test]
fn a_wrong_partial_file_fails_the_hash_and_is_removed() {
    let (dir, _srv, usr, sha, url) = setup();
    let dest = dir.path().join("usr.zst.part");
    let mut wrong = usr[..1000].to_vec();
    wrong[3] ^= 1;
    std::fs::write(&dest, &wrong).unwrap();
    let client = reqwest::blocking::Client::new();
    let e = fetch(
        &client,
        &url,
        &dest,
        usr.len() as u64,
        Some(&sha),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, Error::Hash { .. }), "{e}");
    assert!(!dest.exists());
    // The next attempt starts clean and succeeds.
    let f = fetch(
        &client,
        &url,
        &dest,
        usr.len() as u64,
        Some(&sha),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(f.resumed_from, 0);
    assert!(std::fs::read(&dest).unwrap() == usr);
}

#[test]
fn a_size_the_server_does_not_have_is_an_error() {
    let (dir, _srv, usr, _sha, url) = setup();
    let dest = dir.path().join("x");
    let e = fetch(
        &reqwest::blocking::Client::new(),
        &url,
        &dest,
        usr.len() as u64 + 10,
        None,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, Error::Size { .. }), "{e}");
}
