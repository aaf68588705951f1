//! locksmithd's decision, one policy combining REBOOT_STRATEGY, the reboot window, the lock
//! (etcd semaphore or FleetLock) and an optional drain command run before the reboot.
//!
//! update.conf keys (CoreOS's, plus Ferrocore's last three):
//! `REBOOT_STRATEGY`, `LOCKSMITHD_REBOOT_WINDOW_START`, `LOCKSMITHD_REBOOT_WINDOW_LENGTH`,
//! `LOCKSMITHD_ENDPOINT` (etcd, default http://127.0.0.1:2379), `LOCKSMITHD_GROUP`,
//! `LOCKSMITHD_FLEETLOCK_URL`, `LOCKSMITHD_DRAIN_COMMAND` (run with `sh -c`),
//! `LOCKSMITHD_DRAIN_TIMEOUT` (default 5m).

use super::fleetlock::{self, FleetLock};
use super::window::{self, Window};
use super::{Lock, Refused};
use crate::agent::config::{RebootStrategy, UpdateConf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Window(#[from] window::Error),
    #[error("LOCKSMITHD_DRAIN_TIMEOUT {0:?} is not a duration such as 5m")]
    DrainTimeout(String),
    #[error("REBOOT_STRATEGY=fleetlock needs LOCKSMITHD_FLEETLOCK_URL")]
    NoFleetLockUrl,
    #[error("taking the reboot lock: {0}")]
    Etcd(#[from] super::Error),
    #[error("taking the reboot lock: {0}")]
    FleetLock(#[from] fleetlock::Error),
    #[error("drain command {cmd:?}: {what}")]
    Drain { cmd: String, what: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub strategy: RebootStrategy,
    pub window: Option<Window>,
    pub etcd_endpoint: String,
    pub group: Option<String>,
    pub fleetlock_url: Option<String>,
    pub drain: Option<String>,
    pub drain_timeout: Duration,
}

impl Settings {
    pub fn from_conf(c: &UpdateConf) -> Result<Settings, Error> {
        let get = |k: &str| c.raw.get(k).filter(|v| !v.is_empty()).cloned();
        let window = match (
            get("LOCKSMITHD_REBOOT_WINDOW_START"),
            get("LOCKSMITHD_REBOOT_WINDOW_LENGTH"),
        ) {
            (Some(s), Some(l)) => Some(Window::parse(&s, &l)?),
            (Some(s), None) => Some(Window::parse(&s, "1h")?),
            _ => None,
        };
        let drain_timeout = match get("LOCKSMITHD_DRAIN_TIMEOUT") {
            Some(t) => Duration::from_secs(
                window::parse_duration(&t).ok_or(Error::DrainTimeout(t.clone()))?,
            ),
            None => Duration::from_secs(300),
        };
        let s = Settings {
            strategy: c.reboot_strategy,
            window,
            etcd_endpoint: get("LOCKSMITHD_ENDPOINT")
                .unwrap_or_else(|| "http://127.0.0.1:2379".into()),
            group: get("LOCKSMITHD_GROUP"),
            fleetlock_url: get("LOCKSMITHD_FLEETLOCK_URL"),
            drain: get("LOCKSMITHD_DRAIN_COMMAND"),
            drain_timeout,
        };
        if s.strategy == RebootStrategy::FleetLock && s.fleetlock_url.is_none() {
            return Err(Error::NoFleetLockUrl);
        }
        Ok(s)
    }

    fn etcd(&self) -> Lock {
        Lock::new(&self.etcd_endpoint, self.group.as_deref())
    }

    fn fleetlock(&self) -> Option<FleetLock> {
        self.fleetlock_url
            .as_deref()
            .map(|u| FleetLock::new(u, self.group.as_deref().unwrap_or("default")))
    }

    /// best-effort: the etcd lock when etcd answers, else a plain reboot.
    fn uses_etcd(&self) -> bool {
        match self.strategy {
            RebootStrategy::EtcdLock => true,
            RebootStrategy::BestEffort => self.etcd().get().is_ok(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// REBOOT_STRATEGY=off.
    Off,
    OutsideWindow,
    /// Someone else holds the slots; try again later.
    LockBusy(String),
    /// Go: the lock (if any) is ours.
    Reboot,
}

/// Decides whether `id` may reboot now (`unix` seconds), taking the lock if one is used.
pub fn decide(s: &Settings, id: &str, unix: u64) -> Result<Step, Error> {
    if s.strategy == RebootStrategy::Off {
        return Ok(Step::Off);
    }
    if let Some(w) = &s.window {
        if !w.contains(unix) {
            return Ok(Step::OutsideWindow);
        }
    }
    if s.strategy == RebootStrategy::FleetLock {
        let fl = s.fleetlock().ok_or(Error::NoFleetLockUrl)?;
        return match fl.pre_reboot(id) {
            Ok(()) => Ok(Step::Reboot),
            Err(fleetlock::Error::Refused { body, .. }) => Ok(Step::LockBusy(body)),
            Err(e) => Err(e.into()),
        };
    }
    if s.uses_etcd() {
        return match s.etcd().lock(id) {
            // Held from an earlier attempt that did not reboot: still ours.
            Ok(_) | Err(super::Error::Refused(Refused::AlreadyHeld(_))) => Ok(Step::Reboot),
            Err(super::Error::Refused(r)) => Ok(Step::LockBusy(r.to_string())),
            Err(e) => Err(e.into()),
        };
    }
    Ok(Step::Reboot)
}

/// After a boot (or when a reboot is called off): give back whatever lock `id` holds.
pub fn release(s: &Settings, id: &str) -> Result<(), Error> {
    if s.strategy == RebootStrategy::FleetLock {
        if let Some(fl) = s.fleetlock() {
            fl.steady_state(id)?;
        }
        return Ok(());
    }
    if s.uses_etcd() {
        match s.etcd().unlock(id) {
            Ok(_) | Err(super::Error::Refused(Refused::NotHeld(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs the drain command (if any), killing it at the timeout.
pub fn drain(s: &Settings) -> Result<(), Error> {
    let Some(cmd) = &s.drain else { return Ok(()) };
    let fail = |what: String| Error::Drain {
        cmd: cmd.clone(),
        what,
    };
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            return if st.success() {
                Ok(())
            } else {
                Err(fail(format!("exited with {st}")))
            };
        }
        if t.elapsed() >= s.drain_timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("still running after {:?}", s.drain_timeout)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(lines: &str) -> UpdateConf {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(crate::agent::config::ADMIN);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, lines).unwrap();
        UpdateConf::load(dir.path()).unwrap()
    }

    #[test]
    fn settings_from_update_conf() {
        let s = Settings::from_conf(&conf(
            "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_REBOOT_WINDOW_START=Thu 23:00\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=1h30m\nLOCKSMITHD_GROUP=web\nLOCKSMITHD_DRAIN_COMMAND=true\nLOCKSMITHD_DRAIN_TIMEOUT=10s\n",
        ))
        .unwrap();
        assert_eq!(s.strategy, RebootStrategy::EtcdLock);
        assert_eq!(s.window.unwrap().length, 5400);
        assert_eq!(s.group.as_deref(), Some("web"));
        assert_eq!(s.drain_timeout, Duration::from_secs(10));
        assert!(matches!(
            Settings::from_conf(&conf("REBOOT_STRATEGY=fleetlock\n")),
            Err(Error::NoFleetLockUrl)
        ));
    }

    #[test]
    fn off_and_windows_decide_without_a_lock() {
        let s = Settings::from_conf(&conf("REBOOT_STRATEGY=off\n")).unwrap();
        assert_eq!(decide(&s, "m", 0).unwrap(), Step::Off);
        // 1970-01-01 00:00 was a Thursday; the window is Friday 02:00–03:00.
        let s = Settings::from_conf(&conf(
            "REBOOT_STRATEGY=reboot\nLOCKSMITHD_REBOOT_WINDOW_START=Fri 02:00\nLOCKSMITHD_REBOOT_WINDOW_LENGTH=1h\n",
        ))
        .unwrap();
        assert_eq!(decide(&s, "m", 3600).unwrap(), Step::OutsideWindow);
        assert_eq!(
            decide(&s, "m", 86_400 + 2 * 3600 + 60).unwrap(),
            Step::Reboot
        );
    }

    #[test]
    fn best_effort_without_etcd_reboots() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Settings::from_conf(&conf(&format!(
            "REBOOT_STRATEGY=best-effort\nLOCKSMITHD_ENDPOINT=http://127.0.0.1:{port}\n"
        )))
        .unwrap();
        assert_eq!(decide(&s, "m", 0).unwrap(), Step::Reboot);
        // etcd-lock with no etcd is an error, not a reboot.
        let s = Settings {
            strategy: RebootStrategy::EtcdLock,
            ..s
        };
        assert!(decide(&s, "m", 0).is_err());
    }

    #[test]
    fn drain_success_failure_and_timeout() {
        let mut s = Settings::from_conf(&conf("REBOOT_STRATEGY=reboot\n")).unwrap();
        drain(&s).unwrap();
        s.drain = Some("exit 0".into());
        drain(&s).unwrap();
        s.drain = Some("exit 3".into());
        assert!(drain(&s).unwrap_err().to_string().contains("exit"));
        s.drain = Some("sleep 5".into());
        s.drain_timeout = Duration::from_millis(200);
        let t = Instant::now();
        assert!(drain(&s).unwrap_err().to_string().contains("still running"));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
