//! Where the image comes from: a release server (`-b BASE_URL`, `-V VERSION`, `-C CHANNEL`) or a
//! local copy (`-f`). Both hold the same signed files, laid out as `cargo xtask build-image
//! --board metal` writes them:
//!
//! ```text
//! BASE_URL/current/version.txt        FERROCORE_VERSION=… (what "current" means)
//! BASE_URL/<version>/manifest.json    signed manifest (ed25519, as update payloads)
//! BASE_URL/<version>/manifest.json.sig
//! BASE_URL/<version>/disk.zst         the raw disk image, zstd
//! ```

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::PathBuf;

pub const VERSION_FILE: &str = "current/version.txt";
/// The payload part that holds the disk image.
pub const DISK_PART: &str = "disk";

/// The release server of a channel when `-b` is not given.
pub fn default_base_url(channel: &str) -> String {
    format!("https://{channel}.release.ferrocore.dev/amd64-usr")
}

pub enum Source {
    Remote {
        client: reqwest::blocking::Client,
        /// `BASE_URL/<version>` without a trailing slash.
        url: String,
    },
    Local {
        dir: PathBuf,
    },
}

/// Reads `FERROCORE_VERSION=` from a `version.txt`.
pub fn parse_version_txt(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("FERROCORE_VERSION="))
        .map(|v| v.trim_matches('"').to_string())
        .find(|v| !v.is_empty())
}

impl Source {
    /// A server source for `version` (`current` is looked up in `current/version.txt`).
    pub fn remote(base_url: &str, version: &str) -> Result<Source> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .timeout(None)
            .build()?;
        let base = base_url.trim_end_matches('/');
        let version = if version == "current" {
            let url = format!("{base}/{VERSION_FILE}");
            let text = get(&client, &url)?.text()?;
            parse_version_txt(&text).with_context(|| format!("{url}: no FERROCORE_VERSION="))?
        } else {
            version.to_string()
        };
        Ok(Source::Remote {
            client,
            url: format!("{base}/{version}"),
        })
    }

    /// A local copy: the directory holding `manifest.json`, or any file in it (e.g. `disk.zst`).
    pub fn local(path: PathBuf) -> Result<Source> {
        let dir = if path.is_dir() {
            path
        } else if path.exists() {
            path.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        } else {
            bail!("{}: no such file or directory", path.display());
        };
        Ok(Source::Local { dir })
    }

    /// Where a file of this release is, for messages.
    pub fn location(&self, file: &str) -> String {
        match self {
            Source::Remote { url, .. } => format!("{url}/{file}"),
            Source::Local { dir } => dir.join(file).display().to_string(),
        }
    }

    /// A whole (small) file.
    pub fn read(&self, file: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(file)?
            .read_to_end(&mut out)
            .with_context(|| format!("reading {}", self.location(file)))?;
        Ok(out)
    }

    /// A file as a stream (the disk image is read twice this way: checked, then written).
    pub fn open(&self, file: &str) -> Result<Box<dyn Read>> {
        match self {
            Source::Remote { client, url } => Ok(Box::new(get(client, &format!("{url}/{file}"))?)),
            Source::Local { dir } => {
                let p = dir.join(file);
                Ok(Box::new(
                    std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?,
                ))
            }
        }
    }
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Result<reqwest::blocking::Response> {
    let resp = client
        .get(url)
        .send()
        .with_context(|| format!("fetching {url}"))?;
    if !resp.status().is_success() {
        bail!("{url}: the server answered {}", resp.status());
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_txt() {
        assert_eq!(
            parse_version_txt("FERROCORE_BUILD=abc\nFERROCORE_VERSION=1.2.3\n").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(parse_version_txt("FERROCORE_VERSION=\n"), None);
        assert_eq!(parse_version_txt("VERSION=1\n"), None);
    }
}
