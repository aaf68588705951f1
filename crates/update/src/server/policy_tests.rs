use super::*;
use crate::server::state::{FileInfo, Release};

fn state_with(version: &str, channel: &str) -> State {
    let mut s = State::default();
    s.releases.insert(
        version.into(),
        Release {
            version: version.into(),
            build_id: "b".into(),
            files: vec![FileInfo {
                name: "usr.zst".into(),
                size: 10,
                sha256: "00".repeat(32),
            }],
            published_at: 0,
        },
    );
    s.promote(version, channel).unwrap();
    s
}

fn check(machine: &str, version: &str, group: &str, events: Vec<omaha::Event>) -> omaha::Request {
    omaha::Request::new(vec![omaha::AppRequest {
        app_id: COREOS_APP_ID.into(),
        version: version.into(),
        track: group.into(),
        machine_id: Some(machine.into()),
        update_check: events.is_empty().then(Default::default),
        events,
        ..Default::default()
    }])
}

fn offered(s: &mut State, p: &Policy, machine: &str, version: &str, group: &str) -> bool {
    let r = handle(
        s,
        p,
        &check(machine, version, group, vec![]),
        "http://h/v1/payload",
    );
    let uc = r.apps[0].update_check.clone().unwrap();
    match uc.status.as_str() {
        "ok" => {
            assert_eq!(
                uc.urls.unwrap().urls[0].codebase,
                "http://h/v1/payload/2.0.0/"
            );
            let pkg = &uc.manifest.unwrap().packages.packages[0];
            assert_eq!((pkg.name.as_str(), pkg.size), ("usr.zst", 10));
            true
        }
        "noupdate" => false,
        other => panic!("status {other}"),
    }
}

#[test]
fn offers_newer_versions_only_and_records_instances() {
    let p = Policy::default();
    let mut s = state_with("2.0.0", "stable");
    assert!(offered(&mut s, &p, "m1", "1.0.0", "stable"));
    assert!(!offered(&mut s, &p, "m2", "2.0.0", "stable"));
    assert!(!offered(&mut s, &p, "m3", "3.0.0", "stable"));
    // beta has no version yet; an unknown group gets nothing either.
    assert!(!offered(&mut s, &p, "m4", "1.0.0", "beta"));
    assert!(!offered(&mut s, &p, "m5", "1.0.0", "nosuchgroup"));
    let m1 = &s.instances["m1"];
    assert_eq!(
        (m1.status, m1.version.as_str()),
        (Status::UpdateGranted, "1.0.0")
    );
    assert!(m1.last_check > 0);
    assert_eq!(s.instances["m2"].status, Status::Idle);
}

#[test]
fn wrong_app_or_no_machine_id_is_an_error() {
    let mut s = state_with("2.0.0", "stable");
    let mut req = check("m1", "1.0.0", "stable", vec![]);
    req.apps[0].app_id = "{other}".into();
    let r = handle(&mut s, &Policy::default(), &req, "http://h");
    assert_eq!(r.apps[0].status, "error-unknownApplication");
    req.apps[0].app_id = COREOS_APP_ID.to_uppercase();
    req.apps[0].machine_id = None;
    let r = handle(&mut s, &Policy::default(), &req, "http://h");
    assert_eq!(r.apps[0].status, "error-invalidMachineId");
    assert!(s.instances.is_empty());
}

#[test]
fn rollout_percentage_splits_machines_as_asked() {
    let p = Policy::default();
    for percent in [0u8, 10, 50, 90, 100] {
        let mut s = state_with("2.0.0", "stable");
        s.set_group("stable", None, Some(percent), None).unwrap();
        let n = 4000;
        let got = (0..n)
            .filter(|i| offered(&mut s, &p, &format!("machine-{i:05}"), "1.0.0", "stable"))
            .count();
        let share = got as f64 / n as f64 * 100.0;
        assert!(
            (share - f64::from(percent)).abs() < 3.0,
            "{percent}% asked, {share:.1}% offered"
        );
    }
    // Raising the percentage keeps the machines already in.
    assert!((0..1000).all(|i| {
        let m = format!("m{i}");
        !in_rollout(&m, 20) || in_rollout(&m, 60)
    }));
}

