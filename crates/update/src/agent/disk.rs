//! Which disk holds this machine's USR slots.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no partition labelled USR-A on this machine: name the disk with --disk")]
    NotFound,
}

/// The whole disk holding the partition labelled USR-A (sysfs `PARTNAME`), under `root`.
pub fn default_disk(root: &Path) -> Result<PathBuf, Error> {
    let sys = root.join("sys/class/block");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    for entry in std::fs::read_dir(&sys).map_err(io(&sys))? {
        let entry = entry.map_err(io(&sys))?;
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        if uevent.lines().any(|l| l == "PARTNAME=USR-A") {
            let parent_link = entry.path().join("..");
            let parent = std::fs::canonicalize(&parent_link).map_err(io(&parent_link))?;
            let name = parent.file_name().ok_or(Error::NotFound)?;
            return Ok(root.join("dev").join(name));
        }
    }
    Err(Error::NotFound)
}
