//! What the `coreos:` service sections become, exactly as coreos-cloudinit writes them:
//! `etcd2`/`fleet`/`locksmith` → runtime drop-ins `20-cloudinit.conf` of `Environment="VAR=value"`
//! lines (in coreos-cloudinit's field order, zero values left out); `flannel` →
//! `/run/flannel/options.env`; `update` → `/etc/coreos/update.conf` plus a restart of
//! locksmithd/update-engine (locksmithd masked and stopped for `off`); `oem` → `/etc/oem-release`.

use crate::coreos::{env_value, Coreos, DropIn, Settings, Unit};
use crate::schema::{self, Struct};
use std::path::Path;

/// A file to write: absolute path and content (mode 0644, owner root).
pub type File = (String, String);

/// `VAR=value` for each set, non-zero key, in the schema's order.
fn env_vars(settings: &Settings, schema: &Struct) -> Vec<String> {
    schema
        .fields
        .iter()
        .filter_map(|f| {
            let v = env_value(settings.get(f.key)?)?;
            Some(format!("{}={v}", f.env))
        })
        .collect()
}

fn dropin_unit(name: &str, settings: &Option<Settings>, schema: &Struct) -> Option<Unit> {
    let vars = env_vars(settings.as_ref()?, schema);
    let content: String = if vars.is_empty() {
        String::new()
    } else {
        let lines: String = vars
            .iter()
            .map(|v| format!("Environment=\"{v}\"\n"))
            .collect();
        format!("[Service]\n{lines}")
    };
    Some(Unit {
        name: name.into(),
        runtime: true,
        drop_ins: vec![DropIn {
            name: "20-cloudinit.conf".into(),
            content,
        }],
        ..Unit::default()
    })
}