#[test]
fn a_paused_group_gets_no_update() {
    let p = Policy::default();
    let mut s = state_with("2.0.0", "stable");
    s.set_group("stable", None, None, Some(true)).unwrap();
    assert!(!offered(&mut s, &p, "m1", "1.0.0", "stable"));
    s.set_group("stable", None, None, Some(false)).unwrap();
    assert!(offered(&mut s, &p, "m1", "1.0.0", "stable"));
}

#[test]
fn custom_groups_follow_their_channel() {
    let p = Policy::default();
    let mut s = state_with("2.0.0", "beta");
    assert!(s.set_group("canary", None, None, None).is_err());
    s.set_group("canary", Some("beta"), Some(100), None)
        .unwrap();
    assert!(offered(&mut s, &p, "m1", "1.0.0", "canary"));
    assert!(!offered(&mut s, &p, "m2", "1.0.0", "stable"));
}

fn event(t: EventType, r: EventResult) -> omaha::Event {
    omaha::Event::new(t, r)
}

#[test]
fn events_move_instance_status_through_an_update() {
    let p = Policy::default();
    let mut s = state_with("2.0.0", "stable");
    assert!(offered(&mut s, &p, "m1", "1.0.0", "stable"));
    let steps = [
        (
            EventType::UpdateDownloadStarted,
            EventResult::Success,
            "1.0.0",
            Status::Downloading,
        ),
        (
            EventType::UpdateDownloadFinished,
            EventResult::Success,
            "1.0.0",
            Status::Downloaded,
        ),
        (
            EventType::UpdateComplete,
            EventResult::Success,
            "1.0.0",
            Status::Installed,
        ),
        (
            EventType::UpdateComplete,
            EventResult::SuccessReboot,
            "2.0.0",
            Status::Complete,
        ),
    ];
    for (t, r, v, want) in steps {
        let resp = handle(
            &mut s,
            &p,
            &check("m1", v, "stable", vec![event(t, r)]),
            "x",
        );
        assert_eq!(resp.apps[0].events.len(), 1);
        assert_eq!(s.instances["m1"].status, want, "after {t:?}/{r:?}");
    }
    assert!(s.outcomes["2.0.0"].failed.is_empty());
}

#[test]
fn too_many_failures_pause_the_version_by_itself() {
    let p = Policy {
        max_failure_rate: 0.25,
        min_instances: 4,
        ..Policy::default()
    };
    let mut s = state_with("2.0.0", "stable");
    for i in 0..8 {
        assert!(offered(&mut s, &p, &format!("m{i}"), "1.0.0", "stable"));
    }
    let fail = |s: &mut State, m: &str, t| {
        handle(
            s,
            &p,
            &check(m, "1.0.0", "stable", vec![event(t, EventResult::Error)]),
            "x",
        );
    };
    // 2 of 8 = 25%: not above the threshold yet.
    fail(&mut s, "m0", EventType::UpdateDownloadFinished);
    fail(&mut s, "m1", EventType::RolledBack);
    assert!(!s.groups["stable"].paused);
    assert_eq!(s.instances["m1"].status, Status::RolledBack);
    fail(&mut s, "m2", EventType::UpdateComplete);
    let g = &s.groups["stable"];
    assert!(g.paused, "{g:?}");
    assert!(
        g.pause_reason.as_deref().unwrap().contains("3 of 8"),
        "{g:?}"
    );
    assert!(!offered(&mut s, &p, "m9", "1.0.0", "stable"));
    // Other channels are untouched.
    assert!(!s.groups["beta"].paused);
}
