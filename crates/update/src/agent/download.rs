//! Downloads one payload file into a staging file, resuming with HTTP Range from what is already
//! there, then checks its size and sha256 against what the Omaha response promised. A file that
//! fails the check is removed, so the next attempt starts clean.

use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {}", crate::http_error::chain(source))]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{url}: got {actual} bytes, the update check said {expected}")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: sha256 {actual} is not the {expected} the update check said")]
    Hash {
        url: String,
        expected: String,
        actual: String,
    },
}

/// What a download did: bytes fetched now, and bytes that were already on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub transferred: u64,
    pub resumed_from: u64,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Fetches `url` into `dest`; `progress(done, total)` is called as bytes arrive.
pub fn fetch(
    client: &reqwest::blocking::Client,
    url: &str,
    dest: &Path,
    size: u64,
    sha256: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Fetched, Error> {
    let io = |source| Error::Io {
        path: dest.into(),
        source,
    };
    let mut have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    if have > size {
        std::fs::remove_file(dest).map_err(io)?;
        have = 0;
    }
    let resumed_from = have;
    let mut transferred = 0;
    if have < size {
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let http = |source| Error::Http {
            url: url.into(),
            source,
        };
        let mut resp = req.send().map_err(http)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dest)
            .map_err(io)?;
        match resp.status().as_u16() {
            206 => {}
            // The server sent the whole file: start over.
            200 => {
                file.set_len(0).map_err(io)?;
                have = 0;
            }
            status => {
                return Err(Error::Status {
                    url: url.into(),
                    status,
                })
            }
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = resp.read(&mut buf).map_err(|source| Error::Io {
                path: PathBuf::from(url),
                source,
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(io)?;
            have += n as u64;
            transferred += n as u64;
            progress(have, size);
            if have > size {
                break;
            }
        }
        file.sync_all().map_err(io)?;
    }
    let actual = std::fs::metadata(dest).map_err(io)?.len();
    if actual != size {
        // Short: keep it for the next resume. Long: it cannot be the promised file.
        if actual > size {
            let _ = std::fs::remove_file(dest);
        }
        return Err(Error::Size {
            url: url.into(),
            expected: size,
            actual,
        });
    }
    if let Some(expected) = sha256 {
        let actual = sha256_file(dest).map_err(io)?;
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(dest);
            return Err(Error::Hash {
                url: url.into(),
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(Fetched {
        transferred,
        resumed_from,
    })
}
