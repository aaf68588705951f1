//! The running system's systemd over D-Bus (`org.freedesktop.systemd1`), as coreos-cloudinit
//! talks to it — no `systemctl` processes. Only the Manager calls cloud-config needs, blocking:
//! zbus_systemd's generated proxies are async-only and would need a runtime here.

use crate::units::Systemd;
use anyhow::{bail, Context, Result};
use zbus::zvariant::OwnedObjectPath;

/// What EnableUnitFiles did: change type, symlink, destination.
type UnitFileChange = (String, String, String);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_async = false
)]
trait Manager {
    fn reload(&self) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChange>)>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn try_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_or_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_or_try_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_async = false
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

pub struct SystemdBus {
    conn: zbus::blocking::Connection,
    manager: ManagerProxy<'static>,
}

impl SystemdBus {
    pub fn connect() -> Result<SystemdBus> {
        let conn = zbus::blocking::Connection::system()
            .context("connecting to the system D-Bus (is dbus running?)")?;
        let manager = ManagerProxy::new(&conn).context("systemd's D-Bus manager")?;
        Ok(SystemdBus { conn, manager })
    }
}

impl Systemd for SystemdBus {
    fn daemon_reload(&self) -> Result<()> {
        self.manager
            .reload()
            .context("systemd Reload (daemon-reload)")
    }

    fn enable(&self, unit: &str, runtime: bool) -> Result<()> {
        self.manager
            .enable_unit_files(&[unit], runtime, false)
            .with_context(|| format!("systemd EnableUnitFiles {unit}"))?;
        Ok(())
    }

    fn command(&self, command: &str, unit: &str) -> Result<()> {
        // "replace" and no waiting for the job, as `systemctl --no-block` and coreos-cloudinit.
        let m = &self.manager;
        let mode = "replace";
        let job = match command {
            "start" => m.start_unit(unit, mode),
            "stop" => m.stop_unit(unit, mode),
            "restart" => m.restart_unit(unit, mode),
            "reload" => m.reload_unit(unit, mode),
            "try-restart" => m.try_restart_unit(unit, mode),
            "reload-or-restart" => m.reload_or_restart_unit(unit, mode),
            "reload-or-try-restart" => m.reload_or_try_restart_unit(unit, mode),
            other => bail!("unknown unit command {other:?} for {unit}"),
        };
        job.with_context(|| format!("systemd: {command} {unit}"))?;
        Ok(())
    }

    fn exists(&self, unit: &str) -> Result<bool> {
        let path = self
            .manager
            .load_unit(unit)
            .with_context(|| format!("systemd LoadUnit {unit}"))?;
        let state = UnitProxy::builder(&self.conn)
            .path(path)?
            .build()?
            .load_state()
            .with_context(|| format!("LoadState of {unit}"))?;
        Ok(state != "not-found")
    }
}
