//! One update cycle, as update_engine runs it: ask the Omaha server, download the offered payload
//! with resume, verify and install it into the inactive slot, and report each step back. The same
//! install path serves offline payload directories (`-apply_payload`).

use super::config::UpdateConf;
use super::download;
use super::slot_writer::{self, Phase};
use super::status::{Operation, Status};
use crate::omaha::{self, EventResult, EventType};
use gptprio::Slot;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const APP_ID: &str = crate::server::policy::COREOS_APP_ID;
pub const KEYS_DIR: &str = "usr/share/ferrocore/update-keys";
pub const STATE_DIR: &str = "var/lib/update_engine";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] super::config::Error),
    #[error("no SERVER in update.conf (/usr/share/coreos/update.conf or /etc/coreos/update.conf)")]
    NoServer,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {key}=")]
    Missing { path: PathBuf, key: &'static str },
    #[error("asking {url}: {}", crate::http_error::chain(source))]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {source}")]
    Omaha { url: String, source: omaha::Error },
    #[error("{url}: the server says {status} for this machine")]
    Refused { url: String, status: String },
    #[error("downloading the payload: {0}")]
    Download(#[from] download::Error),
    #[error(transparent)]
    Payload(#[from] crate::payload::Error),
    #[error(transparent)]
    Install(#[from] slot_writer::Error),
    #[error(transparent)]
    Slot(#[from] gptprio::Error),
    #[error("an update to {0} is installed and waits for a reboot")]
    NeedReboot(String),
}

/// What a check ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NoUpdate,
    Installed { version: String },
}

/// Written after an install, read after the next boot to report how it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Pending {
    version: String,
    previous_version: String,
    boot_id: String,
}

pub struct Agent {
    /// `/` on a machine; a directory tree in tests.
    pub root: PathBuf,
    /// The disk holding USR-A/USR-B and the ESP.
    pub disk: PathBuf,
    pub status: Arc<Mutex<Status>>,
    client: reqwest::blocking::Client,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

impl Agent {
    pub fn new(root: &Path, disk: &Path) -> Agent {
        Agent {
            root: root.into(),
            disk: disk.into(),
            status: Arc::default(),
            client: reqwest::blocking::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client with rustls"),
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// `VERSION_ID` from `/usr/lib/os-release`.
    pub fn running_version(&self) -> Result<String, Error> {
        let path = self.root.join("usr/lib/os-release");
        let text = read(&path)?;
        let vars = super::config::parse(&text, &path)?;
        vars.get("VERSION_ID").cloned().ok_or(Error::Missing {
            path,
            key: "VERSION_ID",
        })
    }

    fn machine_id(&self) -> Result<String, Error> {
        Ok(read(&self.root.join("etc/machine-id"))?.trim().to_string())
    }

    fn boot_id(&self) -> String {
        read(&self.root.join("proc/sys/kernel/random/boot_id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The running slot: `ferrocore.slot=` on the kernel command line, else the one the boot
    /// loader's rule picks now.
    pub fn booted_slot(&self) -> Result<Slot, Error> {
        let from_cmdline = read(&self.root.join("proc/cmdline")).ok().and_then(|c| {
            c.split_whitespace()
                .find_map(|w| w.strip_prefix("ferrocore.slot="))
                .and_then(Slot::from_name)
        });
        if let Some(s) = from_cmdline {
            return Ok(s);
        }
        let d = gptprio::Disk::open(&self.disk, false)?;
        Ok(gptprio::choose_next(d.slot(Slot::A)?, d.slot(Slot::B)?).unwrap_or(Slot::A))
    }

    fn trusted(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, Error> {
        Ok(crate::payload::keys::load_trusted(
            &self.root.join(KEYS_DIR),
        )?)
    }

    fn app(&self, conf: &UpdateConf) -> Result<omaha::AppRequest, Error> {
        Ok(omaha::AppRequest {
            app_id: APP_ID.into(),
            version: self.running_version()?,
            track: conf.group.clone(),
            machine_id: Some(self.machine_id()?),
            boot_id: Some(self.boot_id()).filter(|b| !b.is_empty()),
            ..Default::default()
        })
    }

    fn post(&self, url: &str, req: &omaha::Request) -> Result<omaha::Response, Error> {
        let xml = req.to_xml().map_err(|source| Error::Omaha {
            url: url.into(),
            source,
        })?;
        let http = |source| Error::Http {
            url: url.into(),
            source,
        };
        let resp = self
            .client
            .post(url)
            .header("content-type", "text/xml")
            .body(xml)
            .send()
            .map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.text().map_err(http)?;
        if status != 200 {
            return Err(Error::Status {
                url: url.into(),
                status,
                body: body.trim().into(),
            });
        }
        omaha::Response::parse(&body).map_err(|source| Error::Omaha {
            url: url.into(),
            source,
        })
    }

    /// Sends one event; failures to report are logged, not fatal. Returns whether the server
    /// took it.
    fn report(&self, conf: &UpdateConf, ev: omaha::Event) -> bool {
        let Some(url) = &conf.server else {
            return false;
        };
        let sent = self.app(conf).and_then(|mut app| {
            app.events.push(ev.clone());
            self.post(url, &omaha::Request::new(vec![app]))
        });
        match sent {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("reporting event {ev:?} to {url}: {e}");
                false
            }
        }
    }

    fn rolled_back_event(version: &str, reason: &str) -> omaha::Event {
        omaha::Event {
            previous_version: Some(version.into()),
            error_code: Some(reason.into()),
            ..omaha::Event::new(EventType::RolledBack, EventResult::Error)
        }
    }

    /// Reports a rollback made by the health checks (`ferro-health`); whether the server took it.
    pub fn report_rollback(&self, r: &super::verdict::Rollback) -> bool {
        match UpdateConf::load(&self.root) {
            Ok(conf) => self.report(
                &conf,
                Self::rolled_back_event(
                    &r.version,
                    &format!(
                        "rolled back from {} ({}) to {}: {}",
                        r.version, r.from_slot, r.to_slot, r.reason
                    ),
                ),
            ),
            Err(e) => {
                tracing::warn!("reporting the rollback: {e}");
                false
            }
        }
    }

    fn error_event(e: &Error) -> omaha::Event {
        omaha::Event {
            error_code: Some(e.to_string()),
            ..omaha::Event::new(EventType::UpdateComplete, EventResult::Error)
        }
    }

    /// After a boot: if an install is pending from an earlier boot, tell the server whether the
    /// new version runs (UpdateComplete/SuccessReboot, once its slot is marked successful) or the
    /// machine is back on the old one (RolledBack: after a failed health check, with the checks'
    /// output, unless that was reported before the reboot; or because the new slot never finished
    /// booting and GRUB fell back, in which case the new slot is marked failed here).
    pub fn report_boot_outcome(&self) -> Result<(), Error> {
        let path = self.state_dir().join("pending.json");
        let rollback = super::verdict::Rollback::load(&self.root);
        let pending = std::fs::read_to_string(&path)
            .ok()
            .map(|text| serde_json::from_str::<Pending>(&text));
        let p = match pending {
            None => {
                // A rollback without a pending install (e.g. the file was lost): report it alone.
                if let Some(r) = rollback {
                    if !r.reported {
                        self.report_rollback(&r);
                    }
                    let _ = std::fs::remove_file(super::verdict::Rollback::path(&self.root));
                }
                return Ok(());
            }
            Some(Err(_)) => {
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
            Some(Ok(p)) => p,
        };
        if p.boot_id == self.boot_id() {
            self.set(|s| {
                s.current_op = Operation::UpdatedNeedReboot;
                s.new_version = Some(p.version.clone());
            });
            return Ok(());
        }
        let conf = UpdateConf::load(&self.root)?;
        let running = self.running_version()?;
        if running == p.version {
            // The new version runs, but is it good? Until the health checks mark its slot
            // successful (ferro-health calls this again then), there is nothing to report.
            let slot = self.booted_slot()?;
            if !gptprio::Disk::open(&self.disk, false)?
                .slot(slot)?
                .successful
            {
                tracing::info!(
                    "running {running} on {slot}, not yet marked successful: reporting later"
                );
                return Ok(());
            }
            self.report(
                &conf,
                omaha::Event {
                    previous_version: Some(p.previous_version.clone()),
                    ..omaha::Event::new(EventType::UpdateComplete, EventResult::SuccessReboot)
                },
            );
        } else {
            match rollback.filter(|r| r.version == p.version) {
                Some(r) => {
                    tracing::warn!("the update to {} was rolled back: {}", p.version, r.reason);
                    if !r.reported {
                        self.report_rollback(&r);
                    }
                }
                None => {
                    let reason = self.fell_back(&p.version, &running)?;
                    tracing::warn!("{reason}");
                    self.report(&conf, Self::rolled_back_event(&p.version, &reason));
                }
            }
            let _ = std::fs::remove_file(super::verdict::Rollback::path(&self.root));
        }
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })
    }

    /// Running the old version with no rollback recorded: if the slot bits show that the new slot
    /// was tried and never became good (GRUB spent its tries), mark it failed; the reason to
    /// report either way.
    fn fell_back(&self, version: &str, running: &str) -> Result<String, Error> {
        let booted = self.booted_slot()?;
        let mut disk = gptprio::Disk::open(&self.disk, true)?;
        let (mine, other) = (disk.slot(booted)?, disk.slot(booted.other())?);
        if !gptprio::fell_back_from(mine, other) {
            return Ok(format!("rolled back from {version} to {running}"));
        }
        disk.mark_failed(booted.other())?;
        disk.write()?;
        Ok(format!(
            "{} with {version} never finished booting (its tries ran out without a healthy boot): marked failed, running {running} on {booted}",
            booted.other()
        ))
    }

    /// A whole update check. Errors are also reported to the server and kept in the status.
    pub fn check(&self) -> Result<Outcome, Error> {
        if let Some(v) = self
            .status()
            .new_version
            .filter(|_| self.status().current_op == Operation::UpdatedNeedReboot)
        {
            return Err(Error::NeedReboot(v));
        }
        let conf = UpdateConf::load(&self.root)?;
        let r = self.check_inner(&conf);
        self.finish(&conf, &r);
        r
    }

    fn finish(&self, conf: &UpdateConf, r: &Result<Outcome, Error>) {
        match r {
            Ok(Outcome::NoUpdate) => self.set(|s| {
                s.current_op = Operation::Idle;
                s.progress = 0.0;
                s.last_error = None;
            }),
            Ok(Outcome::Installed { version }) => self.set(|s| {
                s.current_op = Operation::UpdatedNeedReboot;
                s.progress = 1.0;
                s.new_version = Some(version.clone());
                s.last_error = None;
            }),
            Err(e) => {
                tracing::error!("update failed: {e}");
                self.set(|s| {
                    s.current_op = Operation::ReportingErrorEvent;
                    s.last_error = Some(e.to_string());
                });
                self.report(conf, Self::error_event(e));
                self.set(|s| {
                    s.current_op = Operation::Idle;
                    s.progress = 0.0;
                });
            }
        }
    }

    fn check_inner(&self, conf: &UpdateConf) -> Result<Outcome, Error> {
        let url = conf.server.clone().ok_or(Error::NoServer)?;
        self.set(|s| {
            s.current_op = Operation::CheckingForUpdate;
            s.progress = 0.0;
        });
        let mut app = self.app(conf)?;
        app.ping = Some(omaha::PingRequest {
            active: Some("1".into()),
            r: None,
        });
        app.update_check = Some(Default::default());
        let resp = self.post(&url, &omaha::Request::new(vec![app]))?;
        self.set(|s| s.last_checked_time = crate::server::state::now());
        let app = resp.apps.into_iter().next().ok_or_else(|| Error::Refused {
            url: url.clone(),
            status: "no app in the response".into(),
        })?;
        if app.status != "ok" {
            return Err(Error::Refused {
                url,
                status: app.status,
            });
        }
        let uc = app.update_check.ok_or_else(|| Error::Refused {
            url: url.clone(),
            status: "no updatecheck in the response".into(),
        })?;
        match uc.status.as_str() {
            "noupdate" => return Ok(Outcome::NoUpdate),
            "ok" => {}
            other => {
                return Err(Error::Refused {
                    url,
                    status: other.into(),
                })
            }
        }
        let (Some(urls), Some(manifest)) = (uc.urls, uc.manifest) else {
            return Err(Error::Refused {
                url,
                status: "ok without urls or manifest".into(),
            });
        };
        let base = urls
            .urls
            .first()
            .map(|u| u.codebase.clone())
            .ok_or_else(|| Error::Refused {
                url: url.clone(),
                status: "no url".into(),
            })?;
        let version = manifest.version.clone();
        let packages = manifest.packages.packages;
        let total: u64 = packages.iter().map(|p| p.size).sum();
        self.set(|s| {
            s.current_op = Operation::UpdateAvailable;
            s.new_version = Some(version.clone());
            s.new_size = total;
        });

        // Download everything into the staging directory.
        self.report(
            conf,
            omaha::Event::new(EventType::UpdateDownloadStarted, EventResult::Success),
        );
        self.set(|s| s.current_op = Operation::Downloading);
        let downloads = self.state_dir().join("download");
        // Partial downloads of versions no longer offered only take space.
        if let Ok(entries) = std::fs::read_dir(&downloads) {
            for e in entries.flatten() {
                if e.file_name() != version.as_str() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let staging = downloads.join(&version);
        std::fs::create_dir_all(&staging).map_err(|source| Error::Io {
            path: staging.clone(),
            source,
        })?;
        let mut done_before = 0u64;
        for p in &packages {
            if p.name.contains('/') || p.name.starts_with('.') {
                return Err(Error::Refused {
                    url,
                    status: format!("package name {:?}", p.name),
                });
            }
            let file_url = format!("{}{}", base, p.name);
            let f = download::fetch(
                &self.client,
                &file_url,
                &staging.join(&p.name),
                p.size,
                p.hash_sha256.as_deref(),
                &mut |got, _| {
                    self.set(|s| s.progress = (done_before + got) as f64 / total.max(1) as f64)
                },
            )?;
            tracing::info!(file = %p.name, transferred = f.transferred, resumed_from = f.resumed_from, "downloaded");
            done_before += p.size;
        }
        self.report(
            conf,
            omaha::Event::new(EventType::UpdateDownloadFinished, EventResult::Success),
        );
        // The signed manifest must be the release the server offered (install checks the
        // signature; this catches a server handing out the wrong files).
        let mpath = staging.join(crate::payload::MANIFEST);
        let staged: crate::payload::Manifest = std::fs::read(&mpath)
            .map_err(|source| Error::Io {
                path: mpath.clone(),
                source,
            })
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| Error::Payload(e.into())))?;
        if staged.release.version != version {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Refused {
                url,
                status: format!(
                    "offered {version} but its payload is {}",
                    staged.release.version
                ),
            });
        }
        let r = self.install(&staging, false);
        if let Err(Error::Install(slot_writer::Error::Payload(_))) = &r {
            // A payload that does not verify is useless: fetch it afresh next time.
            let _ = std::fs::remove_dir_all(&staging);
        }
        let m = r?;
        let _ = std::fs::remove_dir_all(&staging);
        self.report(
            conf,
            omaha::Event::new(EventType::UpdateComplete, EventResult::Success),
        );
        Ok(Outcome::Installed {
            version: m.release.version,
        })
    }

    /// Verifies and installs a payload directory into the inactive slot; records it as pending.
    pub fn install(
        &self,
        dir: &Path,
        allow_downgrade: bool,
    ) -> Result<crate::payload::Manifest, Error> {
        let running = self.running_version()?;
        let current = self.booted_slot()?;
        let trusted = self.trusted()?;
        let m = slot_writer::install(
            &self.disk,
            dir,
            &trusted,
            &running,
            allow_downgrade,
            current,
            &mut |phase, p| {
                self.set(|s| {
                    // As on CoreOS, writing the slot shows as DOWNLOADING (update_engine streams
                    // the download into the partition); the read-back and boot files as FINALIZING.
                    s.current_op = match phase {
                        Phase::Verifying => Operation::Verifying,
                        Phase::Writing => Operation::Downloading,
                        Phase::Finalizing => Operation::Finalizing,
                    };
                    if phase != Phase::Verifying {
                        s.progress = p;
                    }
                })
            },
        )?;
        let pending = Pending {
            version: m.release.version.clone(),
            previous_version: running,
            boot_id: self.boot_id(),
        };
        let dir = self.state_dir();
        let path = dir.join("pending.json");
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, serde_json::to_vec(&pending).expect("json")))
            .map_err(|source| Error::Io { path, source })?;
        Ok(m)
    }

    /// `-apply_payload DIR`: an offline payload, verified and installed like a download.
    pub fn apply_offline(&self, dir: &Path, allow_downgrade: bool) -> Result<Outcome, Error> {
        let conf = UpdateConf::load(&self.root)?;
        let r = self
            .install(dir, allow_downgrade)
            .map(|m| Outcome::Installed {
                version: m.release.version,
            });
        // Offline machines may have no server: report only when one is configured.
        self.finish(&conf, &r);
        r
    }
}