/// Units the service sections generate, after the user's own units.
pub fn units(c: &Coreos) -> Vec<Unit> {
    let mut units: Vec<Unit> = [
        dropin_unit("etcd2.service", &c.etcd2, &schema::ETCD2),
        dropin_unit("fleet.service", &c.fleet, &schema::FLEET),
        dropin_unit("locksmithd.service", &c.locksmith, &schema::LOCKSMITH),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(u) = &c.update {
        if let Some(strategy) = &u.reboot_strategy {
            let off = strategy == "off";
            units.push(Unit {
                name: "locksmithd.service".into(),
                command: Some(if off { "stop" } else { "restart" }.into()),
                mask: off,
                runtime: true,
                only_if_installed: true,
                ..Unit::default()
            });
        }
        if u.group.is_some() || u.server.is_some() {
            units.push(Unit {
                name: "update-engine.service".into(),
                command: Some("restart".into()),
                only_if_installed: true,
                ..Unit::default()
            });
        }
    }
    units
}

/// Files the sections generate. `update.conf` starts from the target's current one (or the
/// image default under /usr/share/coreos), replacing our keys in place and appending the rest.
pub fn files(root: &Path, c: &Coreos) -> Vec<File> {
    let mut files = Vec::new();
    if let Some(o) = c.oem.as_ref().filter(|o| o.id.is_some()) {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        files.push((
            "/etc/oem-release".into(),
            format!(
                "ID={}\nVERSION_ID={}\nNAME={:?}\nHOME_URL={:?}\nBUG_REPORT_URL={:?}\n",
                s(&o.id),
                s(&o.version_id),
                s(&o.name),
                s(&o.home_url),
                s(&o.bug_report_url)
            ),
        ));
    }
    if let Some(u) = &c.update {
        let mut subs: Vec<(&str, &str)> = [
            ("GROUP", &u.group),
            ("REBOOT_STRATEGY", &u.reboot_strategy),
            ("SERVER", &u.server),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
        if !subs.is_empty() {
            let existing = ["etc/coreos/update.conf", "usr/share/coreos/update.conf"]
                .iter()
                .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
                .unwrap_or_default();
            let mut out = String::new();
            for line in existing.lines() {
                match subs.iter().position(|(k, _)| line.starts_with(k)) {
                    Some(i) => {
                        let (k, v) = subs.remove(i);
                        out.push_str(&format!("{k}={v}\n"));
                    }
                    None => out.push_str(&format!("{line}\n")),
                }
            }
            for (k, v) in subs {
                out.push_str(&format!("{k}={v}\n"));
            }
            files.push(("/etc/coreos/update.conf".into(), out));
        }
    }
    if let Some(f) = &c.flannel {
        let vars = env_vars(f, &schema::FLANNEL);
        if !vars.is_empty() {
            files.push(("/run/flannel/options.env".into(), vars.join("\n")));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{process, Recorder};
    use crate::UserData;

    fn coreos(text: &str) -> Coreos {
        match UserData::parse(text).unwrap().0 {
            UserData::CloudConfig(c) => c.coreos.expect("coreos section"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_dropins_are_coreos_cloudinits() {
        let root = tempfile::tempdir().unwrap();
        let c = coreos(
            "#cloud-config\ncoreos:\n  etcd2:\n    name: node1\n    advertise-client-urls: http://10.0.0.1:2379\n    heartbeat-interval: 100\n    debug: false\n    election_timeout: 0\n    discovery: ''\n  fleet:\n    metadata: region=us\n    engine-reconcile-interval: 2.0\n    verify_units: true\n  flannel:\n    interface: eth1\n    etcd_prefix: /coreos.com/network\n  locksmith:\n    window-start: Thu 04:00\n    window-length: 1h\n",
        );
        let rec = Recorder::default();
        process(root.path(), &units(&c), &rec).unwrap();
        for (path, text) in files(root.path(), &c) {
            crate::units::write(root.path(), &path, &text).unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            read("run/systemd/system/etcd2.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.1:2379\"\nEnvironment=\"ETCD_HEARTBEAT_INTERVAL=100\"\nEnvironment=\"ETCD_NAME=node1\"\n"
        );
        assert_eq!(
            read("run/systemd/system/fleet.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"FLEET_ENGINE_RECONCILE_INTERVAL=2\"\nEnvironment=\"FLEET_METADATA=region=us\"\nEnvironment=\"FLEET_VERIFY_UNITS=true\"\n"
        );
        assert_eq!(
            read("run/flannel/options.env"),
            "FLANNELD_ETCD_PREFIX=/coreos.com/network\nFLANNELD_IFACE=eth1"
        );
        assert_eq!(
            read("run/systemd/system/locksmithd.service.d/20-cloudinit.conf"),
            "[Service]\nEnvironment=\"LOCKSMITHD_REBOOT_WINDOW_START=Thu 04:00\"\nEnvironment=\"LOCKSMITHD_REBOOT_WINDOW_LENGTH=1h\"\n"
        );
        assert_eq!(rec.0.borrow().as_slice(), ["daemon-reload"]);
    }

    #[test]
    fn update_conf_and_its_units() {
        let root = tempfile::tempdir().unwrap();
        crate::units::write(
            root.path(),
            "/usr/share/coreos/update.conf",
            "GROUP=stable\nSERVER=old\nX=1\n",
        )
        .unwrap();
        let c = coreos("#cloud-config\ncoreos:\n  update:\n    reboot-strategy: off\n    server: https://u.example/v1/update/\n");
        assert_eq!(
            files(root.path(), &c),
            [(
                "/etc/coreos/update.conf".to_string(),
                "GROUP=stable\nSERVER=https://u.example/v1/update/\nX=1\nREBOOT_STRATEGY=off\n"
                    .to_string()
            )]
        );
        let rec = Recorder::default();
        process(root.path(), &units(&c), &rec).unwrap();
        assert_eq!(
            std::fs::read_link(root.path().join("run/systemd/system/locksmithd.service")).unwrap(),
            Path::new("/dev/null")
        );
        assert_eq!(
            rec.0.borrow().as_slice(),
            // Stopped before it is masked, so its queued start job is cancelled, not failed.
            [
                "stop locksmithd.service",
                "daemon-reload",
                "restart update-engine.service"
            ]
        );
        let c = coreos("#cloud-config\ncoreos:\n  update:\n    reboot-strategy: etcd-lock\n");
        let rec = Recorder::default();
        process(root.path(), &units(&c), &rec).unwrap();
        assert!(
            std::fs::symlink_metadata(root.path().join("run/systemd/system/locksmithd.service"))
                .is_err(),
            "a strategy other than off unmasks locksmithd"
        );
        assert_eq!(
            rec.0.borrow().as_slice(),
            ["daemon-reload", "restart locksmithd.service"]
        );
    }

    #[test]
    fn oem_release() {
        let root = tempfile::tempdir().unwrap();
        let c = coreos("#cloud-config\ncoreos:\n  oem:\n    id: qemu\n    name: QEMU\n    version-id: 0.0.1\n    home-url: https://example.org/\n");
        assert_eq!(
            files(root.path(), &c),
            [(
                "/etc/oem-release".to_string(),
                "ID=qemu\nVERSION_ID=0.0.1\nNAME=\"QEMU\"\nHOME_URL=\"https://example.org/\"\nBUG_REPORT_URL=\"\"\n".to_string()
            )]
        );
    }
}
