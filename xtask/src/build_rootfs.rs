//! `cargo xtask build-rootfs`: Debian bookworm (minbase + `rootfs/packages.txt`) made by mmdebstrap,
//! customised by `rootfs/customize.sh`, stored as a tarball cached by the hash of those inputs.
//! Our own files (overlay, daemons) are added at image time so changing them never rebuilds this.

use crate::{cache, cmd, host, paths};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

const RECIPE: &str = "rootfs-v1";
const SUITE: &str = "bookworm";

#[derive(clap::Args, Default)]
pub struct BuildRootfs {}

pub struct Rootfs {
    /// `rootfs.tar.zst`, ownership and modes preserved.
    pub tarball: PathBuf,
    pub key: String,
}

/// Package names from the manifest (comments and blank lines skipped).
pub fn packages() -> Result<Vec<String>> {
    let path = paths::root().join("rootfs/packages.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn mirror() -> String {
    std::env::var("FERROCORE_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org".into())
}

impl BuildRootfs {
    pub fn run(self) -> Result<Rootfs> {
        host::ensure(&[host::ROOTFS])?;
        let pkgs = packages()?;
        let hook = paths::root().join("rootfs/customize.sh");
        let mut key = cache::Key::new(RECIPE);
        key.add_bytes("packages", pkgs.join("\n").as_bytes());
        key.add_bytes("mirror", mirror().as_bytes());
        key.add_file(&hook)?;
        let key = key.finish();
        let dir = cache::get_or_build("rootfs", &key, |out| {
            let m = mirror();
            let tarball = out.join("rootfs.tar.zst");
            cmd::run_logged(
                Command::new("mmdebstrap")
                    .arg("--variant=minbase")
                    .arg("--components=main")
                    .arg(format!("--include={}", pkgs.join(",")))
                    // Documentation and translations are not for a container host.
                    .args([
                        "--dpkgopt=path-exclude=/usr/share/man/*",
                        "--dpkgopt=path-exclude=/usr/share/info/*",
                        "--dpkgopt=path-exclude=/usr/share/doc/*",
                        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                        "--dpkgopt=path-exclude=/usr/share/locale/*",
                        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                    ])
                    .arg(format!("--customize-hook={} \"$1\"", hook.display()))
                    .arg(SUITE)
                    .arg(&tarball)
                    .arg(format!("deb {m}/debian {SUITE} main"))
                    .arg(format!("deb {m}/debian {SUITE}-updates main"))
                    .arg(format!("deb {m}/debian-security {SUITE}-security main")),
                &paths::target().join("rootfs/mmdebstrap.log"),
                "rootfs: mmdebstrap",
            )
        })?;
        let rootfs = Rootfs {
            tarball: dir.join("rootfs.tar.zst"),
            key,
        };
        println!("rootfs: {}", rootfs.tarball.display());
        Ok(rootfs)
    }
}
