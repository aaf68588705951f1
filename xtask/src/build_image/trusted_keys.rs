//! The public keys an image trusts for its payloads (`/usr/share/ferrocore/update-keys/*.pub`,
//! read by update_engine and coreos-install): the signing key's, and any named to follow it, so a
//! key rotation is two releases — one that trusts the new key, then one signed with it.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Copies `signing_pub` and each of `extra` into `dir`, each checked to be an ed25519 public key
/// first; two keys with the same file name are refused (one would silently replace the other).
pub fn install(dir: &Path, signing_pub: &Path, extra: &[PathBuf]) -> Result<()> {
    let mut by_name: BTreeMap<String, &Path> = BTreeMap::new();
    for key in std::iter::once(signing_pub).chain(extra.iter().map(PathBuf::as_path)) {
        update::payload::keys::load_public(key)
            .with_context(|| format!("trusted key {}", key.display()))?;
        let name = match key.file_name().map(|n| n.to_string_lossy().into_owned()) {
            Some(n) if n.ends_with(".pub") => n,
            _ => bail!(
                "trusted key {}: the file name must end in .pub (update_engine reads only *.pub)",
                key.display()
            ),
        };
        if let Some(first) = by_name.insert(name.clone(), key) {
            bail!(
                "trusted keys {} and {} share the file name {name}; rename one",
                first.display(),
                key.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, key) in by_name {
        std::fs::copy(key, dir.join(&name))
            .with_context(|| format!("copying {} into {}", key.display(), dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &Path, name: &str) -> PathBuf {
        update::payload::keys::generate(&dir.join(name)).unwrap().1
    }

    #[test]
    fn the_signing_key_and_the_next_one_are_both_trusted() {
        let t = tempfile::tempdir().unwrap();
        let (current, next) = (keypair(t.path(), "current"), keypair(t.path(), "next"));
        let dir = t.path().join("update-keys");
        install(&dir, &current, std::slice::from_ref(&next)).unwrap();
        let trusted = update::payload::keys::load_trusted(&dir).unwrap();
        assert_eq!(trusted.len(), 2);
        for k in [&current, &next] {
            assert!(trusted.contains(&update::payload::keys::load_public(k).unwrap()));
        }
    }

    #[test]
    fn a_broken_or_clashing_key_fails_the_build_by_name() {
        let t = tempfile::tempdir().unwrap();
        let current = keypair(t.path(), "current");
        let junk = t.path().join("junk.pub");
        std::fs::write(&junk, "not a key\n").unwrap();
        let dir = t.path().join("update-keys");
        let e = install(&dir, &current, std::slice::from_ref(&junk)).unwrap_err();
        assert!(format!("{e:#}").contains("junk.pub"), "{e:#}");
        let other = t.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let twin = keypair(&other, "current");
        let e = install(&dir, &current, &[twin]).unwrap_err();
        assert!(
            format!("{e:#}").contains("share the file name current.pub"),
            "{e:#}"
        );
        assert!(!dir.exists(), "nothing is copied when a key is refused");
    }
}
