//! Applying the `coreos:` section: environment drop-ins for etcd2/fleet/locksmith, flannel's
//! options file, `/etc/coreos/update.conf`, and `units` (content, drop-ins, mask, enable, command).
//! Talking to systemd goes through [`Systemd`], so a target root that is not the running system
//! records what would be run instead.

use crate::coreos::{env_name, scalar, Coreos, Settings};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

pub trait Systemd {
    fn daemon_reload(&self) -> Result<()>;
    fn enable(&self, unit: &str) -> Result<()>;
    /// `start`, `restart`, … on a unit.
    fn command(&self, command: &str, unit: &str) -> Result<()>;
}

/// The running system's systemd, through `systemctl`.
pub struct Systemctl;

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Systemd for Systemctl {
    fn daemon_reload(&self) -> Result<()> {
        systemctl(&["daemon-reload"])
    }
    fn enable(&self, unit: &str) -> Result<()> {
        systemctl(&["enable", unit])
    }
    fn command(&self, command: &str, unit: &str) -> Result<()> {
        systemctl(&[command, unit])
    }
}

/// For a target root being prepared: remembers what would be run.
#[derive(Default)]
pub struct Recorder(pub std::cell::RefCell<Vec<String>>);

impl Systemd for Recorder {
    fn daemon_reload(&self) -> Result<()> {
        self.0.borrow_mut().push("daemon-reload".into());
        Ok(())
    }
    fn enable(&self, unit: &str) -> Result<()> {
        self.0.borrow_mut().push(format!("enable {unit}"));
        Ok(())
    }
    fn command(&self, command: &str, unit: &str) -> Result<()> {
        self.0.borrow_mut().push(format!("{command} {unit}"));
        Ok(())
    }
}

fn write(root: &Path, abs: &str, text: &str) -> Result<()> {
    let p = root.join(abs.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("absolute path has a parent"))?;
    std::fs::write(&p, text).with_context(|| format!("writing {abs}"))
}

fn environment_dropin(settings: &Settings, prefix: &str) -> String {
    let mut s = String::from("[Service]\n");
    for (k, v) in settings {
        let value = scalar(v).unwrap_or_default();
        s.push_str(&format!(
            "Environment=\"{}={}\"\n",
            env_name(prefix, k),
            value
        ));
    }
    s
}

/// `/etc/coreos/update.conf`: our keys replaced or added, other lines kept.
fn update_conf(existing: &str, set: &[(&str, &str)]) -> String {
    let mut out: Vec<String> = existing
        .lines()
        .filter(|l| {
            !set.iter()
                .any(|(k, _)| l.trim_start().starts_with(&format!("{k}=")))
        })
        .map(str::to_string)
        .collect();
    out.extend(set.iter().map(|(k, v)| format!("{k}={v}")));
    out.join("\n") + "\n"
}

