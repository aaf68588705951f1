//! `cargo xtask test`: boots fresh copies of the built image under QEMU and checks them from
//! outside (the `image-tests` package in `tests/`). Console logs go to `target/test-logs/`.

use crate::{build_image::BuildImage, host, paths};
use anyhow::Result;
use std::process::Command;

/// Boards whose images the tests boot or inspect besides `qemu` (tests find them under
/// `target/images/<board>/`); built with it unless `--no-build`.
pub const TEST_BOARDS: &[&str] = &["virtualbox", "ec2", "gce"];

#[derive(clap::Args, Default)]
pub struct Test {
    /// Use the image already built instead of (re)building it.
    #[arg(long)]
    no_build: bool,
    /// Only run tests whose name contains this.
    filter: Option<String>,
}

impl Test {
    pub fn run(self) -> Result<()> {
        host::ensure(&[host::TEST])?;
        if !self.no_build {
            BuildImage::default().run()?;
            for board in TEST_BOARDS {
                BuildImage {
                    board: board.to_string(),
                    ..BuildImage::default()
                }
                .run()?;
            }
        }
        let info = crate::build_image::info_path("qemu");
        let mut c = Command::new(env!("CARGO"));
        c.args(["test", "-p", "image-tests", "--"])
            .args(self.filter.iter())
            // Two cores: two guests at a time at most.
            .arg("--test-threads=2")
            .env("FERROCORE_IMAGE_JSON", &info)
            .env("FERROCORE_IMAGES_DIR", paths::target().join("images"))
            .current_dir(paths::root());
        eprintln!(
            "test: booting images (console logs under {})",
            paths::test_logs().display()
        );
        let status = c.status()?;
        anyhow::ensure!(
            status.success(),
            "image tests failed (console logs under {})",
            paths::test_logs().display()
        );
        Ok(())
    }
}
