//! `update.conf`: `/usr/share/coreos/update.conf` (the image's defaults), then
//! `/etc/coreos/update.conf` (the admin's), both `KEY=value` lines as on CoreOS; later files win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULTS: &str = "usr/share/coreos/update.conf";
pub const ADMIN: &str = "etc/coreos/update.conf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {text:?} is not KEY=value")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}: REBOOT_STRATEGY={value:?} is not one of best-effort, etcd-lock, reboot, off, fleetlock")]
    Strategy { path: PathBuf, value: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RebootStrategy {
    #[default]
    BestEffort,
    EtcdLock,
    Reboot,
    Off,
    /// Ferrocore: take a FleetLock slot (LOCKSMITHD_FLEETLOCK_URL) before rebooting.
    FleetLock,
}

impl RebootStrategy {
    pub fn parse(s: &str) -> Option<RebootStrategy> {
        Some(match s {
            "best-effort" => RebootStrategy::BestEffort,
            "etcd-lock" => RebootStrategy::EtcdLock,
            "reboot" => RebootStrategy::Reboot,
            "off" => RebootStrategy::Off,
            "fleetlock" => RebootStrategy::FleetLock,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RebootStrategy::BestEffort => "best-effort",
            RebootStrategy::EtcdLock => "etcd-lock",
            RebootStrategy::Reboot => "reboot",
            RebootStrategy::Off => "off",
            RebootStrategy::FleetLock => "fleetlock",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpdateConf {
    pub group: String,
    /// The Omaha endpoint, e.g. `http://10.0.2.2:8095/v1/update/`.
    pub server: Option<String>,
    pub reboot_strategy: RebootStrategy,
    /// Every key seen (locksmith's LOCKSMITHD_* among them).
    pub raw: BTreeMap<String, String>,
}

/// `KEY=value`, `KEY="value"`, `KEY='value'`; `#` comments and blank lines skipped.
pub fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .filter(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .ok_or_else(|| Error::Syntax {
                path: path.into(),
                line: i + 1,
                text: line.into(),
            })?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

impl UpdateConf {
    /// Reads both files under `root` (`/` on a machine); a missing file is skipped.
    pub fn load(root: &Path) -> Result<UpdateConf, Error> {
        let mut raw = BTreeMap::new();
        let mut strategy_from = root.join(ADMIN);
        for rel in [DEFAULTS, ADMIN] {
            let path = root.join(rel);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let vars = parse(&text, &path)?;
                    if vars.contains_key("REBOOT_STRATEGY") {
                        strategy_from = path.clone();
                    }
                    raw.extend(vars);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        let reboot_strategy = match raw.get("REBOOT_STRATEGY") {
            None => RebootStrategy::default(),
            Some(v) => RebootStrategy::parse(v).ok_or_else(|| Error::Strategy {
                path: strategy_from,
                value: v.clone(),
            })?,
        };
        Ok(UpdateConf {
            group: raw.get("GROUP").cloned().unwrap_or_else(|| "stable".into()),
            server: raw.get("SERVER").cloned().filter(|s| !s.is_empty()),
            reboot_strategy,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_file_overrides_defaults() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        assert_eq!(UpdateConf::load(root.path()).unwrap().group, "stable");
        write(
            DEFAULTS,
            "# defaults\nGROUP=stable\nSERVER=http://a/v1/update/\nREBOOT_STRATEGY=best-effort\n",
        );
        write(
            ADMIN,
            "GROUP=\"beta\"\n\nREBOOT_STRATEGY='off'\nLOCKSMITHD_REBOOT_WINDOW_START=Thu 23:00\n",
        );
        let c = UpdateConf::load(root.path()).unwrap();
        assert_eq!(c.group, "beta");
        assert_eq!(c.server.as_deref(), Some("http://a/v1/update/"));
        assert_eq!(c.reboot_strategy, RebootStrategy::Off);
        assert_eq!(c.raw["LOCKSMITHD_REBOOT_WINDOW_START"], "Thu 23:00");

        write(ADMIN, "REBOOT_STRATEGY=sometimes\n");
        let e = UpdateConf::load(root.path()).unwrap_err().to_string();
        assert!(
            e.contains("etc/coreos/update.conf") && e.contains("sometimes"),
            "{e}"
        );
        write(ADMIN, "GROUP beta\n");
        let e = UpdateConf::load(root.path()).unwrap_err().to_string();
        assert!(e.contains(":1:"), "{e}");
    }
}
