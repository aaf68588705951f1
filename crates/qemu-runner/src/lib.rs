//! Booting images under QEMU, for `cargo xtask qemu` and the image tests.
//!
//! On these machines `/dev/kvm` opens but guests can hang under it, so acceleration is probed
//! once per process with a short kernel boot and a timeout; TCG is the fallback. Whichever runs
//! is printed. `FERROCORE_ACCEL=kvm|tcg` skips the probe.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (Debian's package ovmf).
    Uefi,
}

/// How the boot disk is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`), QEMU's and the clouds' usual choice.
    #[default]
    Virtio,
    /// A SATA disk on an AHCI controller (`/dev/sda`), VirtualBox's default.
    Ahci,
    /// An NVMe controller (`/dev/nvme0n1`), how EC2's Nitro instances attach EBS volumes.
    Nvme,
    /// A SCSI disk on virtio-scsi (`/dev/sda`), GCE's persistent disks.
    VirtioScsi,
}

/// The network card.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nic {
    #[default]
    VirtioNet,
    /// Intel PRO/1000 MT (82540EM), VirtualBox's default.
    E1000,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

static ACCEL: OnceLock<Accel> = OnceLock::new();

/// KVM if a short boot of `kernel` under it finishes in time, else TCG; probed once per process.
pub fn accel(kernel: &Path) -> Accel {
    *ACCEL.get_or_init(|| {
        let chosen = match std::env::var("FERROCORE_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("tcg") => Accel::Tcg,
            _ => probe_kvm(kernel),
        };
        eprintln!("qemu: accelerator {chosen}");
        chosen
    })
}

fn probe_kvm(kernel: &Path) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("qemu: /dev/kvm is not usable; using TCG");
        return Accel::Tcg;
    }
    // Without a root device the kernel panics at once; panic=-1 and -no-reboot make QEMU exit.
    // A working KVM gets there in about a second; a hanging one never does.
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "null",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            if status.success() {
                return Accel::Kvm;
            }
            eprintln!("qemu: KVM probe exited with {status}; using TCG");
            return Accel::Tcg;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("qemu: a KVM guest did not finish a 15 s probe boot (KVM hangs here); using TCG");
    Accel::Tcg
}

/// QEMU's format name for a disk file, by its extension (raw for anything else).
pub fn disk_format(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("vmdk") => "vmdk",
        Some("vdi") => "vdi",
        _ => "raw",
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; QEMU takes it right after).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The boot disk: qcow2, VMDK or VDI by its extension, raw otherwise.
    pub disk: PathBuf,
    pub disk_bus: DiskBus,
    pub nic: Nic,
    pub firmware: Firmware,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Extra read-only raw drives (config drives).
    pub extra_drives: Vec<PathBuf>,
    /// Where the serial console goes; `None` means this terminal (interactive).
    pub console_log: Option<PathBuf>,
    pub ssh_port: u16,
    /// The kernel used for the KVM probe.
    pub probe_kernel: PathBuf,
    /// Boot this kernel directly (QEMU's -kernel/-initrd/-append) instead of the disk's loader.
    pub direct_kernel: Option<DirectKernel>,
    /// Boot from the network first: QEMU's user network serves `tftp_dir` over TFTP and
    /// offers `bootfile` by DHCP to the NIC's iPXE ROM.
    pub netboot: Option<Netboot>,
    /// A CD-ROM image (a live ISO), booted first.
    pub cdrom: Option<PathBuf>,
    /// A USB stick holding this image (a hybrid ISO written with `dd`), booted first.
    pub usb_stick: Option<PathBuf>,
    /// A cloud's instance metadata service: guest connections to 169.254.169.254:80 go to this
    /// port on the host's 127.0.0.1 (the user network then lives in 169.254.169.0/24, as the
    /// guestfwd address must be inside it).
    pub metadata_port: Option<u16>,
}

/// Where EC2 and GCE guests find their metadata service.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

#[derive(Clone, Debug)]
pub struct Netboot {
    pub tftp_dir: PathBuf,
    pub bootfile: String,
}

#[derive(Clone, Debug)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

pub struct Vm {
    child: Child,
    pub ssh_port: u16,
    pub console_log: Option<PathBuf>,
    _vars: Option<PathBuf>,
}

