//! `cargo xtask build-image`: kernel + rootfs + our binaries → a bootable A/B disk image.
//!
//! Outputs go to `target/images/<board>/` named with the version and build id, and are moved
//! into place only when complete (a failed build leaves the previous good image untouched).
//! The build id is a hash of every input, so an unchanged tree rebuilds nothing.

mod binaries;
mod boards;
mod disk;
mod esp;
mod grub;
mod initrd;
mod install_tree;
pub mod layout;
mod live_iso;
pub mod tree;
mod trusted_keys;

use crate::{build_kernel::BuildKernel, build_rootfs::BuildRootfs, cache, cmd, host, paths};
use anyhow::{bail, Context, Result};
use gptprio::{Slot, SlotState};
use layout::{Content, Layout, MIB};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPE: &str = "image-v1";
/// The image version unless `--version` (or `FERROCORE_VERSION`) says otherwise.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args, Clone)]
pub struct BuildImage {
    /// Target board: one folder under `board/` (its `oem/` fills the OEM partition) and the
    /// outputs it adds to the disk image (see `build_image/boards/`).
    #[arg(long, default_value = "qemu")]
    pub board: String,
    /// The release version written into os-release and the payload manifest (default: the
    /// workspace's version). Update tests build newer images with it.
    #[arg(long, env = "FERROCORE_VERSION")]
    pub version: Option<String>,
    /// A directory copied over the image's tree after `rootfs/overlay` (e.g. an extra health
    /// check in `usr/lib/ferrocore/health.d/`); for test images.
    #[arg(long)]
    pub extra_overlay: Option<PathBuf>,
    /// Where the outputs go (default: `target/images/<board>/`).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Another public key (`NAME.pub`, from `cargo xtask keygen`) the image trusts besides the
    /// signing key's, so that payloads signed with the next key install after a rotation.
    /// Repeatable; FERROCORE_TRUST_KEYS takes a colon-separated list.
    #[arg(
        long = "trust-key",
        value_name = "FILE",
        env = "FERROCORE_TRUST_KEYS",
        value_delimiter = ':'
    )]
    pub trust_keys: Vec<PathBuf>,
    /// The release channel the image follows (GROUP in /usr/share/coreos/update.conf) and its
    /// payload's manifest names: alpha, beta, stable, or another one an update server has.
    #[arg(long, env = "FERROCORE_CHANNEL", default_value = "stable")]
    pub channel: String,
}

impl Default for BuildImage {
    fn default() -> Self {
        BuildImage {
            board: "qemu".into(),
            version: None,
            extra_overlay: None,
            out_dir: None,
            trust_keys: Vec::new(),
            channel: "stable".into(),
        }
    }
}

/// What a build wrote; also saved as `image.json` next to the image for tests and tools.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ImageInfo {
    pub version: String,
    pub build_id: String,
    pub board: String,
    /// The channel the image follows (older image.json files: "stable").
    #[serde(default = "default_channel")]
    pub channel: String,
    pub raw: PathBuf,
    pub qcow2: PathBuf,
    pub kernel: PathBuf,
    /// The signed update payload directory (manifest.json, manifest.json.sig, *.zst).
    pub payload: PathBuf,
    pub payload_bytes: u64,
    pub usr_root_hash: String,
    pub usr_data_blocks: u64,
    pub usr_a_offset: u64,
    pub usr_bytes: u64,
    pub raw_allocated_bytes: u64,
    pub qcow2_bytes: u64,
    pub partuuids: BTreeMap<String, String>,
    /// Live system for PXE/iPXE: the kernel and an initramfs carrying the verity-checked /usr.
    pub pxe_kernel: PathBuf,
    pub pxe_initramfs: PathBuf,
    /// The same live system as a hybrid BIOS/UEFI ISO (CD or USB stick).
    pub iso: PathBuf,
    /// The signed raw image as `coreos-install` downloads it (`current/`, `<version>/`).
    pub install: PathBuf,
    /// The board's own outputs by name (e.g. `iso`, `vmdk`, `gce-tarball`), next to the image.
    #[serde(default)]
    pub board_outputs: BTreeMap<String, PathBuf>,
}

fn default_channel() -> String {
    "stable".into()
}

/// A channel name goes into update.conf, Omaha requests and URLs (`<channel>.release…`): keep it
/// to what all three take.
fn check_channel(channel: &str) -> Result<()> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !channel.starts_with('-');
    if !ok {
        bail!("--channel {channel:?}: use lower-case letters, digits and '-' (e.g. stable, beta, alpha)");
    }
    Ok(())
}

