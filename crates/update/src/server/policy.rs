//! The server's answer to one Omaha request: record the instance and its events, decide whether
//! to offer the group's channel version (rollout share, pause, version order), and pause a
//! version's groups by itself when too many of its machines fail.

use super::state::{now, Instance, State, Status};
use crate::omaha::{self, EventResult, EventType};
use crate::version::Version;
use sha2::{Digest, Sha256};

/// CoreOS's application id, which update_engine sends.
pub const COREOS_APP_ID: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";

#[derive(Clone, Debug)]
pub struct Policy {
    pub app_id: String,
    /// Pause a version's groups when failed/granted passes this (0–1)…
    pub max_failure_rate: f64,
    /// …once at least this many machines were offered it.
    pub min_instances: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            app_id: COREOS_APP_ID.into(),
            max_failure_rate: 0.5,
            min_instances: 5,
        }
    }
}

/// 0–9999, stable per machine: a rollout of p% offers the update to buckets below p×100, so
/// raising the percentage only adds machines.
pub fn bucket(machine_id: &str) -> u32 {
    let h = Sha256::digest(machine_id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % 10_000) as u32
}

pub fn in_rollout(machine_id: &str, percent: u8) -> bool {
    bucket(machine_id) < u32::from(percent) * 100
}

fn same_app(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_matches(|c| c == '{' || c == '}')
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Handles a request; `codebase` is the base URL payloads are served under (`…/v1/payload/`).
pub fn handle(
    state: &mut State,
    policy: &Policy,
    req: &omaha::Request,
    codebase: &str,
) -> omaha::Response {
    let apps = req
        .apps
        .iter()
        .map(|app| handle_app(state, policy, app, codebase))
        .collect();
    omaha::Response::new(apps)
}

fn handle_app(
    state: &mut State,
    policy: &Policy,
    app: &omaha::AppRequest,
    codebase: &str,
) -> omaha::AppResponse {
    let mut resp = omaha::AppResponse {
        app_id: app.app_id.clone(),
        status: "ok".into(),
        ..Default::default()
    };
    if !same_app(&app.app_id, &policy.app_id) {
        resp.status = "error-unknownApplication".into();
        return resp;
    }
    let Some(machine) = app.machine_id.clone().filter(|m| !m.is_empty()) else {
        resp.status = "error-invalidMachineId".into();
        return resp;
    };
    let inst = state
        .instances
        .entry(machine.clone())
        .or_insert_with(|| Instance {
            version: app.version.clone(),
            group: app.track.clone(),
            status: Status::Idle,
            last_check: 0,
            offered: None,
            last_error: None,
        });
    inst.version = app.version.clone();
    inst.group = app.track.clone();

    for ev in &app.events {
        record_event(state, policy, &machine, ev);
        resp.events.push(omaha::StatusOnly::ok());
    }
    if app.ping.is_some() {
        resp.ping = Some(omaha::StatusOnly::ok());
    }
    if app.update_check.is_some() {
        resp.update_check = Some(update_check(state, &machine, app, codebase));
    }
    resp
}

fn record_event(state: &mut State, policy: &Policy, machine: &str, ev: &omaha::Event) {
    let inst = state.instances.get_mut(machine).expect("registered above");
    let failed_result = ev.result().is_none_or(EventResult::is_error);
    let status = match (ev.kind(), failed_result) {
        (Some(EventType::RolledBack), _) => Status::RolledBack,
        (_, true) => Status::Error,
        (Some(EventType::UpdateDownloadStarted), _) => Status::Downloading,
        (Some(EventType::UpdateDownloadFinished), _) => Status::Downloaded,
        (Some(EventType::UpdateComplete), _)
            if ev.result() == Some(EventResult::SuccessReboot)
                && inst.offered.as_deref() == Some(inst.version.as_str()) =>
        {
            Status::Complete
        }
        (Some(EventType::InstallComplete | EventType::UpdateComplete), _) => Status::Installed,
        _ => return,
    };
    inst.status = status;
    if matches!(status, Status::Error | Status::RolledBack) {
        inst.last_error = ev.error_code.clone();
        // The failure belongs to the version the machine was moving to.
        let version = inst
            .offered
            .clone()
            .or_else(|| ev.previous_version.clone())
            .unwrap_or_else(|| inst.version.clone());
        state
            .outcomes
            .entry(version.clone())
            .or_default()
            .failed
            .insert(machine.into());
        auto_pause(state, policy, &version);
    }
}

/// Pauses every group whose channel serves `version` when its failure rate is too high.
fn auto_pause(state: &mut State, policy: &Policy, version: &str) {
    let Some(o) = state.outcomes.get(version) else {
        return;
    };
    let granted = o.granted.len().max(o.failed.len());
    if granted < policy.min_instances.max(1) {
        return;
    }
    let rate = o.failed.len() as f64 / granted as f64;
    if rate <= policy.max_failure_rate {
        return;
    }
    let reason = format!(
        "auto-paused: {} of {granted} machines failed with {version} ({:.0}% > {:.0}%)",
        o.failed.len(),
        rate * 100.0,
        policy.max_failure_rate * 100.0
    );
    for g in state.groups.values_mut() {
        if state.channels.get(&g.channel).and_then(|v| v.as_deref()) == Some(version) && !g.paused {
            tracing::warn!(channel = %g.channel, "{reason}");
            g.paused = true;
            g.pause_reason = Some(reason.clone());
        }
    }
}

fn update_check(
    state: &mut State,
    machine: &str,
    app: &omaha::AppRequest,
    codebase: &str,
) -> omaha::UpdateCheckResponse {
    let inst = state.instances.get_mut(machine).expect("registered above");
    inst.last_check = now();
    let offer = state.groups.get(&app.track).and_then(|g| {
        let target = state.channels.get(&g.channel)?.as_ref()?;
        let newer = match (target.parse::<Version>(), app.version.parse::<Version>()) {
            (Ok(t), Ok(running)) => t > running,
            // A client with an unparsable version is offered the channel's version.
            (Ok(_), Err(_)) => true,
            _ => false,
        };
        // A machine that rolled back from this version is not offered it again: it would only
        // fail its boot the same way. The next version reaches it. (Other errors, such as a
        // broken download, are worth another try.)
        let rolled_back_here =
            inst.status == Status::RolledBack && inst.offered.as_deref() == Some(target.as_str());
        (newer && !rolled_back_here && !g.paused && in_rollout(machine, g.rollout_percent))
            .then(|| state.releases.get(target))
            .flatten()
    });
    let Some(release) = offer else {
        if inst.offered.as_deref() == Some(app.version.as_str()) {
            inst.status = Status::Complete;
        } else if !matches!(inst.status, Status::Error | Status::RolledBack) {
            inst.status = Status::Idle;
        }
        return omaha::UpdateCheckResponse::no_update();
    };
    inst.status = Status::UpdateGranted;
    inst.offered = Some(release.version.clone());
    state
        .outcomes
        .entry(release.version.clone())
        .or_default()
        .granted
        .insert(machine.into());
    omaha::UpdateCheckResponse {
        status: "ok".into(),
        urls: Some(omaha::Urls {
            urls: vec![omaha::Url {
                codebase: format!("{}/{}/", codebase.trim_end_matches('/'), release.version),
            }],
        }),
        manifest: Some(omaha::Manifest {
            version: release.version.clone(),
            packages: omaha::Packages {
                packages: release
                    .files
                    .iter()
                    .map(|f| omaha::Package {
                        name: f.name.clone(),
                        size: f.size,
                        hash: None,
                        hash_sha256: Some(f.sha256.clone()),
                        required: Some("true".into()),
                    })
                    .collect(),
            },
            actions: None,
        }),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
