use super::*;

fn sample_request() -> Request {
    Request::new(vec![AppRequest {
        app_id: "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}".into(),
        version: "1.2.0".into(),
        track: "beta".into(),
        machine_id: Some("m-1".into()),
        boot_id: Some("{boot}".into()),
        oem: None,
        board: Some("qemu".into()),
        ping: Some(PingRequest {
            active: Some("1".into()),
            r: None,
        }),
        update_check: Some(UpdateCheckRequest::default()),
        events: vec![Event {
            previous_version: Some("1.1.0".into()),
            ..Event::new(EventType::UpdateComplete, EventResult::SuccessReboot)
        }],
    }])
}

fn sample_response() -> Response {
    Response::new(vec![AppResponse {
        app_id: "{app}".into(),
        status: "ok".into(),
        ping: Some(StatusOnly::ok()),
        update_check: Some(UpdateCheckResponse {
            status: "ok".into(),
            urls: Some(Urls {
                urls: vec![Url {
                    codebase: "http://127.0.0.1:1/v1/payload/1.3.0/".into(),
                }],
            }),
            manifest: Some(Manifest {
                version: "1.3.0".into(),
                packages: Packages {
                    packages: vec![Package {
                        name: "usr.zst".into(),
                        size: 1234,
                        hash: None,
                        hash_sha256: Some("ab".repeat(32)),
                        required: Some("true".into()),
                    }],
                },
                actions: Some(Actions {
                    actions: vec![Action {
                        event: "postinstall".into(),
                        sha256: Some("q80=".into()),
                        ..Default::default()
                    }],
                }),
            }),
        }),
        events: vec![StatusOnly::ok()],
    }])
}

#[test]
fn request_round_trips() {
    let r = sample_request();
    let xml = r.to_xml().unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains(r#"<event eventtype="3" eventresult="2""#),
        "{xml}"
    );
    assert_eq!(Request::parse(&xml).unwrap(), r);
}

#[test]
fn response_round_trips_update_and_noupdate() {
    let r = sample_response();
    let xml = r.to_xml().unwrap();
    assert!(xml.contains(r#"<updatecheck status="ok">"#), "{xml}");
    assert_eq!(Response::parse(&xml).unwrap(), r);

    let mut none = sample_response();
    none.apps[0].update_check = Some(UpdateCheckResponse::no_update());
    let xml = none.to_xml().unwrap();
    assert!(xml.contains(r#"<updatecheck status="noupdate"/>"#), "{xml}");
    assert_eq!(Response::parse(&xml).unwrap(), none);
}

/// A request in the shape update_engine (CoreOS 1235) sends: extra attributes are ignored.
#[test]
fn parses_update_engine_request() {
    let xml = include_str!("../../testdata/omaha/update_engine_request.xml");
    let r = Request::parse(xml).unwrap();
    assert_eq!(r.is_machine.as_deref(), Some("1"));
    assert_eq!(r.os.as_ref().unwrap().platform.as_deref(), Some("CoreOS"));
    let app = &r.apps[0];
    assert_eq!(app.app_id, "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}");
    assert_eq!(app.version, "1235.6.0");
    assert_eq!(app.track, "stable");
    assert_eq!(
        app.machine_id.as_deref(),
        Some("0b1f8a2c6d7e4f5a9b3c1d2e3f4a5b6c")
    );
    assert!(app.update_check.is_some());
    assert_eq!(app.events.len(), 1);
    assert_eq!(app.events[0].kind(), Some(EventType::UpdateComplete));
    assert_eq!(app.events[0].result(), Some(EventResult::SuccessReboot));
    assert_eq!(app.events[0].previous_version.as_deref(), Some("1185.3.0"));
}

/// A response in the shape CoreUpdate sent to update_engine.
#[test]
fn parses_coreupdate_response() {
    let xml = include_str!("../../testdata/omaha/coreupdate_response.xml");
    let r = Response::parse(xml).unwrap();
    assert_eq!(r.day_start.as_ref().unwrap().elapsed_seconds, 0);
    let uc = r.apps[0].update_check.as_ref().unwrap();
    assert_eq!(uc.status, "ok");
    assert_eq!(
        uc.urls.as_ref().unwrap().urls[0].codebase,
        "https://update.release.core-os.net/amd64-usr/1298.5.0/"
    );
    let m = uc.manifest.as_ref().unwrap();
    assert_eq!(m.version, "1298.5.0");
    let p = &m.packages.packages[0];
    assert_eq!((p.name.as_str(), p.size), ("update.gz", 277340387));
    assert_eq!(p.hash.as_deref(), Some("u3wKoqmXe0sI1vuvPjUGm6x5ZTk="));
    let action = &m.actions.as_ref().unwrap().actions[0];
    assert_eq!(action.event, "postinstall");
    assert_eq!(action.is_delta.as_deref(), Some("false"));
    assert!(action.sha256.as_deref().unwrap().ends_with("W3g="));
}

#[test]
fn refuses_other_protocols_and_garbage() {
    let xml = sample_request().to_xml().unwrap().replace("3.0", "2.0");
    assert!(matches!(Request::parse(&xml), Err(Error::Protocol(p)) if p == "2.0"));
    assert!(matches!(
        Response::parse("<response><app"),
        Err(Error::Parse(_))
    ));
}

#[test]
fn codes_round_trip() {
    for t in [EventType::UpdateDownloadStarted, EventType::RolledBack] {
        assert_eq!(EventType::from_code(t as u32), Some(t));
    }
    assert_eq!(EventResult::from_code(7), Some(EventResult::NoUpdate));
    assert_eq!(EventResult::from_code(99), None);
}
