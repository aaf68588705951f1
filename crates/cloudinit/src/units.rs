//! Units, as coreos-cloudinit processes them: unit files and drop-ins written under
//! `/etc/systemd/{system,network}` (or `/run/…` for runtime units), masks as symlinks to
//! `/dev/null`, then `enable`, one daemon-reload, and the `command`s. Talking to systemd goes
//! through [`Systemd`] (D-Bus on a running system, see `systemd_bus`), so a target root that is not the running system records what would be run.

use crate::coreos::Unit;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub trait Systemd {
    fn daemon_reload(&self) -> Result<()>;
    fn enable(&self, unit: &str, runtime: bool) -> Result<()>;
    /// `start`, `restart`, … on a unit, without waiting for the job (as coreos-cloudinit does).
    fn command(&self, command: &str, unit: &str) -> Result<()>;
    /// Whether systemd has a unit file for this name.
    fn exists(&self, unit: &str) -> Result<bool>;
}

/// For a target root being prepared: remembers what would be run.
#[derive(Default)]
pub struct Recorder(pub std::cell::RefCell<Vec<String>>);

impl Systemd for Recorder {
    fn daemon_reload(&self) -> Result<()> {
        self.0.borrow_mut().push("daemon-reload".into());
        Ok(())
    }
    fn enable(&self, unit: &str, runtime: bool) -> Result<()> {
        let flag = if runtime { " --runtime" } else { "" };
        self.0.borrow_mut().push(format!("enable{flag} {unit}"));
        Ok(())
    }
    fn command(&self, command: &str, unit: &str) -> Result<()> {
        self.0.borrow_mut().push(format!("{command} {unit}"));
        Ok(())
    }
    fn exists(&self, _unit: &str) -> Result<bool> {
        Ok(true)
    }
}

