//! The signed install image: the raw disk image as a one-part payload (`disk`), laid out as a
//! release server serves it to `coreos-install -b BASE_URL` (see crates/install/src/source.rs):
//!
//! ```text
//! <base>.install/current/version.txt
//! <base>.install/<version>/manifest.json, manifest.json.sig, disk.zst
//! ```
//!
//! Serve the `.install` directory over HTTP and point `-b` at it, or copy `<version>/` and
//! install with `-f`.

use anyhow::Result;
use std::path::Path;
use update::payload::keys::SigningKey;

pub fn write(
    out: &Path,
    release: update::payload::Release,
    raw: &Path,
    key: &SigningKey,
) -> Result<()> {
    let version_dir = out.join(&release.version);
    let text = format!(
        "FERROCORE_VERSION={}\nFERROCORE_BUILD={}\nFERROCORE_CHANNEL={}\n",
        release.version, release.build_id, release.channel
    );
    update::payload::create(&version_dir, release, &[("disk", raw)], key)?;
    std::fs::create_dir_all(out.join("current"))?;
    std::fs::write(out.join("current/version.txt"), text)?;
    Ok(())
}
