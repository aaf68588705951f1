//! Our Rust binaries for the image: the static init for the initrd, and everything listed in
//! `rootfs/binaries.toml` for `/usr/bin`.

use super::tree::Binary;
use crate::{cmd, paths};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Command;

const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    binary: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    package: String,
    name: String,
    #[serde(default)]
    links: Vec<String>,
}

/// Builds the initrd's init as a static binary (glibc static: it uses no NSS).
pub fn build_init() -> Result<PathBuf> {
    eprintln!("image: building the static init");
    cmd::run(
        Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "init",
                "--bin",
                "ferrocore-init",
                "--target",
                HOST_TRIPLE,
            ])
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            )
            .env("CARGO_TARGET_DIR", paths::target())
            .current_dir(paths::root()),
    )?;
    Ok(paths::target()
        .join(HOST_TRIPLE)
        .join("release/ferrocore-init"))
}

/// Builds every binary in `rootfs/binaries.toml`.
pub fn build_listed() -> Result<Vec<Binary>> {
    let path = paths::root().join("rootfs/binaries.toml");
    let manifest: Manifest = toml::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    if manifest.binary.is_empty() {
        return Ok(Vec::new());
    }
    eprintln!(
        "image: building {} daemons and tools",
        manifest.binary.len()
    );
    let mut c = Command::new(env!("CARGO"));
    c.args(["build", "--release"])
        .env("CARGO_TARGET_DIR", paths::target())
        .current_dir(paths::root());
    for e in &manifest.binary {
        c.args(["-p", &e.package, "--bin", &e.name]);
    }
    cmd::run(&mut c)?;
    Ok(manifest
        .binary
        .into_iter()
        .map(|e| Binary {
            path: paths::target().join("release").join(&e.name),
            name: e.name,
            links: e.links,
        })
        .collect())
}
