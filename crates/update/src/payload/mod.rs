//! An update payload is a directory (or the same files served over HTTP):
//!
//! ```text
//! manifest.json       version, build id, channel, verity root hash, and per part: sizes and sha256
//! manifest.json.sig   ed25519 signature of manifest.json's exact bytes (base64)
//! usr.zst             the slot's partition image (EROFS + verity tree), zstd
//! kernel.zst          the slot's kernel, zstd
//! initrd.zst          the slot's initrd, zstd
//! ```
//!
//! Verification reads only: signature first (any trusted key), then the version rule, then every
//! part's compressed size and hash ([`verify_signed`]), then its decompressed size and hash
//! ([`verify`]). Nothing is written. The slot writer uses [`verify_signed`] before its first write
//! and checks the decompressed hash on the stream it writes, before the slot is activated.

pub mod keys;

use crate::version::{BadVersion, Version};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.json.sig";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not an ed25519 key in base64")]
    BadKey(PathBuf),
    #[error("{0}: no trusted keys (*.pub)")]
    NoTrustedKeys(PathBuf),
    #[error("manifest signature does not verify with any trusted key")]
    Signature,
    #[error("manifest is not valid: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("manifest format {0} is not supported (this agent reads format {FORMAT})")]
    Format(u32),
    #[error(transparent)]
    Version(#[from] BadVersion),
    #[error("payload version {offered} is not newer than the running {current} (downgrades must be allowed explicitly)")]
    NotNewer { current: String, offered: String },
    #[error(
        "{part}: {file} is {actual} bytes, the manifest says {expected} (truncated or padded)"
    )]
    Size {
        part: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{part}: sha256 of the {which} data does not match the manifest")]
    Hash { part: String, which: &'static str },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub name: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub compressed_size: u64,
    pub compressed_sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    #[serde(flatten)]
    pub release: Release,
    pub parts: Vec<Part>,
}

/// What the build knows about the release, before parts are added.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub version: String,
    pub build_id: String,
    pub channel: String,
    pub usr_root_hash: String,
    pub usr_data_blocks: u64,
    pub usr_salt: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counts and hashes what passes through.
struct Tee<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hash_file(path: &Path) -> Result<(u64, String), Error> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut tee = Tee {
        inner: std::io::sink(),
        hash: Sha256::new(),
        len: 0,
    };
    std::io::copy(&mut f, &mut tee).map_err(io(path))?;
    Ok((tee.len, hex::encode(tee.hash.finalize())))
}

/// Writes a signed payload into `out` from `(name, file)` parts.
pub fn create(
    out: &Path,
    release: Release,
    parts: &[(&str, &Path)],
    key: &SigningKey,
) -> Result<Manifest, Error> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    release.version.parse::<Version>()?;
    let mut manifest = Manifest {
        format: FORMAT,
        release,
        parts: Vec::new(),
    };
    for (name, src) in parts {
        let (size, sha256) = hash_file(src)?;
        let file = format!("{name}.zst");
        let dest = out.join(&file);
        let input = std::fs::File::open(src).map_err(io(src))?;
        let output = std::fs::File::create(&dest).map_err(io(&dest))?;
        let mut tee = Tee {
            inner: output,
            hash: Sha256::new(),
            len: 0,
        };
        zstd::stream::copy_encode(input, &mut tee, 3).map_err(io(&dest))?;
        tee.inner.sync_all().map_err(io(&dest))?;
        manifest.parts.push(Part {
            name: name.to_string(),
            file,
            size,
            sha256,
            compressed_size: tee.len,
            compressed_sha256: hex::encode(tee.hash.finalize()),
        });
    }
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    let sig = key.sign(&bytes);
    let mpath = out.join(MANIFEST);
    std::fs::write(&mpath, &bytes).map_err(io(&mpath))?;
    let spath = out.join(SIGNATURE);
    let text = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()) + "\n";
    std::fs::write(&spath, text).map_err(io(&spath))?;
    Ok(manifest)
}

/// Checks a manifest's signature (`sig_text` is the base64 of `manifest.json.sig`) and format;
/// returns the manifest. For readers that fetch the parts themselves, e.g. the installer.
pub fn verify_manifest(
    bytes: &[u8],
    sig_text: &str,
    trusted: &[VerifyingKey],
) -> Result<Manifest, Error> {
    let sig_bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(sig_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Signature)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    if !trusted.iter().any(|k| k.verify_strict(bytes, &sig).is_ok()) {
        return Err(Error::Signature);
    }
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    if manifest.format != FORMAT {
        return Err(Error::Format(manifest.format));
    }
    Ok(manifest)
}

/// Checks the signature, the version rule, and every part's compressed size and sha256; returns
/// the manifest. Writes nothing. zstd output is a function of its input, so this fixes what every
/// part decompresses to; [`verify`] also checks that against the manifest.
pub fn verify_signed(
    dir: &Path,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
) -> Result<Manifest, Error> {
    let mpath = dir.join(MANIFEST);
    let bytes = std::fs::read(&mpath).map_err(io(&mpath))?;
    let spath = dir.join(SIGNATURE);
    let sig_text = std::fs::read_to_string(&spath).map_err(io(&spath))?;
    let manifest = verify_manifest(&bytes, &sig_text, trusted)?;
    let (offered, current) = (
        manifest.release.version.parse::<Version>()?,
        running.parse::<Version>()?,
    );
    if offered <= current && !allow_downgrade {
        return Err(Error::NotNewer {
            current: running.into(),
            offered: manifest.release.version.clone(),
        });
    }
    for part in &manifest.parts {
        let path = dir.join(&part.file);
        let (len, sha) = hash_file(&path)?;
        if len != part.compressed_size {
            return Err(Error::Size {
                part: part.name.clone(),
                file: part.file.clone(),
                expected: part.compressed_size,
                actual: len,
            });
        }
        if sha != part.compressed_sha256 {
            return Err(Error::Hash {
                part: part.name.clone(),
                which: "compressed",
            });
        }
    }
    Ok(manifest)
}

/// Checks a payload directory completely, decompressed data too; returns its manifest. Writes
/// nothing.
pub fn verify(
    dir: &Path,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
) -> Result<Manifest, Error> {
    let manifest = verify_signed(dir, trusted, running, allow_downgrade)?;
    for part in &manifest.parts {
        let path = dir.join(&part.file);
        let mut tee = Tee {
            inner: std::io::sink(),
            hash: Sha256::new(),
            len: 0,
        };
        let f = std::fs::File::open(&path).map_err(io(&path))?;
        let mut dec = zstd::stream::read::Decoder::new(f).map_err(io(&path))?;
        std::io::copy(&mut dec, &mut tee).map_err(|_| Error::Hash {
            part: part.name.clone(),
            which: "decompressed",
        })?;
        if tee.len != part.size || hex::encode(tee.hash.finalize()) != part.sha256 {
            return Err(Error::Hash {
                part: part.name.clone(),
                which: "decompressed",
            });
        }
    }
    Ok(manifest)
}

/// Reads all of a part, decompressed (for small parts such as the kernel).
pub fn read_part(dir: &Path, part: &Part) -> Result<Vec<u8>, Error> {
    let path = dir.join(&part.file);
    let f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(f)
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(io(&path))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
