//! FleetLock between locksmithd's policy (REBOOT_STRATEGY=fleetlock) and ferro-update-server's
//! `/v1/pre-reboot` and `/v1/steady-state`, both real.

mod common;
use common::*;
use update::agent::config::UpdateConf;
use update::locksmith::fleetlock::{Error, FleetLock};
use update::locksmith::policy::{decide, release, Settings, Step};

fn settings(dir: &std::path::Path, url: &str, group: &str) -> Settings {
    let p = dir.join("etc/coreos/update.conf");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        format!(
            "REBOOT_STRATEGY=fleetlock\nLOCKSMITHD_FLEETLOCK_URL={url}\nLOCKSMITHD_GROUP={group}\n"
        ),
    )
    .unwrap();
    Settings::from_conf(&UpdateConf::load(dir).unwrap()).unwrap()
}

#[test]
fn one_reboot_slot_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(&dir.path().join("data"), &["--fleetlock-max", "1"]);
    let web = settings(&dir.path().join("web"), &srv.url, "web");
    let db = settings(&dir.path().join("db"), &srv.url, "db");

    assert_eq!(decide(&web, "node-1", 0).unwrap(), Step::Reboot);
    // Asking again while holding it is still a yes (a retry after a failed reboot).
    assert_eq!(decide(&web, "node-1", 0).unwrap(), Step::Reboot);
    match decide(&web, "node-2", 0).unwrap() {
        Step::LockBusy(why) => assert!(why.contains("node-1"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Another group has its own slot.
    assert_eq!(decide(&db, "node-3", 0).unwrap(), Step::Reboot);
    let metrics = reqwest::blocking::get(format!("{}/metrics", srv.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("ferro_update_fleetlock_holders{group=\"web\"} 1"),
        "{metrics}"
    );

    // node-1 is back: steady-state frees the slot for node-2.
    release(&web, "node-1").unwrap();
    assert_eq!(decide(&web, "node-2", 0).unwrap(), Step::Reboot);
    assert_eq!(
        srv.state()["fleetlock"]["web"],
        serde_json::json!(["node-2"])
    );
}

#[test]
fn requests_without_the_protocol_header_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(&dir.path().join("data"), &[]);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/pre-reboot", srv.url))
        .body(r#"{"client_params":{"node_uuid":"n","group":"default"}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(body["kind"], "missing_header");
    // The client sends it; a second node is refused with the server's reason.
    let fl = FleetLock::new(&srv.url, "default");
    fl.pre_reboot("a").unwrap();
    match fl.pre_reboot("b") {
        Err(Error::Refused {
            status: 409, body, ..
        }) => assert!(body.contains("failed_lock"), "{body}"),
        other => panic!("{other:?}"),
    }
    fl.steady_state("a").unwrap();
    fl.steady_state("a").unwrap();
    fl.pre_reboot("b").unwrap();
}
