//! `cargo xtask ci`: everything CI runs, in order, on a fresh Debian 12 machine: host packages,
//! formatting, clippy with warnings as errors, unit tests, the image build, the image tests.
//! Ends with one summary line `ci: N passed, M failed`.

use crate::{host, paths, test::Test};
use anyhow::Result;
use std::process::Command;
use std::time::Instant;

#[derive(clap::Args, Default)]
pub struct Ci {
    /// Skip building and booting images (unit tests and lints only).
    #[arg(long)]
    no_images: bool,
}

/// One named CI step.
type Step = Box<dyn FnOnce() -> Result<()>>;

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        // CI builds from scratch once: incremental state would only cost disk (8 GiB seen).
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(paths::root())
        .status()?;
    anyhow::ensure!(status.success(), "cargo {} failed", args.join(" "));
    Ok(())
}

impl Ci {
    pub fn run(self) -> Result<()> {
        let start = Instant::now();
        report_free_space();
        host::ensure(&[
            host::KERNEL,
            host::ROOTFS,
            host::IMAGE,
            host::TEST,
            host::UNIT_TESTS,
        ])?;
        host::ensure_python_tools()?;
        let mut steps: Vec<(&str, Step)> = vec![
            (
                "fmt",
                Box::new(|| cargo(&["fmt", "--all", "--", "--check"])),
            ),
            (
                "clippy",
                Box::new(|| {
                    cargo(&[
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ])
                }),
            ),
            (
                "unit tests",
                Box::new(|| {
                    cargo(&[
                        "test",
                        "--workspace",
                        "--exclude",
                        "image-tests",
                        // One failing crate must not hide the results of the others.
                        "--no-fail-fast",
                    ])
                }),
            ),
        ];
        if !self.no_images {
            steps.push(("image build and tests", Box::new(|| Test::default().run())));
        }
        let (mut passed, mut failed) = (0, 0);
        let mut report = Vec::new();
        for (name, step) in steps {
            eprintln!("ci: {name}");
            let t = Instant::now();
            match step() {
                Ok(()) => {
                    passed += 1;
                    report.push(format!("  ok    {name} ({}s)", t.elapsed().as_secs()));
                }
                Err(e) => {
                    failed += 1;
                    report.push(format!(
                        "  FAIL  {name} ({}s): {e:#}",
                        t.elapsed().as_secs()
                    ));
                }
            }
        }
        eprintln!("ci: finished in {}s", start.elapsed().as_secs());
        for line in &report {
            eprintln!("{line}");
        }
        report_free_space();
        println!("ci: {passed} passed, {failed} failed");
        anyhow::ensure!(failed == 0, "{failed} CI step(s) failed");
        Ok(())
    }
}

/// Prints the free space where the build writes: a full disk otherwise shows up only as an
/// LLVM I/O error deep inside some crate's compile.
fn report_free_space() {
    let target = paths::root().join("target");
    let dir = if target.exists() {
        target
    } else {
        paths::root()
    };
    match Command::new("df")
        .args(["-h", "--output=avail,target"])
        .arg(&dir)
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().nth(1) {
                let mut fields = line.split_whitespace();
                let avail = fields.next().unwrap_or("?");
                let mount = fields.next().unwrap_or("?");
                eprintln!("ci: {avail} free on {mount} (for {})", dir.display());
            }
        }
        _ => eprintln!("ci: could not read the free space of {}", dir.display()),
    }
}
