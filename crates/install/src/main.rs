//! `coreos-install -d /dev/sda -C stable -c cloud-config.yml`: as on CoreOS, from a live system
//! (PXE or ISO) or any running machine, onto another disk.

use anyhow::{Context, Result};
use clap::Parser;
use install::device::{self, System};
use install::source::{self, Source, DISK_PART};
use install::{configure, writer};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "coreos-install",
    // -V is the release to install, as in coreos-install; --version prints ours.
    version,
    disable_version_flag = true,
    about = "Install Ferrocore to a disk: the signed image is verified before anything is written"
)]
struct Cli {
    /// Target disk (the whole device, e.g. /dev/sda); everything on it is replaced.
    #[arg(short = 'd', value_name = "DEVICE")]
    device: PathBuf,
    /// Release channel: alpha, beta, stable, or another one your server has.
    #[arg(short = 'C', value_name = "CHANNEL", default_value = "stable")]
    channel: String,
    /// Version to install; `current` is the channel's newest.
    #[arg(short = 'V', value_name = "VERSION", default_value = "current")]
    release: String,
    /// Release server base URL (default: the channel's on release.ferrocore.dev).
    #[arg(short = 'b', value_name = "BASE_URL")]
    base_url: Option<String>,
    /// Cloud-config to apply on the installed system's boots (validated first).
    #[arg(short = 'c', value_name = "CLOUD_CONFIG")]
    cloud_config: Option<PathBuf>,
    /// Install from a local copy instead of downloading: its directory or any file in it.
    #[arg(short = 'f', value_name = "IMAGE")]
    image: Option<PathBuf>,
    /// OEM id written to the OEM partition (`coreos.oem.id=` on the kernel command line).
    #[arg(short = 'o', value_name = "OEM")]
    oem: Option<String>,
    /// Directory of trusted ed25519 public keys (*.pub).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/share/ferrocore/update-keys"
    )]
    keys: PathBuf,
    /// Print coreos-install's own version.
    #[arg(long, action = clap::ArgAction::Version)]
    version: Option<bool>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("coreos-install: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let disk = System::default().disk(&cli.device)?;

    let cloud_config = match &cli.cloud_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            match cloudinit::UserData::parse(&text) {
                Ok((_, warnings)) => eprint!("{warnings}"),
                Err(report) => anyhow::bail!(
                    "{} is not a valid cloud-config; nothing was written:\n{report}",
                    path.display()
                ),
            }
            Some(text)
        }
        None => None,
    };

    let source = match &cli.image {
        Some(path) => Source::local(path.clone())?,
        None => {
            let base = cli
                .base_url
                .clone()
                .unwrap_or_else(|| source::default_base_url(&cli.channel));
            Source::remote(&base, &cli.release)?
        }
    };
    let trusted = update::payload::keys::load_trusted(&cli.keys)?;
    let manifest_bytes = source.read(update::payload::MANIFEST)?;
    let sig = String::from_utf8_lossy(&source.read(update::payload::SIGNATURE)?).into_owned();
    let manifest = update::payload::verify_manifest(&manifest_bytes, &sig, &trusted)
        .with_context(|| source.location(update::payload::MANIFEST))?;
    let part = manifest
        .parts
        .iter()
        .find(|p| p.name == DISK_PART)
        .with_context(|| {
            format!(
                "{}: no `{DISK_PART}` part (is this an update payload rather than an install image?)",
                source.location(update::payload::MANIFEST)
            )
        })?;
    device::check_size(&disk, part.size)?;
    eprintln!(
        "coreos-install: Ferrocore {} (build {}, channel {}) onto {} ({})",
        manifest.release.version,
        manifest.release.build_id,
        manifest.release.channel,
        disk.path.display(),
        disk.name
    );

    let what = source.location(&part.file);
    eprintln!("coreos-install: checking {what} against the signed manifest");
    let mut bar = Progress::new("checking", part.compressed_size);
    writer::check(source.open(&part.file)?, &what, part, |n| bar.set(n))?;
    bar.finish();

    eprintln!("coreos-install: writing {}", disk.path.display());
    let mut target = writer::Device::open(&disk.path)
        .with_context(|| format!("opening {} for writing", disk.path.display()))?;
    let mut bar = Progress::new("writing", part.compressed_size);
    writer::write(source.open(&part.file)?, &what, part, &mut target, |n| {
        bar.set(n)
    })?;
    bar.finish();
    drop(target);

    configure::reread_partitions(
        &disk,
        &[configure::ROOT_PARTITION, configure::OEM_PARTITION],
    )?;
    if let Some(text) = &cloud_config {
        configure::install_user_data(&disk, text)?;
        eprintln!(
            "coreos-install: cloud-config installed as /{}",
            configure::USER_DATA
        );
    }
    if let Some(oem) = &cli.oem {
        configure::install_oem_id(&disk, oem)?;
        eprintln!("coreos-install: OEM id {oem} set");
    }
    eprintln!("coreos-install: success");
    Ok(())
}

/// A progress bar on a terminal, a line per tenth otherwise (serial consoles, logs).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    total: u64,
    shown_tenths: u64,
}

impl Progress {
    fn new(label: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template"),
            );
            b.set_message(label);
            b
        });
        Progress {
            bar,
            label,
            total: total.max(1),
            shown_tenths: 0,
        }
    }

    fn set(&mut self, done: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                let tenths = done * 10 / self.total;
                if tenths > self.shown_tenths {
                    self.shown_tenths = tenths;
                    eprintln!("coreos-install: {} {}%", self.label, tenths * 10);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