impl ImageInfo {
    pub fn load(board: &str) -> Result<ImageInfo> {
        ImageInfo::load_from(&paths::images(board))
    }

    pub fn load_from(out_dir: &Path) -> Result<ImageInfo> {
        let path = out_dir.join("image.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `cargo xtask build-image` first)",
                path.display()
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl BuildImage {
    pub fn run(self) -> Result<ImageInfo> {
        boards::check(&self.board)?;
        let version = self.version.clone().unwrap_or_else(|| VERSION.into());
        version
            .parse::<update::version::Version>()
            .with_context(|| format!("--version {version:?}"))?;
        check_channel(&self.channel)?;
        let extra_overlay = match &self.extra_overlay {
            Some(d) if !d.is_dir() => bail!("--extra-overlay {}: not a directory", d.display()),
            Some(d) => Some(d.canonicalize()?),
            None => None,
        };
        host::ensure(&[host::KERNEL, host::ROOTFS, host::IMAGE])?;
        let kernel = BuildKernel::default().run()?;
        let rootfs = BuildRootfs::default().run()?;
        let init = binaries::build_init()?;
        let bins = binaries::build_listed()?;
        let root = paths::root();
        let layout = Layout::load()?;

        let mut key = cache::Key::new(RECIPE);
        key.add_bytes("version", version.as_bytes());
        key.add_bytes("board", self.board.as_bytes());
        key.add_bytes("channel", self.channel.as_bytes());
        key.add_bytes("kernel", kernel.key.as_bytes());
        key.add_bytes("rootfs", rootfs.key.as_bytes());
        key.add_file(&init)?;
        for b in &bins {
            key.add_file(&b.path)?;
            key.add_bytes("links", b.links.join(",").as_bytes());
        }
        let board_dir = format!("board/{}", self.board);
        for dir in ["rootfs/overlay", "image", &board_dir] {
            if root.join(dir).exists() {
                key.add_tree(&root.join(dir))?;
            }
        }
        if let Some(dir) = &extra_overlay {
            key.add_tree(dir)?;
        }
        let (signing_key, public_key) = crate::keygen::signing_key()?;
        key.add_file(&public_key)?;
        for k in &self.trust_keys {
            key.add_file(k)
                .with_context(|| format!("--trust-key {}", k.display()))?;
        }
        // Benchmarks force a reassembly without changing inputs.
        if let Ok(salt) = std::env::var("FERROCORE_IMAGE_SALT") {
            key.add_bytes("salt", salt.as_bytes());
        }
        let build_id = key.finish()[..12].to_string();

        let out_dir = self
            .out_dir
            .clone()
            .unwrap_or_else(|| paths::images(&self.board));
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        if let Ok(info) = ImageInfo::load_from(&out_dir) {
            if info.build_id == build_id
                && info.raw.exists()
                && info.qcow2.exists()
                && info.payload.exists()
                && info.pxe_initramfs.exists()
                && info.iso.exists()
                && info.install.exists()
                && info.board_outputs.values().all(|p| p.exists())
            {
                eprintln!("image: up to date (build {build_id})");
                print_outputs(&info);
                return Ok(info);
            }
        }

        // A build into its own --out-dir works beside it, so it never disturbs the default one.
        let work = match &self.out_dir {
            Some(_) => out_dir.join(".work"),
            None => paths::target().join("image-work").join(&self.board),
        };
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        let release = tree::Release {
            version: &version,
            build_id: &build_id,
            channel: &self.channel,
        };
        let tree = tree::prepare(
            &work,
            &rootfs.tarball,
            &root.join("rootfs/overlay"),
            extra_overlay.as_deref(),
            &bins,
            &release,
        )?;

        // The image trusts the key its payloads are signed with, and the keys named to follow it.
        trusted_keys::install(
            &tree.join("usr/share/ferrocore/update-keys"),
            &public_key,
            &self.trust_keys,
        )?;

        let placed = layout.place();
        let find = |c: Content| {
            placed
                .iter()
                .find(|p| p.part.content == c)
                .expect("layout checked")
        };
        let usr_a = placed
            .iter()
            .find(|p| p.part.label == Slot::A.label())
            .context("no USR-A")?;

        // /usr: EROFS + verity tree in one partition image.
        let usr_img = work.join("usr.img");
        eprintln!("image: mkfs.erofs /usr");
        cmd::run(
            Command::new("mkfs.erofs")
                .arg("-zlz4hc")
                .arg(&usr_img)
                .arg(tree.join("usr")),
        )?;
        let salt: [u8; 32] = sha2::Sha256::digest(build_id.as_bytes()).into();
        let vtree = verity::append_to_file(&usr_img, &salt, *uuid::Uuid::new_v4().as_bytes())?;
        let usr_bytes = vtree.total_size();
        let fill = usr_bytes * 100 / usr_a.size;
        eprintln!(
            "image: /usr is {} MiB with its verity tree: {fill}% of the {} MiB slot",
            usr_bytes / MIB,
            usr_a.size / MIB
        );
        if fill > layout.usr_max_fill_percent {
            bail!(
                "/usr ({} MiB) fills {fill}% of its slot ({} MiB); the limit is {}% to leave room for updates",
                usr_bytes / MIB,
                usr_a.size / MIB,
                layout.usr_max_fill_percent
            );
        }

        let partuuids: BTreeMap<String, uuid::Uuid> = placed
            .iter()
            .map(|p| (p.part.label.clone(), uuid::Uuid::new_v4()))
            .collect();
        let usr_uuid = partuuids[Slot::A.label()];

        // ESP: GRUB, grub.cfg, grubenv and slot A's kernel, initrd and command line.
        let initrd = work.join("initrd");
        initrd::write(&init, &initrd)?;
        let efi = work.join("BOOTX64.EFI");
        grub::make_efi(&efi)?;
        let grub_cfg = work.join("grub.cfg");
        std::fs::write(&grub_cfg, grub::render_grub_cfg()?)?;
        let a_state = SlotState {
            priority: 1,
            tries: 0,
            successful: true,
        };
        let b_state = SlotState::default();
        let mut env = gptprio::grubenv::GrubEnv::new();
        gptprio::grubenv_set_slot(&mut env, Slot::A, a_state);
        gptprio::grubenv_set_slot(&mut env, Slot::B, b_state);
        let grubenv = work.join("grubenv");
        std::fs::write(&grubenv, env.to_bytes()?)?;
        let boot_cfg = work.join("boot-a.cfg");
        std::fs::write(
            &boot_cfg,
            grub::slot_boot_cfg("usr-a", &kernel_cmdline(Slot::A, usr_uuid, &vtree)),
        )?;
        let esp_img = work.join("esp.img");
        let esp = find(Content::Esp);
        std::fs::File::create(&esp_img)?.set_len(esp.size)?;
        let file = |dest: &str, source: &Path| esp::EspFile {
            dest: dest.into(),
            source: source.into(),
        };
        esp::write(
            &esp_img,
            &[
                file("/EFI/BOOT/BOOTX64.EFI", &efi),
                file("/ferrocore/grub.cfg", &grub_cfg),
                file("/ferrocore/grubenv", &grubenv),
                file("/ferrocore/usr-a/vmlinuz", &kernel.bzimage),
                file("/ferrocore/usr-a/initrd", &initrd),
                file("/ferrocore/usr-a/boot.cfg", &boot_cfg),
            ],
        )?;

        // OEM and ROOT: ext4 made from directories, rootless.
        let oem_dir = work.join("oem");
        std::fs::create_dir_all(&oem_dir)?;
        let board_oem = root.join("board").join(&self.board).join("oem");
        if board_oem.exists() {
            cmd::run(
                Command::new("cp")
                    .arg("-a")
                    .arg(board_oem.join("."))
                    .arg(&oem_dir),
            )?;
        }
        let oem_img = work.join("oem.img");
        mkfs_ext4(&oem_img, find(Content::Oem).size, "OEM", Some(&oem_dir))?;
        let root_img = work.join("root.img");
        mkfs_ext4(&root_img, find(Content::Root).size, "ROOT", None)?;

        // BIOS: core.img into BIOS-BOOT, boot.img's code into the MBR.
        let bios = find(Content::BiosBoot);
        let core_path = work.join("core.img");
        grub::make_bios_core(&core_path)?;
        let mut core = std::fs::read(&core_path)?;
        grub::patch_core(&mut core, bios.first_lba(), bios.size)?;

        let stage = out_dir.join(format!(".stage-{}", std::process::id()));
        if stage.exists() {
            std::fs::remove_dir_all(&stage)?;
        }
        std::fs::create_dir_all(&stage)?;
        let base = format!("ferrocore-{version}-{build_id}-{}", self.board);
        let raw = stage.join(format!("{base}.img"));
        eprintln!("image: assembling {}", raw.display());
        let specs: Vec<disk::PartitionSpec> = placed
            .iter()
            .map(|p| disk::PartitionSpec {
                placed: p,
                partuuid: partuuids[&p.part.label],
                attributes: match Slot::from_name(&p.part.label) {
                    Some(Slot::A) => a_state.apply_to(0),
                    Some(Slot::B) => b_state.apply_to(0),
                    None => 0,
                },
            })
            .collect();
        disk::create(
            &raw,
            layout.disk_size(),
            grub::bios_mbr_code(bios.first_lba())?,
            &specs,
        )?;
        disk::write_at(&raw, bios.offset, &core)?;
        disk::splice(&raw, esp.offset, esp.size, &esp_img)?;
        disk::splice(&raw, usr_a.offset, usr_a.size, &usr_img)?;
        disk::splice(
            &raw,
            find(Content::Oem).offset,
            find(Content::Oem).size,
            &oem_img,
        )?;
        disk::splice(
            &raw,
            find(Content::Root).offset,
            find(Content::Root).size,
            &root_img,
        )?;

        // PXE: the same kernel and /usr, booted from RAM (see board/pxe/).
        let pxe_kernel = stage.join(format!("{base}-pxe.vmlinuz"));
        let pxe_initramfs = stage.join(format!("{base}-pxe.cpio.zst"));
        eprintln!("image: writing the live PXE initramfs");
        std::fs::copy(&kernel.bzimage, &pxe_kernel)?;
        initrd::write_live(
            &init,
            &usr_img,
            &vtree.kernel_table(init::live::DEVICE_PLACEHOLDER),
            &pxe_initramfs,
        )?;

        let iso = stage.join(format!("{base}-live.iso"));
        eprintln!("image: writing the live ISO");
        live_iso::write(&pxe_kernel, &pxe_initramfs, &work, &iso)?;

        let qcow2 = stage.join(format!("{base}.qcow2"));
        eprintln!("image: converting to qcow2 (compressed)");
        convert_qcow2(&raw, &qcow2)?;

        // The update payload of this image: the slot's partition image, kernel and initrd, signed;
        // checked with the public key before it is published.
        let payload = stage.join(format!("{base}.payload"));
        eprintln!("image: writing the signed update payload");
        let release = update::payload::Release {
            version: version.clone(),
            build_id: build_id.clone(),
            channel: self.channel.clone(),
            usr_root_hash: vtree.root_hash_hex(),
            usr_data_blocks: vtree.data_blocks,
            usr_salt: vtree.salt_hex(),
        };
        let signer = update::payload::keys::load_signing(&signing_key)?;
        update::payload::create(
            &payload,
            release.clone(),
            &[
                ("usr", &usr_img),
                ("kernel", &kernel.bzimage),
                ("initrd", &initrd),
            ],
            &signer,
        )?;
        let install = stage.join(format!("{base}.install"));
        eprintln!("image: writing the signed install image");
        install_tree::write(&install, release, &raw, &signer)?;
        let trusted_keys = [update::payload::keys::load_public(&public_key)?];
        update::payload::verify(&payload, &trusted_keys, "0", false)
            .context("checking the new payload")?;
        let payload_bytes = cache::walk_files(&payload)?
            .iter()
            .map(|f| std::fs::metadata(payload.join(f)).map(|m| m.len()))
            .sum::<std::io::Result<u64>>()?;

        let staged = boards::write_outputs(&boards::Context {
            board: &self.board,
            stage: &stage,
            base: &base,
            raw: &raw,
            qcow2: &qcow2,
            kernel: &kernel.bzimage,
            pxe_kernel: &pxe_kernel,
            pxe_initramfs: &pxe_initramfs,
            work: &work,
        })?;
        let board_outputs = staged
            .into_iter()
            .map(|(name, p)| (name, out_dir.join(p.file_name().expect("named"))))
            .collect();

        let info = ImageInfo {
            version: version.clone(),
            build_id: build_id.clone(),
            board: self.board.clone(),
            channel: self.channel.clone(),
            raw: out_dir.join(raw.file_name().expect("named")),
            qcow2: out_dir.join(qcow2.file_name().expect("named")),
            kernel: kernel.bzimage.clone(),
            payload: out_dir.join(payload.file_name().expect("named")),
            payload_bytes,
            usr_root_hash: vtree.root_hash_hex(),
            usr_data_blocks: vtree.data_blocks,
            usr_a_offset: usr_a.offset,
            usr_bytes,
            raw_allocated_bytes: allocated(&raw)?,
            qcow2_bytes: std::fs::metadata(&qcow2)?.len(),
            partuuids: partuuids
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            pxe_kernel: out_dir.join(pxe_kernel.file_name().expect("named")),
            pxe_initramfs: out_dir.join(pxe_initramfs.file_name().expect("named")),
            iso: out_dir.join(iso.file_name().expect("named")),
            install: out_dir.join(install.file_name().expect("named")),
            board_outputs,
        };
        publish(&out_dir, &stage, &info)?;
        let _ = std::fs::remove_dir_all(&work);
        print_outputs(&info);
        Ok(info)
    }
}

/// The slot's kernel command line: console, slot name, and the verity table for dm-init.
fn kernel_cmdline(slot: Slot, usr: uuid::Uuid, tree: &verity::Tree) -> String {
    let dev = format!("PARTUUID={usr}");
    format!(
        // systemd.gpt_auto=0: the ESP must not be auto-mounted, ferro-slot writes grubenv on it directly.
        "console=tty0 console=ttyS0,115200n8 ferrocore.slot={slot:?} systemd.gpt_auto=0 \
         dm-mod.create=\"usr,,,ro,{table}\" dm-mod.waitfor={dev} rootwait",
        table = tree.kernel_table(&dev)
    )
}

fn mkfs_ext4(img: &Path, size: u64, label: &str, content: Option<&Path>) -> Result<()> {
    std::fs::File::create(img)?.set_len(size)?;
    let mut c = Command::new("mkfs.ext4");
    c.args(["-q", "-F", "-L", label, "-E", "root_owner=0:0"]);
    if let Some(dir) = content {
        c.arg("-d").arg(dir);
    }
    cmd::run(c.arg(img))
}

/// A compressed qcow2 (zstd) of a raw disk.
pub fn convert_qcow2(raw: &Path, qcow2: &Path) -> Result<()> {
    cmd::run(
        Command::new("qemu-img")
            .args([
                "convert",
                "-c",
                "-O",
                "qcow2",
                "-o",
                "compression_type=zstd",
            ])
            .arg(raw)
            .arg(qcow2),
    )
}

/// Bytes a (sparse) file really takes on disk.
pub fn allocated(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

/// Moves the staged files into `out_dir`, then writes `image.json` (the commit point), then removes
/// older builds' files.
fn publish(out_dir: &Path, stage: &Path, info: &ImageInfo) -> Result<()> {
    let outputs: Vec<&PathBuf> = [
        &info.raw,
        &info.qcow2,
        &info.payload,
        &info.pxe_kernel,
        &info.pxe_initramfs,
        &info.iso,
        &info.install,
    ]
    .into_iter()
    .chain(info.board_outputs.values())
    .collect();
    for f in outputs.iter().copied() {
        let name = f.file_name().expect("named");
        if f.is_dir() {
            std::fs::remove_dir_all(f)?;
        }
        std::fs::rename(stage.join(name), f)?;
    }
    let json = stage.join("image.json");
    std::fs::write(&json, serde_json::to_string_pretty(info)?)?;
    std::fs::rename(&json, out_dir.join("image.json"))?;
    std::fs::remove_dir_all(stage)?;
    let keep: Vec<PathBuf> = outputs.iter().map(|p| p.to_path_buf()).collect();
    for entry in std::fs::read_dir(out_dir)? {
        let p = entry?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("ferrocore-") && !keep.contains(&p) {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

fn print_outputs(info: &ImageInfo) {
    println!(
        "image: Ferrocore {} build {} ({})",
        info.version, info.build_id, info.board
    );
    println!(
        "  raw:   {} ({} MiB allocated)",
        info.raw.display(),
        info.raw_allocated_bytes / MIB
    );
    println!(
        "  qcow2: {} ({} MiB)",
        info.qcow2.display(),
        info.qcow2_bytes / MIB
    );
    println!(
        "  /usr:  {} MiB with verity, root hash {}",
        info.usr_bytes / MIB,
        info.usr_root_hash
    );
    println!(
        "  payload: {} ({} MiB, signed)",
        info.payload.display(),
        info.payload_bytes / MIB
    );
    println!(
        "  pxe:   {} + {}",
        info.pxe_kernel.display(),
        info.pxe_initramfs.display()
    );
    println!("  iso:   {}", info.iso.display());
    println!(
        "  install: {} (serve it for coreos-install -b)",
        info.install.display()
    );
    for (name, path) in &info.board_outputs {
        println!("  {name}: {}", path.display());
    }
}

pub fn info_path(board: &str) -> PathBuf {
    paths::images(board).join("image.json")
}
