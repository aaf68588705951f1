//! Signing keys: ed25519, stored as base64 text. `<name>.key` (secret, mode 0600) signs payloads at
//! build time; `<name>.pub` files go into the image's `/usr/share/ferrocore/update-keys/`, and a
//! payload is accepted when any of them verifies it (several keys allow rotation).

use super::Error;
use base64::Engine;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_32(path: &Path) -> Result<[u8; 32], Error> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes = b64()
        .decode(text.trim())
        .map_err(|_| Error::BadKey(path.to_path_buf()))?;
    bytes
        .try_into()
        .map_err(|_| Error::BadKey(path.to_path_buf()))
}

/// Writes `<base>.key` and `<base>.pub`; returns their paths.
pub fn generate(base: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| Error::Io {
        path: base.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SigningKey::from_bytes(&secret);
    let (sk, pk) = (base.with_extension("key"), base.with_extension("pub"));
    if let Some(dir) = base.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(&sk, b64().encode(key.to_bytes()) + "\n").map_err(io(&sk))?;
    std::fs::set_permissions(&sk, std::fs::Permissions::from_mode(0o600)).map_err(io(&sk))?;
    std::fs::write(&pk, b64().encode(key.verifying_key().to_bytes()) + "\n").map_err(io(&pk))?;
    Ok((sk, pk))
}

pub fn load_signing(path: &Path) -> Result<SigningKey, Error> {
    Ok(SigningKey::from_bytes(&read_32(path)?))
}

pub fn load_public(path: &Path) -> Result<VerifyingKey, Error> {
    VerifyingKey::from_bytes(&read_32(path)?).map_err(|_| Error::BadKey(path.to_path_buf()))
}

/// Every `*.pub` in `dir`.
pub fn load_trusted(dir: &Path) -> Result<Vec<VerifyingKey>, Error> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = entry.map_err(io(dir))?.path();
        if p.extension().is_some_and(|e| e == "pub") {
            keys.push(load_public(&p)?);
        }
    }
    if keys.is_empty() {
        return Err(Error::NoTrustedKeys(dir.to_path_buf()));
    }
    Ok(keys)
}
