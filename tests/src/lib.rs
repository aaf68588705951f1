//! The harness: a fresh copy of the built image booted under QEMU with a config drive that gives
//! `core` a per-run ssh key, checked over ssh on a forwarded 127.0.0.1 port. Each machine keeps its
//! console log under `target/test-logs/<name>/`; the disk copy is removed when the test passes.

pub mod http;
pub mod metadata;

use anyhow::{bail, Context, Result};
use qemu_runner::{Firmware, Vm, VmConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Options for ssh and scp: fresh guests have new host keys, and nothing may prompt.
const SSH_OPTIONS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
];

/// Boot to ssh under TCG on a loaded 2-core machine can take minutes.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The fields of `target/images/qemu/image.json` the tests use.
#[derive(Deserialize, Clone, Debug)]
pub struct ImageInfo {
    pub version: String,
    pub build_id: String,
    /// The channel the build chose (`--channel`).
    pub channel: String,
    pub raw: PathBuf,
    /// The signed update payload directory (`manifest.json`, …).
    pub payload: PathBuf,
    /// The image's kernel, used for the KVM probe.
    pub kernel: PathBuf,
    pub usr_a_offset: u64,
    pub partuuids: std::collections::BTreeMap<String, String>,
    pub pxe_kernel: PathBuf,
    pub pxe_initramfs: PathBuf,
    pub iso: PathBuf,
    /// The signed install image tree (`current/version.txt`, `<version>/…`).
    pub install: PathBuf,
    /// The board's own outputs by name (`vmdk`, `ova`, …).
    #[serde(default)]
    pub board_outputs: std::collections::BTreeMap<String, PathBuf>,
}

impl ImageInfo {
    /// The board output `name`; panics naming the board's image.json if the build has none.
    pub fn output(&self, name: &str) -> PathBuf {
        self.board_outputs
            .get(name)
            .unwrap_or_else(|| panic!("image.json has no board output `{name}`"))
            .clone()
    }
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

pub fn image() -> ImageInfo {
    let path = std::env::var_os("FERROCORE_IMAGE_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/images/qemu/image.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build an image first (cargo xtask build-image)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("image.json parses")
}

/// The image of another board: `target/images/<board>/image.json` (`cargo xtask test` builds the
/// boards the tests need; `FERROCORE_IMAGES_DIR` points at another `images/`).
pub fn board_image(board: &str) -> ImageInfo {
    let dir = std::env::var_os("FERROCORE_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/images"));
    let path = dir.join(board).join("image.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the board first (cargo xtask build-image --board {board})",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("image.json parses")
}

/// How to prepare a machine before its first boot.
pub struct Setup {
    pub firmware: Firmware,
    /// Grow the disk copy to this many bytes (ROOT fills it on first boot).
    pub disk_size: Option<u64>,
    /// Extra cloud-config lines after the ssh key.
    pub user_data_extra: String,
    /// Boot a kernel directly instead of the disk's boot loader (the benchmark's peer).
    pub direct_kernel: Option<qemu_runner::DirectKernel>,
    /// Boot from the network (iPXE over QEMU's user network) before the disk.
    pub netboot: Option<qemu_runner::Netboot>,
    /// Boot a live ISO from a CD-ROM drive before the disk.
    pub cdrom: Option<PathBuf>,
    /// Boot this image from a USB stick before the disk.
    pub usb_stick: Option<PathBuf>,
    /// More read-only raw drives after the config drive (virtio, in this order).
    pub extra_drives: Vec<PathBuf>,
    pub memory_mib: u32,
    pub disk_bus: qemu_runner::DiskBus,
    pub nic: qemu_runner::Nic,
    /// The guest's 169.254.169.254:80 goes to this host port (a `metadata::MetadataServer`).
    pub metadata_port: Option<u16>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            firmware: Firmware::Bios,
            disk_size: None,
            user_data_extra: String::new(),
            direct_kernel: None,
            netboot: None,
            cdrom: None,
            usb_stick: None,
            extra_drives: Vec::new(),
            memory_mib: 1536,
            disk_bus: qemu_runner::DiskBus::Virtio,
            nic: qemu_runner::Nic::VirtioNet,
            metadata_port: None,
        }
    }
}

pub struct Machine {
    pub name: String,
    pub dir: PathBuf,
    pub disk: PathBuf,
    key: PathBuf,
    vm: Option<Vm>,
    cfg: VmConfig,
}

pub fn logs_dir(name: &str) -> PathBuf {
    workspace().join("target/test-logs").join(name)
}

