//! `ferro-update-server` as a real process: publish and promote through its CLI, Omaha checks,
//! payload downloads with Range, metrics, and state that survives a restart.

mod common;
use common::*;

fn get(url: &str, range: Option<&str>) -> reqwest::blocking::Response {
    let mut r = reqwest::blocking::Client::new().get(url);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    r.send().unwrap()
}

#[test]
fn publish_check_download_with_range_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 200_000);
    let data = dir.path().join("data");
    let trusted = k.trusted_dir.to_str().unwrap().to_string();
    let srv = server(&data, &["--trusted-keys", &trusted]);

    // Before anything is published: no update.
    let r = omaha_check(&srv.url, "m1", "1.0.0", "stable");
    assert_eq!(r.apps[0].update_check.as_ref().unwrap().status, "noupdate");

    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "beta"]);
    // Published to beta only.
    let r = omaha_check(&srv.url, "m1", "1.0.0", "stable");
    assert_eq!(r.apps[0].update_check.as_ref().unwrap().status, "noupdate");
    srv.admin(&["promote", "2.0.0", "--channel", "stable"]);
    let r = omaha_check(&srv.url, "m1", "1.0.0", "stable");
    let uc = r.apps[0].update_check.clone().unwrap();
    assert_eq!(uc.status, "ok");
    let base = &uc.urls.unwrap().urls[0].codebase;
    assert_eq!(base, &format!("{}/v1/payload/2.0.0/", srv.url));
    let pkgs = uc.manifest.unwrap().packages.packages;
    let names: Vec<_> = pkgs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "manifest.json.sig",
            "usr.zst",
            "kernel.zst",
            "initrd.zst"
        ]
    );

    // Whole file, then a resumed tail, then an unsatisfiable range.
    let usr = pkgs.iter().find(|p| p.name == "usr.zst").unwrap();
    let whole = get(&format!("{base}usr.zst"), None);
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().unwrap();
    assert_eq!(whole.len() as u64, usr.size);
    assert_eq!(
        whole.as_ref(),
        std::fs::read(p.dir.join("usr.zst")).unwrap().as_slice()
    );
    let tail = get(&format!("{base}usr.zst"), Some("bytes=1000-"));
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-range"],
        format!("bytes 1000-{}/{}", usr.size - 1, usr.size).as_str()
    );
    assert_eq!(tail.bytes().unwrap().as_ref(), &whole[1000..]);
    let mid = get(&format!("{base}usr.zst"), Some("bytes=10-19"))
        .bytes()
        .unwrap();
    assert_eq!(mid.as_ref(), &whole[10..20]);
    let past = get(
        &format!("{base}usr.zst"),
        Some(&format!("bytes={}-", usr.size)),
    );
    assert_eq!(past.status(), 416);
    // Only files of a release are served.
    assert_eq!(get(&format!("{base}..%2Fstate.json"), None).status(), 404);
    assert_eq!(
        get(&format!("{}/v1/payload/9.9.9/usr.zst", srv.url), None).status(),
        404
    );

    let metrics = get(&format!("{}/metrics", srv.url), None).text().unwrap();
    assert!(
        metrics.contains("ferro_update_instances{version=\"1.0.0\",status=\"update-granted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferro_update_granted{version=\"2.0.0\"} 1"),
        "{metrics}"
    );
    let page = get(&format!("{}/", srv.url), None).text().unwrap();
    assert!(page.contains("update-granted"), "{page}");

    srv.admin(&["rollout", "--group", "stable", "--percent", "0"]);
    let r = omaha_check(&srv.url, "m2", "1.0.0", "stable");
    assert_eq!(r.apps[0].update_check.as_ref().unwrap().status, "noupdate");
    srv.admin(&["rollout", "--group", "stable", "--percent", "100"]);
    srv.admin(&["pause", "--group", "stable"]);
    let r = omaha_check(&srv.url, "m2", "1.0.0", "stable");
    assert_eq!(r.apps[0].update_check.as_ref().unwrap().status, "noupdate");

    // State is on disk: a new server process knows the release, the pause and the instances.
    drop(srv);
    let srv = server(&data, &[]);
    let st = srv.state();
    assert_eq!(st["channels"]["stable"], "2.0.0");
    assert_eq!(st["groups"]["stable"]["paused"], true);
    assert_eq!(st["instances"]["m1"]["status"], "update-granted");
    srv.admin(&["pause", "--group", "stable", "--resume"]);
    let r = omaha_check(&srv.url, "m2", "1.0.0", "stable");
    assert_eq!(r.apps[0].update_check.as_ref().unwrap().status, "ok");
}

#[test]
fn publish_refuses_a_payload_signed_by_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let other = keys(&dir.path().join("other"));
    let p = payload(dir.path(), "2.0.0", &other.signing, 10_000);
    let srv = server(
        &dir.path().join("data"),
        &["--trusted-keys", k.trusted_dir.to_str().unwrap()],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
        .args(["--server", &srv.url, "publish"])
        .arg(&p.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature"), "{err}");
    assert!(srv.state()["releases"].as_object().unwrap().is_empty());
}
