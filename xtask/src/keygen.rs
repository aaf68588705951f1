//! `cargo xtask keygen`: an ed25519 key pair for signing update payloads. `build-image` signs with
//! `$FERROCORE_SIGNING_KEY` (a `.key` file, its `.pub` beside it) or, by default, the development
//! key `~/.config/ferrocore/keys/dev.key` (made on first use). The image trusts the `.pub`.

use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Keygen {
    /// Where to write NAME.key and NAME.pub (default: ~/.config/ferrocore/keys/dev).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn default_base() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".config/ferrocore/keys/dev")
}

/// The signing key file and its public key, making the development pair if it is missing.
pub fn signing_key() -> Result<(PathBuf, PathBuf)> {
    if let Some(k) = std::env::var_os("FERROCORE_SIGNING_KEY") {
        let k = PathBuf::from(k);
        let p = k.with_extension("pub");
        if !k.exists() || !p.exists() {
            bail!(
                "FERROCORE_SIGNING_KEY={}: need that .key and its .pub beside it",
                k.display()
            );
        }
        return Ok((k, p));
    }
    let base = default_base();
    let (k, p) = (base.with_extension("key"), base.with_extension("pub"));
    if !k.exists() {
        eprintln!(
            "image: no signing key yet; making the development key {}",
            k.display()
        );
        update::payload::keys::generate(&base)?;
    }
    Ok((k, p))
}

impl Keygen {
    pub fn run(self) -> Result<()> {
        let base = self.out.unwrap_or_else(default_base);
        if base.with_extension("key").exists() {
            bail!(
                "{} exists; not overwriting a signing key",
                base.with_extension("key").display()
            );
        }
        let (k, p) = update::payload::keys::generate(&base)?;
        println!(
            "signing key: {} (keep it secret)\npublic key:  {} (images built with it trust it)",
            k.display(),
            p.display()
        );
        Ok(())
    }
}