impl Machine {
    /// Copies the built image for `name` (not booted yet), so a test can alter the disk first.
    pub fn create(name: &str, setup: Setup) -> Result<Machine> {
        let img = image();
        Machine::create_from(name, &img.raw, &img.kernel, setup, None)
    }

    /// Copies `source` for `name`. With `key`, the disk already trusts that key (no config
    /// drive); otherwise a fresh key reaches `core` through a config drive.
    pub fn create_from(
        name: &str,
        source: &Path,
        probe_kernel: &Path,
        setup: Setup,
        key: Option<PathBuf>,
    ) -> Result<Machine> {
        let dir = logs_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.img");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(source)
            .arg(&disk))?;
        if let Some(size) = setup.disk_size {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&disk)?
                .set_len(size)?;
        }
        Machine::with_disk(name, dir, disk, probe_kernel, setup, key)
    }

    /// Boots `base` itself (VMDK, VDI, qcow2 or raw, by its extension) through a qcow2 overlay
    /// that takes the guest's writes, so the tested bytes are the file's and it stays unchanged.
    pub fn create_over(
        name: &str,
        base: &Path,
        probe_kernel: &Path,
        setup: Setup,
        key: Option<PathBuf>,
    ) -> Result<Machine> {
        let dir = logs_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let format = qemu_runner::disk_format(base);
        let disk = dir.join("disk.qcow2");
        let mut create = Command::new("qemu-img");
        create
            .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
            .arg(base)
            .arg(&disk);
        if let Some(size) = setup.disk_size {
            create.arg(size.to_string());
        }
        run(&mut create)?;
        Machine::with_disk(name, dir, disk, probe_kernel, setup, key)
    }

    /// A machine whose only disk is blank (`setup.disk_size`, default 4 GiB): for network and
    /// live boots, and as an installer's target.
    pub fn create_blank(name: &str, setup: Setup) -> Result<Machine> {
        let dir = logs_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)?.set_len(setup.disk_size.unwrap_or(4 << 30))?;
        Machine::with_disk(name, dir, disk, &image().kernel, setup, None)
    }

    fn with_disk(
        name: &str,
        dir: PathBuf,
        disk: PathBuf,
        probe_kernel: &Path,
        setup: Setup,
        key: Option<PathBuf>,
    ) -> Result<Machine> {
        let mut extra_drives = Vec::new();
        let key = match key {
            Some(k) => k,
            None => {
                let key = dir.join("id_ed25519");
                run(Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                    .arg(&key))?;
                let pubkey = std::fs::read_to_string(key.with_extension("pub"))?;
                let iso = dir.join("configdrive.iso");
                qemu_runner::config_drive(
                    &iso,
                    &format!(
                        "#cloud-config\nssh_authorized_keys:\n  - {}\n{}",
                        pubkey.trim(),
                        setup.user_data_extra
                    ),
                )?;
                extra_drives.push(iso);
                key
            }
        };
        extra_drives.extend(setup.extra_drives);
        let cfg = VmConfig {
            disk: disk.clone(),
            disk_bus: setup.disk_bus,
            nic: setup.nic,
            firmware: setup.firmware,
            memory_mib: setup.memory_mib,
            cpus: 1,
            extra_drives,
            console_log: Some(dir.join("console.log")),
            ssh_port: qemu_runner::free_port()?,
            probe_kernel: probe_kernel.to_path_buf(),
            direct_kernel: setup.direct_kernel,
            netboot: setup.netboot,
            cdrom: setup.cdrom,
            usb_stick: setup.usb_stick,
            metadata_port: setup.metadata_port,
        };
        Ok(Machine {
            name: name.into(),
            dir,
            disk,
            key,
            vm: None,
            cfg,
        })
    }

    /// Logs in with this private key from now on (e.g. after the guest's keys changed).
    pub fn use_key(&mut self, key: PathBuf) {
        self.key = key;
    }

    /// Boots (or boots again after a poweroff) and waits for ssh.
    pub fn boot(&mut self) -> Result<()> {
        // Keep the previous boots' console output.
        let log = self.dir.join("console.log");
        if log.exists() {
            let old = std::fs::read(&log)?;
            let mut all = std::fs::read(self.dir.join("console-previous.log")).unwrap_or_default();
            all.extend_from_slice(&old);
            std::fs::write(self.dir.join("console-previous.log"), all)?;
        }
        self.vm = Some(Vm::start(&self.cfg)?);
        self.wait_ssh()
    }

    /// From the next boot on, the machine has only its disk: no network boot, no CD-ROM, no
    /// config drive or other extra drives (e.g. to boot what an installer wrote).
    pub fn disk_only(&mut self) {
        self.cfg.netboot = None;
        self.cfg.cdrom = None;
        self.cfg.usb_stick = None;
        self.cfg.extra_drives.clear();
    }

    /// The public half of the key the harness logs in with.
    pub fn public_key(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.key.with_extension("pub"))?
            .trim()
            .to_string())
    }

    pub fn vm(&mut self) -> &mut Vm {
        self.vm.as_mut().expect("machine is booted")
    }

    pub fn console(&self) -> String {
        self.vm.as_ref().map(|v| v.console()).unwrap_or_default()
    }

    fn wait_ssh(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            let out = self.ssh_output("true")?;
            if out.status.success() {
                eprintln!(
                    "{}: ssh answered after {}s",
                    self.name,
                    start.elapsed().as_secs()
                );
                return Ok(());
            }
            self.keep_waiting(start, BOOT_TIMEOUT, "ssh did not answer")?;
        }
    }

    /// One more round of a wait loop: fails at once if QEMU died, or with `what` once
    /// `timeout` has passed since `start`; otherwise sleeps before the next try.
    fn keep_waiting(&mut self, start: Instant, timeout: Duration, what: &str) -> Result<()> {
        if let Some(vm) = self.vm.as_mut() {
            // A QEMU that died fails now, not after the timeout.
            vm.check_running().with_context(|| {
                format!(
                    "{}: console log: {}",
                    self.name,
                    self.dir.join("console.log").display()
                )
            })?;
        }
        if start.elapsed() > timeout {
            bail!(
                "{}: {what} within {}s; console log: {}",
                self.name,
                timeout.as_secs(),
                self.dir.join("console.log").display()
            );
        }
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    }

    fn ssh_command(&self, command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(SSH_OPTIONS)
            .args([
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ServerAliveCountMax=6",
            ])
            .arg("-i")
            .arg(&self.key)
            .arg("-p")
            .arg(self.cfg.ssh_port.to_string())
            .arg("core@127.0.0.1")
            .arg(command)
            .stdin(Stdio::null());
        c
    }

    pub fn ssh_output(&self, command: &str) -> Result<Output> {
        self.ssh_command(command)
            .output()
            .context("running ssh (Debian package openssh-client)")
    }

    /// Runs `command` as `core`; fails with its stderr unless it succeeds.
    pub fn ssh(&self, command: &str) -> Result<String> {
        let out = self.ssh_output(command)?;
        if !out.status.success() {
            bail!(
                "{}: `{command}` failed ({}): {}{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits for boot to finish and checks what a user sees first: `running`, no failed units.
    pub fn assert_running(&self) {
        let state = self
            .ssh("systemctl is-system-running --wait || true")
            .unwrap();
        assert_eq!(
            self.ssh("systemctl --failed --no-legend --plain").unwrap(),
            "",
            "{}: failed units",
            self.name
        );
        assert_eq!(state, "running", "{}", self.name);
    }

    pub fn scp_to(&self, local: &Path, remote: &str) -> Result<()> {
        run(Command::new("scp")
            .arg("-q")
            .args(SSH_OPTIONS)
            .arg("-i")
            .arg(&self.key)
            .arg("-P")
            .arg(self.cfg.ssh_port.to_string())
            .arg(local)
            .arg(format!("core@127.0.0.1:{remote}")))
        .map(|_| ())
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`).
    pub fn boot_id(&self) -> Result<String> {
        self.ssh("cat /proc/sys/kernel/random/boot_id")
    }

    /// Waits (up to `timeout`) for the guest to reboot by itself and answer ssh on a boot that
    /// `accept` takes (given its boot id); earlier boots that it does not take are passed over.
    /// Returns the accepted boot's id.
    pub fn wait_boot(
        &mut self,
        timeout: Duration,
        mut accept: impl FnMut(&Machine, &str) -> bool,
    ) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Ok(out) = self.ssh_output("cat /proc/sys/kernel/random/boot_id") {
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() && accept(self, &id) {
                    eprintln!(
                        "{}: boot {id} after {}s",
                        self.name,
                        start.elapsed().as_secs()
                    );
                    return Ok(id);
                }
            }
            self.keep_waiting(start, timeout, "no accepted boot")?;
        }
    }

    /// Stops QEMU at once, as a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            vm.kill();
        }
    }

    /// Powers off through systemd and waits for QEMU to exit.
    pub fn poweroff(&mut self) -> Result<()> {
        let _ = self.ssh_output("sudo systemctl poweroff");
        self.vm().wait_exit(Duration::from_secs(180))?;
        self.vm = None;
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            vm.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "{}: console log kept at {}",
                self.name,
                self.dir.join("console.log").display()
            );
        } else {
            let _ = std::fs::remove_file(&self.disk);
        }
    }
}

pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