/// Writes `text` at `abs` under `root` with mode 0644 (coreos-cloudinit's mode for units).
pub fn write(root: &Path, abs: &str, text: &str) -> Result<()> {
    let p = root.join(abs.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("absolute path has a parent"))?;
    std::fs::write(&p, text).with_context(|| format!("writing {abs}"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// `/etc/systemd/system/NAME`, `/run/systemd/network/NAME`, …
pub fn unit_path(u: &Unit) -> String {
    let base = if u.runtime { "/run" } else { "/etc" };
    let group = if u.is_network() { "network" } else { "system" };
    format!("{base}/systemd/{group}/{}", u.name)
}

fn mask(root: &Path, u: &Unit) -> Result<()> {
    let p = root.join(unit_path(u).trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("has parent"))?;
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::os::unix::fs::symlink("/dev/null", &p).with_context(|| format!("masking {}", u.name))
}

/// Like systemd's unmask: removes the runtime unit file only if it is empty or points at /dev/null.
fn unmask(root: &Path, u: &Unit) -> Result<bool> {
    let p: PathBuf = root.join(unit_path(u).trim_start_matches('/'));
    let null = std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null"));
    let empty = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0);
    if null || empty {
        std::fs::remove_file(&p)?;
        return Ok(true);
    }
    Ok(false)
}

/// Processes units in order; returns one line per action for the journal.
pub fn process(root: &Path, units: &[Unit], systemd: &dyn Systemd) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let mut reload = false;
    let mut networkd = false;
    let mut actions = Vec::new();
    for u in units {
        let path = unit_path(u);
        if let Some(content) = u.content.as_deref().filter(|c| !c.is_empty()) {
            write(root, &path, content)?;
            done.push(format!("wrote {path}"));
            reload = true;
        }
        for d in &u.drop_ins {
            if d.name.is_empty() || d.content.is_empty() {
                continue;
            }
            let p = format!("{path}.d/{}", d.name);
            write(root, &p, &d.content)?;
            done.push(format!("wrote {p}"));
            reload = true;
        }
        if u.mask {
            // Stop first: masking a unit whose start job is still queued in this boot
            // (locksmithd with reboot-strategy off) fails that job and leaves a failed unit.
            if u.command.as_deref() == Some("stop")
                && (!u.only_if_installed || systemd.exists(&u.name)?)
            {
                systemd
                    .command("stop", &u.name)
                    .with_context(|| format!("stop {}", u.name))?;
                done.push(format!("stop {}", u.name));
            }
            mask(root, u)?;
            done.push(format!("masked {}", u.name));
            reload = true;
        } else if u.runtime && unmask(root, u)? {
            done.push(format!("unmasked {}", u.name));
            reload = true;
        }
        if u.enable && !u.is_network() {
            systemd
                .enable(&u.name, u.runtime)
                .with_context(|| format!("enabling {}", u.name))?;
            done.push(format!("enabled {}", u.name));
        }
        if u.is_network() {
            networkd = true;
        } else if let Some(cmd) = u.command.as_deref().filter(|c| !(u.mask && *c == "stop")) {
            actions.push((cmd, u));
        }
    }
    if reload {
        systemd.daemon_reload().context("systemd daemon-reload")?;
    }
    if networkd {
        systemd.command("restart", "systemd-networkd.service")?;
        done.push("restart systemd-networkd.service".into());
    }
    for (cmd, u) in actions {
        if u.only_if_installed && !systemd.exists(&u.name)? {
            done.push(format!("{} is not installed: no {cmd}", u.name));
            continue;
        }
        systemd
            .command(cmd, &u.name)
            .with_context(|| format!("{cmd} {}", u.name))?;
        done.push(format!("{cmd} {}", u.name));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserData;

    fn units(text: &str) -> Vec<Unit> {
        match UserData::parse(text).unwrap().0 {
            UserData::CloudConfig(c) => c.coreos.expect("coreos section").units,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_dropins_mask_enable_command() {
        let root = tempfile::tempdir().unwrap();
        let u = units(
            "#cloud-config\ncoreos:\n  units:\n    - name: hello.service\n      enable: true\n      command: start\n      content: |\n        [Service]\n        ExecStart=/bin/true\n    - name: docker.service\n      drop-ins:\n        - name: 50-opts.conf\n          content: '[Service]'\n        - name: 60-empty.conf\n    - name: rt.service\n      runtime: true\n      content: x\n    - name: apt-daily.timer\n      mask: true\n    - name: 10-eth.network\n      content: '[Match]'\n      enable: true\n      command: start\n",
        );
        let rec = Recorder::default();
        process(root.path(), &u, &rec).unwrap();
        let p = |s: &str| root.path().join(s);
        let hello = p("etc/systemd/system/hello.service");
        assert!(std::fs::read_to_string(&hello)
            .unwrap()
            .contains("ExecStart=/bin/true"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&hello).unwrap().mode() & 0o777, 0o644);
        assert_eq!(
            std::fs::read_to_string(p("etc/systemd/system/docker.service.d/50-opts.conf")).unwrap(),
            "[Service]"
        );
        assert!(!p("etc/systemd/system/docker.service.d/60-empty.conf").exists());
        assert!(p("run/systemd/system/rt.service").exists());
        assert_eq!(
            std::fs::read_link(p("etc/systemd/system/apt-daily.timer")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(p("etc/systemd/network/10-eth.network").exists());
        assert_eq!(
            rec.0.borrow().as_slice(),
            [
                "enable hello.service",
                "daemon-reload",
                "restart systemd-networkd.service",
                "start hello.service"
            ]
        );
    }

    #[test]
    fn runtime_units_are_unmasked_only_when_masked() {
        let root = tempfile::tempdir().unwrap();
        let u = units("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      mask: true\n      runtime: true\n");
        process(root.path(), &u, &Recorder::default()).unwrap();
        let a = root.path().join("run/systemd/system/a.service");
        assert!(std::fs::read_link(&a).is_ok());
        let u =
            units("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      runtime: true\n");
        process(root.path(), &u, &Recorder::default()).unwrap();
        assert!(std::fs::symlink_metadata(&a).is_err());
        std::fs::write(&a, "[Unit]\n").unwrap();
        process(root.path(), &u, &Recorder::default()).unwrap();
        assert!(a.exists(), "a real unit file is left alone");
    }
}
