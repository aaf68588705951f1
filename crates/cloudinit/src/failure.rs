//! A failed configuration says so loudly and persistently: a marker under
//! `/var/lib/coreos-cloudinit/failed`, a line in the console login banner (`/etc/issue.d`) and in
//! the ssh login message (`/etc/motd.d`), until `coreos-cloudinit --clear-failure`. While the
//! marker is there the agent refuses to run again, so a half-applied config is never silently
//! re-run on the next boot.

use anyhow::Result;
use std::path::{Path, PathBuf};

const MARKER: &str = "var/lib/coreos-cloudinit/failed";
const ISSUE: &str = "etc/issue.d/coreos-cloudinit.issue";
const MOTD: &str = "etc/motd.d/coreos-cloudinit";

fn paths(root: &Path) -> [PathBuf; 3] {
    [root.join(MARKER), root.join(ISSUE), root.join(MOTD)]
}

/// The recorded failure, if any.
pub fn read(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(MARKER)).ok()
}

pub fn record(root: &Path, message: &str) -> Result<()> {
    let banner = format!(
        "coreos-cloudinit FAILED: {message}\nFix the user data, then run: sudo coreos-cloudinit --clear-failure\n"
    );
    let [marker, issue, motd] = paths(root);
    for (path, text) in [
        (&marker, format!("{message}\n")),
        (&issue, banner.clone()),
        (&motd, banner),
    ] {
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        std::fs::write(path, text)?;
    }
    if root == Path::new("/") {
        // Best effort: the console shows it even before anyone logs in.
        let _ = std::fs::write(
            "/dev/console",
            format!("coreos-cloudinit FAILED: {message}\n"),
        );
    }
    Ok(())
}

pub fn clear(root: &Path) -> Result<()> {
    for p in paths(root) {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shows_in_banners_until_cleared() {
        let r = tempfile::tempdir().unwrap();
        assert_eq!(read(r.path()), None);
        record(r.path(), "config drive: line 3, column 1: bad").unwrap();
        assert_eq!(
            read(r.path()).as_deref(),
            Some("config drive: line 3, column 1: bad\n")
        );
        let motd = std::fs::read_to_string(r.path().join(MOTD)).unwrap();
        assert!(
            motd.contains("coreos-cloudinit FAILED: config drive: line 3")
                && motd.contains("--clear-failure")
        );
        assert!(r.path().join(ISSUE).exists());
        clear(r.path()).unwrap();
        assert_eq!(read(r.path()), None);
        assert!(!r.path().join(MOTD).exists());
        clear(r.path()).unwrap();
    }
}
