//! `cargo xtask upload ec2|gce`: publish a built image in a cloud, talking its APIs directly
//! (the `cloud` crate). One module per cloud.

mod ec2;
mod gce;

use crate::build_image::ImageInfo;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Upload {
    #[command(subcommand)]
    cloud: Cloud,
}

#[derive(clap::Subcommand)]
enum Cloud {
    /// Upload the ec2 board's raw image as an EBS snapshot and register it as an AMI.
    Ec2(ec2::Ec2),
    /// Upload the gce board's tarball to Cloud Storage and create a Compute Engine image from it.
    Gce(gce::Gce),
}

impl Upload {
    pub fn run(self) -> Result<()> {
        // The cloud crate reports retries and waits through tracing.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
        match self.cloud {
            Cloud::Ec2(c) => c.run(),
            Cloud::Gce(c) => c.run(),
        }
    }
}

/// Tags/labels every uploaded image carries.
struct Release {
    version: String,
    build_id: String,
    channel: String,
}

impl Release {
    fn of(info: &ImageInfo) -> Release {
        Release {
            version: info.version.clone(),
            build_id: info.build_id.clone(),
            channel: info.channel.clone(),
        }
    }
}

/// A byte progress bar on a terminal; a line every 10% otherwise.
fn byte_progress(label: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  {prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template"),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Calls `bar.inc` and, when the bar is hidden (no terminal), prints each 10% step.
fn report<'a>(bar: &'a indicatif::ProgressBar, label: &str) -> impl Fn(u64) + Sync + 'a {
    let last_decile = std::sync::atomic::AtomicU64::new(0);
    let label = label.to_string();
    move |n| {
        bar.inc(n);
        if bar.is_hidden() {
            let total = bar.length().unwrap_or(1).max(1);
            let decile = bar.position() * 10 / total;
            if decile > last_decile.fetch_max(decile, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("  {label}: {}%", decile * 10);
            }
        }
    }
}
