//! Build times: cold (recorded when the kernel and rootfs were built), nothing changed, and one
//! component changed (the init's source touched and the image inputs salted, so cargo rebuilds one
//! crate and the image is assembled again), against the targets.

use super::{secs, Row};
use crate::paths;
use anyhow::{ensure, Result};
use std::process::Command;
use std::time::{Duration, Instant};

fn build_image(salt: Option<&str>) -> Result<Duration> {
    let start = Instant::now();
    let mut c = Command::new(std::env::current_exe()?);
    c.arg("build-image");
    if let Some(s) = salt {
        c.env("FERROCORE_IMAGE_SALT", s);
    }
    let status = c.status()?;
    ensure!(status.success(), "build-image failed");
    Ok(start.elapsed())
}

/// Seconds a cache entry's build took, as `cache::get_or_build` recorded it.
fn recorded(kind: &str) -> Option<Duration> {
    let dir = paths::cache().join(kind);
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("BUILD-SECONDS").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())?;
    let text = std::fs::read_to_string(newest.path().join("BUILD-SECONDS")).ok()?;
    Some(Duration::from_secs(text.trim().parse().ok()?))
}

pub fn run() -> Result<Vec<Row>> {
    build_image(None)?; // make sure everything is built and cached
    let mut rows = Vec::new();
    for (kind, target) in [("kernel", "cold total ≤ 10 min"), ("rootfs", "")] {
        if let Some(t) = recorded(kind) {
            rows.push(Row::new(
                &format!("cold {kind} build (recorded)"),
                secs(t),
                target.into(),
                None,
            ));
        }
    }
    let warm = build_image(None)?;
    rows.push(Row::new(
        "rebuild, nothing changed",
        secs(warm),
        "target ≤ 10 s".into(),
        Some(warm.as_secs_f64() / 10.0),
    ));
    let init_src = paths::root().join("crates/init/src/main.rs");
    let now = std::fs::File::options().append(true).open(&init_src)?;
    now.set_modified(std::time::SystemTime::now())?;
    let salt = format!("{:?}", std::time::SystemTime::now());
    let one = build_image(Some(&salt))?;
    rows.push(Row::new(
        "rebuild, one component changed",
        secs(one),
        "target ≤ 60 s".into(),
        Some(one.as_secs_f64() / 60.0),
    ));
    Ok(rows)
}