/// Applies `coreos:` to `root`; returns one line per action.
pub fn apply(root: &Path, c: &Coreos, systemd: &dyn Systemd) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let mut reload = false;
    for (settings, unit, prefix) in [
        (&c.etcd2, "etcd2.service", "ETCD"),
        (&c.fleet, "fleet.service", "FLEET"),
        (&c.locksmith, "locksmithd.service", "LOCKSMITHD"),
    ] {
        if let Some(s) = settings {
            let path = format!("/run/systemd/system/{unit}.d/20-cloudinit.conf");
            write(root, &path, &environment_dropin(s, prefix))?;
            done.push(format!("wrote {path}"));
            reload = true;
        }
    }
    if let Some(s) = &c.flannel {
        let text: String = s
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}\n",
                    env_name("FLANNELD", k),
                    scalar(v).unwrap_or_default()
                )
            })
            .collect();
        write(root, "/run/flannel/options.env", &text)?;
        done.push("wrote /run/flannel/options.env".into());
    }
    if let Some(u) = &c.update {
        let mut set = Vec::new();
        if let Some(g) = &u.group {
            set.push(("GROUP", g.as_str()));
        }
        if let Some(s) = &u.server {
            set.push(("SERVER", s.as_str()));
        }
        if let Some(r) = &u.reboot_strategy {
            set.push(("REBOOT_STRATEGY", r.as_str()));
        }
        let path = root.join("etc/coreos/update.conf");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        write(
            root,
            "/etc/coreos/update.conf",
            &update_conf(&existing, &set),
        )?;
        done.push("wrote /etc/coreos/update.conf".into());
    }
    for u in &c.units {
        let dir = if u.runtime {
            "/run/systemd/system"
        } else {
            "/etc/systemd/system"
        };
        let unit_path = format!("{dir}/{}", u.name);
        if u.mask {
            let p = root.join(unit_path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("has parent"))?;
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink("/dev/null", &p)
                .with_context(|| format!("masking {}", u.name))?;
            done.push(format!("masked {}", u.name));
            reload = true;
        } else if let Some(content) = &u.content {
            write(root, &unit_path, content)?;
            done.push(format!("wrote {unit_path}"));
            reload = true;
        }
        for d in &u.drop_ins {
            let path = format!("{dir}/{}.d/{}", u.name, d.name);
            write(root, &path, &d.content)?;
            done.push(format!("wrote {path}"));
            reload = true;
        }
    }
    if reload {
        systemd.daemon_reload()?;
    }
    for u in &c.units {
        if u.enable && !u.mask {
            systemd.enable(&u.name)?;
            done.push(format!("enabled {}", u.name));
        }
    }
    for u in &c.units {
        if let Some(cmd) = &u.command {
            systemd
                .command(cmd, &u.name)
                .with_context(|| format!("{cmd} {}", u.name))?;
            done.push(format!("{cmd} {}", u.name));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserData;

    fn coreos(text: &str) -> Coreos {
        let (ud, report) = UserData::parse(text).unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        match ud {
            UserData::CloudConfig(c) => c.coreos.expect("coreos section"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn etcd2_fleet_flannel_locksmith_files_are_coreos_cloudinits() {
        let root = tempfile::tempdir().unwrap();
        let c = coreos(
            "#cloud-config\ncoreos:\n  etcd2:\n    name: node1\n    advertise-client-urls: http://$private_ipv4:2379\n    heartbeat-interval: 100\n  fleet:\n    metadata: region=us\n  flannel:\n    interface: eth1\n  locksmith:\n    window-start: Thu 04:00\n",
        );
        let rec = Recorder::default();
        apply(root.path(), &c, &rec).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            read("run/systemd/system/etcd2.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379\"\nEnvironment=\"ETCD_HEARTBEAT_INTERVAL=100\"\nEnvironment=\"ETCD_NAME=node1\"\n"
        );
        assert_eq!(
            read("run/systemd/system/fleet.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"FLEET_METADATA=region=us\"\n"
        );
        assert_eq!(read("run/flannel/options.env"), "FLANNELD_INTERFACE=eth1\n");
        assert_eq!(
            read("run/systemd/system/locksmithd.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"LOCKSMITHD_WINDOW_START=Thu 04:00\"\n"
        );
        assert_eq!(rec.0.borrow().as_slice(), ["daemon-reload"]);
    }

    #[test]
    fn update_conf_keeps_other_lines() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/etc/coreos/update.conf",
            "GROUP=stable\nSERVER=old\nX=1\n",
        )
        .unwrap();
        let c = coreos("#cloud-config\ncoreos:\n  update:\n    reboot-strategy: etcd-lock\n    server: https://u.example/v1/update/\n");
        apply(root.path(), &c, &Recorder::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/coreos/update.conf")).unwrap(),
            "GROUP=stable\nX=1\nSERVER=https://u.example/v1/update/\nREBOOT_STRATEGY=etcd-lock\n"
        );
    }

    #[test]
    fn units_content_dropins_mask_enable_command() {
        let root = tempfile::tempdir().unwrap();
        let c = coreos(
            "#cloud-config\ncoreos:\n  units:\n    - name: hello.service\n      enable: true\n      command: start\n      content: |\n        [Service]\n        ExecStart=/bin/true\n    - name: docker.service\n      drop-ins:\n        - name: 50-opts.conf\n          content: '[Service]'\n    - name: rt.service\n      runtime: true\n      content: x\n    - name: apt-daily.timer\n      mask: true\n",
        );
        let rec = Recorder::default();
        apply(root.path(), &c, &rec).unwrap();
        let p = |s: &str| root.path().join(s);
        assert!(
            std::fs::read_to_string(p("etc/systemd/system/hello.service"))
                .unwrap()
                .contains("ExecStart=/bin/true")
        );
        assert_eq!(
            std::fs::read_to_string(p("etc/systemd/system/docker.service.d/50-opts.conf")).unwrap(),
            "[Service]"
        );
        assert!(p("run/systemd/system/rt.service").exists());
        assert_eq!(
            std::fs::read_link(p("etc/systemd/system/apt-daily.timer")).unwrap(),
            Path::new("/dev/null")
        );
        assert_eq!(
            rec.0.borrow().as_slice(),
            [
                "daemon-reload",
                "enable hello.service",
                "start hello.service"
            ]
        );
    }

    #[test]
    fn invalid_values_are_reported_per_key() {
        let (_, report) = UserData::parse(
            "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: sometimes\n  units:\n    - name: hello\n      command: launch\n  etcd2:\n    name: [a, b]\n  bogus: 1\n",
        )
        .unwrap();
        assert_eq!(report.errors.len(), 4, "{report:?}");
        assert!(report
            .errors
            .iter()
            .any(|e| e.contains("reboot-strategy") && e.contains("sometimes")));
        assert!(report.warnings.iter().any(|w| w.contains("coreos.bogus")));
    }
}
