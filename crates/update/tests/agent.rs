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

    // Reboot into B running 2.0.0: once the health checks mark B good (ferrocore-mark-
    // successful.service runs `ferro-health run`), the server hears of it and counts it.
    drop(d);
    reboot_into(&m, "2.0.0", "B");
    let d = daemon(&m, dir.path(), "ue2");
    let (ok, _) = client(&d, &["-status"]); // answered once the boot outcome was looked at
    assert!(ok);
    assert_eq!(
        srv.state()["instances"][&id]["status"],
        "installed",
        "success reported before the slot was marked good"
    );
    let (ok, out) = health(&m, &[]);
    assert!(ok && out.contains("USR-B: marked successful"), "{out}");
    let (_, b, _) = m.slots();
    assert!(b.successful && b.tries == 0, "{b:?}");
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
    // The new slot never came up: GRUB spent B's try (in grubenv, the only place it can write)
    // and went back to A, still 1.0.0.
    spend_grub_try(&m, gptprio::Slot::B);
    reboot_into(&m, "1.0.0", "A");
    let _d = daemon(&m, dir.path(), "ue2");
    wait_for("the rollback report", || {
        srv.state()["instances"][&id]["status"] == "rolled-back"
    });
    let why = srv.state()["instances"][&id]["last_error"].clone();
    assert!(
        why.as_str()
            .unwrap()
            .contains("USR-B with 2.0.0 never finished booting"),
        "{why}"
    );
    // The agent marked the slot that never came up as failed.
    let (a, b, env) = m.slots();
    assert_eq!(b, gptprio::SlotState::default());
    assert!(a.successful);
    assert_eq!(gptprio::grubenv_slot(&env, gptprio::Slot::B), Some(b));
    assert!(!m.root.join("var/lib/update_engine/pending.json").exists());
}

#[test]
fn a_failed_health_check_rolls_back_reports_and_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 300_000);
    let srv = server(&dir.path().join("data"), &[]);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let id = machine_id(&m);
    let d = daemon(&m, dir.path(), "ue");
    let (ok, out) = client(&d, &["-update"]);
    assert!(ok, "{out}");
    drop(d);
    // 2.0.0 boots on B, but its /usr carries a check that fails.
    reboot_into(&m, "2.0.0", "B");
    let checks = m.root.join("usr/lib/ferrocore/health.d");
    std::fs::create_dir_all(&checks).unwrap();
    let check = checks.join("50-app");
    std::fs::write(
        &check,
        "#!/bin/sh
echo 'app: port 8080 refused' >&2
exit 1
",
    )
    .unwrap();
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rebooted = dir.path().join("rebooted");
    let reboot = format!("touch {}", rebooted.display());
    let (ok, out) = health(&m, &["--reboot-command", &reboot]);
    assert!(ok, "{out}");
    assert!(
        out.contains("FAIL 50-app") && out.contains("port 8080 refused"),
        "{out}"
    );
    assert!(
        out.contains("USR-B: rolled back to USR-A; rebooting"),
        "{out}"
    );
    assert!(rebooted.exists(), "no reboot");
    let (a, b, env) = m.slots();
    assert_eq!(b, gptprio::SlotState::default(), "B never boots again");
    assert!(a.successful && a.priority >= 1);
    assert_eq!(gptprio::choose_next(a, b), Some(gptprio::Slot::A));
    assert_eq!(gptprio::grubenv_slot(&env, gptprio::Slot::B), Some(b));
    // Reported at once, with the check's output.
    let inst = srv.state()["instances"][&id].clone();
    assert_eq!(inst["status"], "rolled-back", "{inst}");
    let why = inst["last_error"].as_str().unwrap();
    assert!(
        why.contains("2.0.0") && why.contains("port 8080 refused"),
        "{why}"
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(m.root.join("var/lib/update_engine/rollback.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["reported"], true);

    // Back on A with 1.0.0: the agent tidies up without a second report, and 2.0.0 is not
    // offered to this machine again.
    reboot_into(&m, "1.0.0", "A");
    std::fs::write(m.root.join("proc/sys/kernel/random/boot_id"), "boot-3\n").unwrap();
    let d = daemon(&m, dir.path(), "ue2");
    let (ok, out) = client(&d, &["-update"]);
    assert!(ok && out.contains("no update"), "{out}");
    assert!(!m.root.join("var/lib/update_engine/pending.json").exists());
    assert!(!m.root.join("var/lib/update_engine/rollback.json").exists());
    assert_eq!(srv.state()["instances"][&id]["status"], "rolled-back");
}

#[test]
fn a_failed_health_check_on_a_known_good_slot_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    let checks = m.root.join("etc/ferrocore/health.d");
    std::fs::create_dir_all(&checks).unwrap();
    let check = checks.join("10-docker");
    std::fs::write(
        &check,
        "#!/bin/sh
exit 7
",
    )
    .unwrap();
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = std::fs::read(&m.disk).unwrap();
    let (ok, out) = health(&m, &["--reboot-command", "false"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no known-good slot to go back to"), "{out}");
    assert!(
        std::fs::read(&m.disk).unwrap() == before,
        "the disk changed"
    );
    let (ok, out) = health(&m, &[]);
    assert!(
        !ok && out.contains("FAIL 10-docker (exit status: 7)"),
        "{out}"
    );
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
