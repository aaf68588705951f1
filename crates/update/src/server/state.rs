//! What the update server knows, kept in memory and written as one JSON file
//! (`<data-dir>/state.json`, replaced atomically) after every change.
//!
//! Channels point at a released version; groups (what clients send as Omaha `track`, i.e.
//! update.conf's GROUP) follow a channel with a rollout percentage and can be paused. The default
//! groups alpha, beta and stable follow the channels of the same names.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const CHANNELS: [&str; 3] = ["alpha", "beta", "stable"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a server state file: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no channel {0:?} (channels: alpha, beta, stable)")]
    NoChannel(String),
    #[error("no group {0:?}")]
    NoGroup(String),
    #[error("version {0} is not published")]
    NoRelease(String),
    #[error("rollout percentage {0} is not within 0–100")]
    Percent(u8),
    #[error(transparent)]
    Payload(#[from] crate::payload::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub version: String,
    pub build_id: String,
    pub files: Vec<FileInfo>,
    pub published_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub channel: String,
    /// Share of the group's machines offered the channel's version (by a hash of machine id).
    pub rollout_percent: u8,
    pub paused: bool,
    /// Why the group was paused, when the server did it by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
}

/// Instance status, from the events it reports (Nebraska's names).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Checked in; no update offered.
    Idle,
    UpdateGranted,
    Downloading,
    Downloaded,
    Installed,
    /// Rebooted into the new version and reported it.
    Complete,
    Error,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::UpdateGranted => "update-granted",
            Status::Downloading => "downloading",
            Status::Downloaded => "downloaded",
            Status::Installed => "installed",
            Status::Complete => "complete",
            Status::Error => "error",
            Status::RolledBack => "rolled-back",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub version: String,
    pub group: String,
    pub status: Status,
    /// Unix seconds.
    pub last_check: u64,
    /// The version last offered to it, which its events are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<String>,
    /// What its last error or rollback event said (a failed health check's output, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Per version: machines offered it and machines that failed with it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub granted: BTreeSet<String>,
    pub failed: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub channels: BTreeMap<String, Option<String>>,
    pub groups: BTreeMap<String, Group>,
    pub releases: BTreeMap<String, Release>,
    pub instances: BTreeMap<String, Instance>,
    #[serde(default)]
    pub outcomes: BTreeMap<String, Outcome>,
    /// FleetLock reboot slots: per group, the nodes holding one.
    #[serde(default)]
    pub fleetlock: BTreeMap<String, Vec<String>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            channels: CHANNELS.iter().map(|c| (c.to_string(), None)).collect(),
            groups: CHANNELS
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        Group {
                            channel: c.to_string(),
                            rollout_percent: 100,
                            paused: false,
                            pause_reason: None,
                        },
                    )
                })
                .collect(),
            releases: BTreeMap::new(),
            instances: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            fleetlock: BTreeMap::new(),
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("state.json")
    }

    pub fn payload_dir(data_dir: &Path, version: &str) -> PathBuf {
        data_dir.join("payloads").join(version)
    }

    /// The saved state, or a fresh one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<State, Error> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Writes a temporary file and renames it over the old one, so a crash leaves either.
    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let io = |source| Error::Io {
            path: tmp.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
    }

    /// Copies a payload directory into the data dir (after checking its manifest's signature
    /// with `trusted`, when given) and records its files; optionally points a channel at it.
    pub fn publish(
        &mut self,
        data_dir: &Path,
        src: &Path,
        trusted: Option<&[ed25519_dalek::VerifyingKey]>,
        channel: Option<&str>,
    ) -> Result<Release, Error> {
        if let Some(c) = channel {
            self.check_channel(c)?;
        }
        let manifest = match trusted {
            Some(keys) => crate::payload::verify(src, keys, "0", true)?,
            None => {
                let p = src.join(crate::payload::MANIFEST);
                let bytes = std::fs::read(&p).map_err(|source| Error::Io { path: p, source })?;
                serde_json::from_slice::<crate::payload::Manifest>(&bytes)
                    .map_err(crate::payload::Error::from)?
            }
        };
        let version = manifest.release.version.clone();
        version
            .parse::<crate::version::Version>()
            .map_err(crate::payload::Error::from)?;
        let dest = Self::payload_dir(data_dir, &version);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&dest).map_err(io(&dest))?;
        let mut names = vec![
            crate::payload::MANIFEST.to_string(),
            crate::payload::SIGNATURE.to_string(),
        ];
        names.extend(manifest.parts.iter().map(|p| p.file.clone()));
        let mut files = Vec::new();
        for name in names {
            let (from, to) = (src.join(&name), dest.join(&name));
            std::fs::copy(&from, &to).map_err(io(&from))?;
            let (size, sha256) = sha256_file(&to).map_err(io(&to))?;
            files.push(FileInfo { name, size, sha256 });
        }
        let release = Release {
            version: version.clone(),
            build_id: manifest.release.build_id.clone(),
            files,
            published_at: now(),
        };
        self.releases.insert(version.clone(), release.clone());
        if let Some(c) = channel {
            self.channels.insert(c.into(), Some(version));
        }
        Ok(release)
    }

    pub fn promote(&mut self, version: &str, channel: &str) -> Result<(), Error> {
        self.check_channel(channel)?;
        if !self.releases.contains_key(version) {
            return Err(Error::NoRelease(version.into()));
        }
        self.channels.insert(channel.into(), Some(version.into()));
        Ok(())
    }

    /// Creates the group if needed (following `channel`, default: a channel of its own name).
    pub fn set_group(
        &mut self,
        name: &str,
        channel: Option<&str>,
        percent: Option<u8>,
        paused: Option<bool>,
    ) -> Result<Group, Error> {
        if let Some(c) = channel {
            self.check_channel(c)?;
        }
        if let Some(p) = percent.filter(|p| *p > 100) {
            return Err(Error::Percent(p));
        }
        let g = match self.groups.get_mut(name) {
            Some(g) => g,
            None => {
                let channel = channel.ok_or_else(|| Error::NoGroup(name.into()))?;
                self.groups.entry(name.into()).or_insert(Group {
                    channel: channel.into(),
                    rollout_percent: 100,
                    paused: false,
                    pause_reason: None,
                })
            }
        };
        if let Some(c) = channel {
            g.channel = c.into();
        }
        if let Some(p) = percent {
            g.rollout_percent = p;
        }
        if let Some(p) = paused {
            g.paused = p;
            g.pause_reason = None;
        }
        Ok(g.clone())
    }

    fn check_channel(&self, c: &str) -> Result<(), Error> {
        if self.channels.contains_key(c) {
            Ok(())
        } else {
            Err(Error::NoChannel(c.into()))
        }
    }
}

/// Why a FleetLock slot was not given.
#[derive(Debug, PartialEq, Eq)]
pub struct LockBusy {
    pub holders: Vec<String>,
}

impl State {
    /// FleetLock pre-reboot: a slot for `node` in `group` if fewer than `max` are taken (a node
    /// that holds one already keeps it).
    pub fn fleetlock_take(&mut self, group: &str, node: &str, max: usize) -> Result<(), LockBusy> {
        let holders = self.fleetlock.entry(group.into()).or_default();
        if holders.iter().any(|h| h == node) {
            return Ok(());
        }
        if holders.len() >= max {
            return Err(LockBusy {
                holders: holders.clone(),
            });
        }
        holders.push(node.into());
        Ok(())
    }

    /// FleetLock steady-state: give back `node`'s slot, if it holds one.
    pub fn fleetlock_release(&mut self, group: &str, node: &str) {
        if let Some(h) = self.fleetlock.get_mut(group) {
            h.retain(|n| n != node);
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, hex::encode(h.finalize())))
}
