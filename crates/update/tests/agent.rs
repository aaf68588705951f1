//! End to end on the host: `ferro-update-server` and `update_engine` as real processes, driven
//! with `update_engine_client` as on CoreOS; the machine is a GPT disk image and a root tree.

mod common;
use common::daemon::*;
use common::machine::machine;
use common::*;

#[test]
fn updates_from_the_server_and_reports_after_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 2_500_000);
    let srv = server(&dir.path().join("data"), &[]);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let id = machine_id(&m);

    let d = daemon(&m, dir.path(), "ue");
    let (ok, s) = client(&d, &["-status"]);
    assert!(ok, "{s}");
    assert_eq!(status_line(&s, "CURRENT_OP"), "UPDATE_STATUS_IDLE");
    assert_eq!(status_line(&s, "LAST_CHECKED_TIME"), "0");
    assert_eq!(status_line(&s, "NEW_VERSION"), "0.0.0.0");

    let (ok, out) = client(&d, &["-update"]);
    assert!(ok, "{out}");
    assert!(out.contains("installed 2.0.0"), "{out}");
    assert_eq!(
        status_line(&out, "CURRENT_OP"),
        "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    );
    assert_eq!(status_line(&out, "NEW_VERSION"), "2.0.0");
    assert_eq!(status_line(&out, "PROGRESS"), "1.000000");
    let size: u64 = std::fs::read_dir(&p.dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(status_line(&out, "NEW_SIZE"), size.to_string());
    assert_ne!(status_line(&out, "LAST_CHECKED_TIME"), "0");
    m.assert_updated(&p);
    // The staging copy is gone once installed.
    assert!(!m.root.join("var/lib/update_engine/download/2.0.0").exists());
    assert_eq!(srv.state()["instances"][&id]["status"], "installed");
    // Until the reboot, no second install.
    let (ok, out) = client(&d, &["-update"]);
    assert!(!ok && out.contains("waits for a reboot"), "{out}");

    // Reboot into B running 2.0.0: the daemon reports success and the server counts it.
    drop(d);
    reboot_into(&m, "2.0.0", "B");
    let d = daemon(&m, dir.path(), "ue2");
    wait_for("the server to hear of the reboot", || {
        srv.state()["instances"][&id]["status"] == "complete"
    });
    assert!(!m.root.join("var/lib/update_engine/pending.json").exists());
    let (ok, out) = client(&d, &["-update"]);
    assert!(ok && out.contains("no update"), "{out}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", srv.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("ferro_update_instances{version=\"2.0.0\",status=\"complete\"} 1"),
        "{metrics}"
    );
}

#[test]
fn check_for_update_returns_at_once_and_the_check_runs() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let srv = server(&dir.path().join("data"), &[]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-check_for_update"]);
    assert!(ok, "{out}");
    assert!(out.contains("Initiating update check"), "{out}");
    wait_for("the check", || {
        let (_, s) = client(&d, &["-status"]);
        status_line(&s, "LAST_CHECKED_TIME") != "0"
            && status_line(&s, "CURRENT_OP") == "UPDATE_STATUS_IDLE"
    });
    assert_eq!(srv.state()["instances"][&machine_id(&m)]["status"], "idle");
}

#[test]
fn a_tampered_download_is_refused_reported_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 1_000_000);
    let srv = server(
        &dir.path().join("data"),
        &["--min-instances", "1", "--max-failure-rate", "0.5"],
    );
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    // Tamper with the published copy and its recorded hash alike, as a compromised mirror
    // would: only the signature check can catch it.
    let published = srv.data_dir.join("payloads/2.0.0/kernel.zst");
    let mut b = std::fs::read(&published).unwrap();
    b[10] ^= 1;
    std::fs::write(&published, &b).unwrap();
    drop(srv);
    let state_path = dir.path().join("data/state.json");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    for f in st["releases"]["2.0.0"]["files"].as_array_mut().unwrap() {
        if f["name"] == "kernel.zst" {
            use sha2::Digest;
            f["sha256"] = hex::encode(sha2::Sha256::digest(&b)).into();
        }
    }
    std::fs::write(&state_path, serde_json::to_vec(&st).unwrap()).unwrap();
    let srv = server(
        &dir.path().join("data"),
        &["--min-instances", "1", "--max-failure-rate", "0.5"],
    );

    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let before = std::fs::read(&m.disk).unwrap();
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-update"]);
    assert!(!ok, "{out}");
    assert!(out.contains("kernel"), "{out}");
    assert!(
        std::fs::read(&m.disk).unwrap() == before,
        "the disk image changed"
    );
    let (_, s) = client(&d, &["-status"]);
    assert_eq!(status_line(&s, "CURRENT_OP"), "UPDATE_STATUS_IDLE");
    let st = srv.state();
    assert_eq!(st["instances"][&machine_id(&m)]["status"], "error");
    // One machine offered 2.0.0, one failed: past 50%, the server paused stable by itself.
    assert_eq!(st["groups"]["stable"]["paused"], true, "{st}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", srv.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("ferro_update_failures{version=\"2.0.0\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_boot_that_falls_back_is_reported_as_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 500_000);
    let srv = server(&dir.path().join("data"), &[]);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let id = machine_id(&m);
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-update"]);
    assert!(ok, "{out}");
    drop(d);
    // The new slot never came up: GRUB went back to A, still 1.0.0.
    reboot_into(&m, "1.0.0", "A");
    let _d = daemon(&m, dir.path(), "ue2");
    wait_for("the rollback report", || {
        srv.state()["instances"][&id]["status"] == "rolled-back"
    });
}

#[test]
fn apply_payload_installs_an_offline_payload() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "3.1.0", &k.signing, 800_000);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    // Air-gapped: no SERVER at all.
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-apply_payload", p.dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("installed 3.1.0"), "{out}");
    m.assert_updated(&p);
}

#[test]
fn apply_payload_refuses_an_older_version_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "0.9.0", &k.signing, 200_000);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    let before = std::fs::read(&m.disk).unwrap();
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-apply_payload", p.dir.to_str().unwrap()]);
    assert!(!ok && out.contains("not newer"), "{out}");
    assert!(
        std::fs::read(&m.disk).unwrap() == before,
        "the disk image changed"
    );
    let (ok, out) = client(
        &d,
        &[
            "-apply_payload",
            p.dir.to_str().unwrap(),
            "-allow_downgrade",
        ],
    );
    assert!(ok && out.contains("installed 0.9.0"), "{out}");
    m.assert_updated(&p);
}

#[test]
fn a_payload_that_is_not_the_offered_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 100_000);
    let data = dir.path().join("data");
    let srv = server(&data, &[]);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    drop(srv);
    // A server whose records say 2.1.0 for 2.0.0's files.
    std::fs::rename(data.join("payloads/2.0.0"), data.join("payloads/2.1.0")).unwrap();
    let st = std::fs::read_to_string(data.join("state.json"))
        .unwrap()
        .replace("2.0.0", "2.1.0");
    std::fs::write(data.join("state.json"), st).unwrap();
    let srv = server(&data, &[]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let before = std::fs::read(&m.disk).unwrap();
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-update"]);
    assert!(
        !ok && out.contains("offered 2.1.0 but its payload is 2.0.0"),
        "{out}"
    );
    assert!(std::fs::read(&m.disk).unwrap() == before);
}
