//! `cargo xtask qemu`: boots the built image with the serial console on this terminal and ssh
//! forwarded to 127.0.0.1. The disk is a working copy kept between runs (`--fresh` starts over);
//! your ssh public key reaches the `core` user through a config drive, as on OpenStack.

use crate::{build_image::ImageInfo, build_kernel::BuildKernel, cmd, host, paths};
use anyhow::{Context, Result};
use qemu_runner::{DiskBus, Firmware, Nic, Vm, VmConfig};
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args)]
pub struct Qemu {
    /// Boot with UEFI firmware (OVMF) instead of BIOS (SeaBIOS).
    #[arg(long)]
    uefi: bool,
    /// Start from a fresh copy of the image instead of the kept working copy.
    #[arg(long)]
    fresh: bool,
    /// Host port forwarded to the guest's ssh.
    #[arg(long, default_value_t = 2222)]
    ssh_port: u16,
    /// Memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Grow a fresh working copy to this many GiB (ROOT fills it on first boot).
    #[arg(long)]
    disk_size: Option<u64>,
    /// Public key for `core` (default: the first of ~/.ssh/id_ed25519.pub, id_rsa.pub, id_ecdsa.pub).
    #[arg(long)]
    ssh_key: Option<PathBuf>,
    /// The board whose image to boot; `virtualbox` boots on VirtualBox's default hardware
    /// (SATA AHCI disk, e1000 NIC).
    #[arg(long, default_value = "qemu")]
    board: String,
    /// Boot the live ISO instead, with a blank disk (`--disk-size`, default 8 GiB) to try
    /// `sudo coreos-install -d /dev/vda -f …` on.
    #[arg(long)]
    iso: bool,
}

impl Qemu {
    pub fn run(self) -> Result<()> {
        host::ensure(&[host::TEST])?;
        let info = ImageInfo::load(&self.board)?;
        let kernel = BuildKernel::default().run()?;
        let dir = paths::target().join("qemu-run");
        std::fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.img");
        let stamp = dir.join("build-id");
        let current = std::fs::read_to_string(&stamp).unwrap_or_default();
        let disk = if self.iso {
            let blank = dir.join("blank.img");
            if self.fresh || !blank.exists() {
                std::fs::File::create(&blank)?.set_len(self.disk_size.unwrap_or(8) << 30)?;
            }
            eprintln!(
                "qemu: live ISO {} with blank disk {}",
                info.iso.display(),
                blank.display()
            );
            blank
        } else {
            disk
        };
        if !self.iso && (self.fresh || !disk.exists() || current != info.build_id) {
            eprintln!("qemu: fresh working copy of {}", info.raw.display());
            cmd::run(
                Command::new("cp")
                    .arg("--sparse=always")
                    .arg(&info.raw)
                    .arg(&disk),
            )?;
            std::fs::write(&stamp, &info.build_id)?;
            if let Some(gib) = self.disk_size {
                let bytes = gib << 30;
                let file = std::fs::OpenOptions::new().write(true).open(&disk)?;
                anyhow::ensure!(
                    bytes >= file.metadata()?.len(),
                    "--disk-size {gib} GiB is smaller than the image"
                );
                file.set_len(bytes)?;
            }
        }
        let mut extra = Vec::new();
        if let Some(key) = self.ssh_key.clone().or_else(default_key) {
            let pubkey = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let iso = dir.join("configdrive.iso");
            qemu_runner::config_drive(
                &iso,
                &format!(
                    "#cloud-config\nssh_authorized_keys:\n  - {}\n",
                    pubkey.trim()
                ),
            )?;
            eprintln!("qemu: config drive gives `core` the key {}", key.display());
            extra.push(iso);
        } else {
            eprintln!("qemu: no ssh public key found (--ssh-key); log in on the console");
        }
        let virtualbox = self.board == "virtualbox";
        let cfg = VmConfig {
            disk,
            disk_bus: if virtualbox {
                DiskBus::Ahci
            } else {
                DiskBus::Virtio
            },
            nic: if virtualbox {
                Nic::E1000
            } else {
                Nic::VirtioNet
            },
            firmware: if self.uefi {
                Firmware::Uefi
            } else {
                Firmware::Bios
            },
            memory_mib: self.memory,
            cpus: 2,
            extra_drives: extra,
            console_log: None,
            ssh_port: self.ssh_port,
            probe_kernel: kernel.bzimage,
            direct_kernel: None,
            netboot: None,
            cdrom: self.iso.then(|| info.iso.clone()),
            usb_stick: None,
            metadata_port: None,
        };
        eprintln!(
            "qemu: Ferrocore {} build {}; ssh -p {} core@127.0.0.1; quit with Ctrl-A X",
            info.version, info.build_id, self.ssh_port
        );
        let vars = if self.uefi {
            let v = dir.join("ovmf-vars.fd");
            if !v.exists() {
                std::fs::copy(qemu_runner::OVMF_VARS, &v)?;
            }
            Some(v)
        } else {
            None
        };
        let status = Vm::command(&cfg, vars.as_deref()).status()?;
        anyhow::ensure!(status.success(), "qemu exited with {status}");
        Ok(())
    }
}

fn default_key() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    ["id_ed25519.pub", "id_rsa.pub", "id_ecdsa.pub"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .find(|p| p.exists())
}