impl Vm {
    pub fn command(cfg: &VmConfig, vars: Option<&Path>) -> Command {
        let accel = accel(&cfg.probe_kernel);
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-machine", "q35", "-accel", &accel.to_string()]);
        c.args(["-cpu", if accel == Accel::Kvm { "host" } else { "max" }]);
        c.args([
            "-m",
            &cfg.memory_mib.to_string(),
            "-smp",
            &cfg.cpus.to_string(),
        ]);
        c.args(["-display", "none", "-no-user-config", "-nodefaults"]);
        let format = disk_format(&cfg.disk);
        match cfg.disk_bus {
            DiskBus::Virtio => c.arg("-drive").arg(format!(
                "file={},if=virtio,format={format}",
                cfg.disk.display()
            )),
            DiskBus::Ahci => c
                .arg("-drive")
                .arg(format!(
                    "file={},if=none,id=disk0,format={format}",
                    cfg.disk.display()
                ))
                .args(["-device", "ahci,id=ahci0"])
                .args(["-device", "ide-hd,drive=disk0,bus=ahci0.0,bootindex=1"]),
            DiskBus::Nvme => c
                .arg("-drive")
                .arg(format!(
                    "file={},if=none,id=disk0,format={format}",
                    cfg.disk.display()
                ))
                .args([
                    "-device",
                    "nvme,drive=disk0,serial=vol0ferrocore,bootindex=1",
                ]),
            DiskBus::VirtioScsi => c
                .arg("-drive")
                .arg(format!(
                    "file={},if=none,id=disk0,format={format}",
                    cfg.disk.display()
                ))
                .args(["-device", "virtio-scsi-pci,id=scsi0"])
                .args(["-device", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1"]),
        };
        for d in &cfg.extra_drives {
            c.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                d.display()
            ));
        }
        if let Some(iso) = &cfg.cdrom {
            c.arg("-drive").arg(format!(
                "file={},if=none,id=cd0,media=cdrom,readonly=on",
                iso.display()
            ));
            c.args(["-device", "ide-cd,drive=cd0,bootindex=0"]);
        }
        if let Some(stick) = &cfg.usb_stick {
            c.arg("-drive").arg(format!(
                "file={},if=none,id=usb0,format=raw,readonly=on",
                stick.display()
            ));
            c.args(["-device", "qemu-xhci,id=xhci"]);
            c.args(["-device", "usb-storage,bus=xhci.0,drive=usb0,bootindex=0"]);
        }
        if cfg.firmware == Firmware::Uefi {
            c.arg("-drive")
                .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            if let Some(v) = vars {
                c.arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", v.display()));
            }
        }
        if let Some(d) = &cfg.direct_kernel {
            c.arg("-kernel").arg(&d.kernel);
            c.arg("-initrd").arg(&d.initrd);
            c.args(["-append", &d.append]);
        }
        let mut netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", cfg.ssh_port);
        if let Some(n) = &cfg.netboot {
            netdev += &format!(",tftp={},bootfile={}", n.tftp_dir.display(), n.bootfile);
            c.args(["-boot", "order=n"]);
        }
        if let Some(port) = cfg.metadata_port {
            // One `socat` per guest connection (a chardev target would carry only one).
            netdev += &format!(
                ",net=169.254.169.0/24,host=169.254.169.2,dns=169.254.169.3,\
                 dhcpstart=169.254.169.15,guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:socat - TCP:127.0.0.1:{port}"
            );
        }
        c.args(["-netdev", &netdev]);
        let nic = match cfg.nic {
            Nic::VirtioNet => "virtio-net-pci",
            Nic::E1000 => "e1000",
        };
        c.args([
            "-device",
            &format!("{nic},netdev=n0"),
            "-device",
            "virtio-rng-pci",
        ]);
        match &cfg.console_log {
            Some(log) => c.arg("-serial").arg(format!("file:{}", log.display())),
            None => c.args(["-serial", "mon:stdio"]),
        };
        c
    }

    /// Starts QEMU in the background (console to the log file).
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        let vars = if cfg.firmware == Firmware::Uefi {
            let v = cfg.disk.with_extension("ovmf-vars.fd");
            std::fs::copy(OVMF_VARS, &v).context("copying OVMF variables (Debian package ovmf)")?;
            Some(v)
        } else {
            None
        };
        if let Some(log) = &cfg.console_log {
            std::fs::write(log, b"")?;
        }
        let child = Self::command(cfg, vars.as_deref())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64 (Debian package qemu-system-x86)")?;
        Ok(Vm {
            child,
            ssh_port: cfg.ssh_port,
            console_log: cfg.console_log.clone(),
            _vars: vars,
        })
    }

    pub fn console(&self) -> String {
        self.console_log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the console shows `needle` (counting from occurrence `nth`, 1-based).
    pub fn wait_console(&mut self, needle: &str, nth: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.console().matches(needle).count() >= nth {
                return Ok(());
            }
            self.check_running()?;
            if start.elapsed() > timeout {
                bail!(
                    "console did not show {needle:?} (#{nth}) within {}s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Fails with QEMU's stderr if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("qemu exited ({status}): {err}");
        }
        Ok(())
    }

    /// Waits for QEMU to exit by itself (after a poweroff).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("qemu did not exit within {}s", timeout.as_secs())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes an OpenStack-style config drive (ISO 9660, volume label `config-2`) carrying
/// `openstack/latest/user_data`, made with Debian's xorriso.
pub fn config_drive(iso: &Path, user_data: &str) -> Result<()> {
    let dir = iso.with_extension("d");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("openstack/latest"))?;
    std::fs::write(dir.join("openstack/latest/user_data"), user_data)?;
    // xorriso 1.5.4 has been seen to die of SIGSEGV once in a while on a loaded machine (the
    // same command then succeeds): try up to three times before failing.
    let mut failure = String::new();
    for _ in 0..3 {
        let out = Command::new("xorriso")
            .args([
                "-as", "mkisofs", "-quiet", "-V", "config-2", "-J", "-R", "-o",
            ])
            .arg(iso)
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running xorriso (Debian package xorriso)")?;
        if out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(());
        }
        failure = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
    bail!("xorriso failed three times: {failure}")
}
