//! Where things live: the checkout, its `target/`, and the artefact cache.

use std::path::PathBuf;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Build outputs (images, logs, work trees) always go to the checkout's `target/`, whatever
/// `CARGO_TARGET_DIR` says about cargo's own output.
pub fn target() -> PathBuf {
    root().join("target")
}

/// `~/.cache/ferrocore` (or `$FERROCORE_CACHE`): expensive artefacts keyed by content hash.
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROCORE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/ferrocore")
}

pub fn images(board: &str) -> PathBuf {
    target().join("images").join(board)
}

pub fn test_logs() -> PathBuf {
    target().join("test-logs")
}
