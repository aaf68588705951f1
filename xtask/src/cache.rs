//! Content-addressed cache under `~/.cache/ferrocore/<kind>/<key>/`.
//!
//! The key is a sha256 of everything that goes into an artefact. An entry is complete only when
//! its `MANIFEST` (sha256 of every file) exists, and it is trusted only while every file still
//! matches it: a corrupt or half-written entry is detected, removed and rebuilt.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "MANIFEST";

/// Accumulates the inputs of an artefact into its cache key.
#[derive(Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(recipe: &str) -> Self {
        let mut k = Key(Sha256::new());
        k.add_bytes("recipe", recipe.as_bytes());
        k
    }
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
    /// A file's name (not its directory: the checkout may move) and content.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let digest = hash_file(path)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        self.add_bytes(&name, digest.as_bytes());
        Ok(())
    }
    /// Every file below `dir` by relative path and content, and every symlink by its target
    /// (enabling a unit is a symlink), in sorted order.
    pub fn add_tree(&mut self, dir: &Path) -> Result<()> {
        for (rel, link) in walk(dir)? {
            let abs = dir.join(&rel);
            let content = if link {
                format!("symlink:{}", std::fs::read_link(&abs)?.display())
            } else {
                hash_file(&abs)?
            };
            self.add_bytes(&rel.to_string_lossy(), content.as_bytes());
        }
        Ok(())
    }
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())[..32].to_string()
    }
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Regular files and symlinks below `dir` as relative paths, sorted, each with whether it is a
/// symlink (links are listed, not followed; directories are descended, not listed).
pub fn walk(dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for entry in
            std::fs::read_dir(&abs).with_context(|| format!("reading {}", abs.display()))?
        {
            let entry = entry?;
            let ty = entry.file_type()?;
            let child = rel.join(entry.file_name());
            if ty.is_dir() {
                stack.push(child);
            } else if ty.is_file() || ty.is_symlink() {
                out.push((child, ty.is_symlink()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Relative paths of the regular files below `dir`, sorted.
pub fn walk_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(walk(dir)?
        .into_iter()
        .filter(|(_, link)| !link)
        .map(|(p, _)| p)
        .collect())
}

/// Returns the entry for `kind/key`, building it with `build(dir)` when it is missing or damaged.
pub fn get_or_build(
    kind: &str,
    key: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let base = crate::paths::cache().join(kind);
    let dir = base.join(key);
    if dir.exists() {
        match verify(&dir) {
            Ok(()) => {
                eprintln!("  {kind}: cached {}", dir.display());
                return Ok(dir);
            }
            Err(e) => {
                eprintln!(
                    "  {kind}: cache entry {} is damaged ({e:#}); rebuilding",
                    dir.display()
                );
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    std::fs::create_dir_all(&base)?;
    let tmp = base.join(format!("{key}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let started = std::time::Instant::now();
    if let Err(e) = build(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Kept for `cargo xtask bench build` (cold build times).
    std::fs::write(
        tmp.join("BUILD-SECONDS"),
        started.elapsed().as_secs().to_string(),
    )?;
    write_manifest(&tmp)?;
    std::fs::rename(&tmp, &dir).with_context(|| format!("moving {} into place", dir.display()))?;
    eprintln!("  {kind}: stored {}", dir.display());
    Ok(dir)
}

fn write_manifest(dir: &Path) -> Result<()> {
    let mut text = String::new();
    for rel in walk_files(dir)? {
        text.push_str(&format!(
            "{}  {}\n",
            hash_file(&dir.join(&rel))?,
            rel.display()
        ));
    }
    std::fs::write(dir.join(MANIFEST), text)?;
    Ok(())
}

fn verify(dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).context("no manifest (incomplete)")?;
    let mut listed = 0;
    for line in text.lines() {
        let (digest, rel) = line.split_once("  ").context("malformed manifest")?;
        if hash_file(&dir.join(rel))? != digest {
            anyhow::bail!("{rel} does not match its hash");
        }
        listed += 1;
    }
    // A file added behind the manifest's back is damage too.
    let present = walk_files(dir)?.len() - 1;
    anyhow::ensure!(
        present == listed,
        "{present} files present, {listed} listed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_entry_is_rebuilt() {
        let cache = tempfile::tempdir().unwrap();
        std::env::set_var("FERROCORE_CACHE", cache.path());
        let mut builds = 0;
        let dir = get_or_build("t", "k", |d| {
            builds += 1;
            std::fs::write(d.join("a"), b"one")?;
            Ok(())
        })
        .unwrap();
        std::fs::write(dir.join("a"), b"two").unwrap();
        let dir = get_or_build("t", "k", |d| {
            builds += 1;
            std::fs::write(d.join("a"), b"one")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(builds, 2);
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"one");
        // An intact entry is reused.
        get_or_build("t", "k", |_| panic!("must not rebuild")).unwrap();
    }

    #[test]
    fn tree_key_sees_symlink_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.service"), "x").unwrap();
        std::os::unix::fs::symlink("../a.service", dir.path().join("link")).unwrap();
        let key = |d: &Path| {
            let mut k = Key::new("r");
            k.add_tree(d).unwrap();
            k.finish()
        };
        let before = key(dir.path());
        std::fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("../b.service", dir.path().join("link")).unwrap();
        assert_ne!(before, key(dir.path()));
    }

    #[test]
    fn key_depends_on_names_and_contents() {
        let mut a = Key::new("r");
        a.add_bytes("x", b"1");
        let mut b = Key::new("r");
        b.add_bytes("x", b"2");
        let mut c = Key::new("r");
        c.add_bytes("y", b"1");
        let (a, b, c) = (a.finish(), b.finish(), c.finish());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
