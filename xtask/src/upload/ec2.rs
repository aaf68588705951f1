//! `cargo xtask upload ec2`: the ec2 board's raw image → an EBS snapshot (EBS direct APIs; S3 +
//! ImportSnapshot with `--via-s3`, or as the fallback when `--bucket` is given and EBS direct is
//! refused) → RegisterImage → tags → optional copies to other
//! regions and public launch permission. Credentials and region as the AWS CLI finds them.

use super::Release;
use crate::build_image::ImageInfo;
use anyhow::{bail, Context, Result};
use cloud::aws::{self, ami};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Ec2 {
    /// Region to upload to (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region).
    #[arg(long)]
    region: Option<String>,
    /// S3 bucket for S3 + ImportSnapshot: with `--via-s3` the only path, otherwise the fallback
    /// when the EBS direct APIs are refused (region without them, policy without ebs:*).
    #[arg(long)]
    bucket: Option<String>,
    /// AMI name (default: ferrocore-<version>-<build id>).
    #[arg(long)]
    name: Option<String>,
    /// Copy the AMI to these regions too (comma-separated).
    #[arg(long, value_delimiter = ',')]
    copy_to_regions: Vec<String>,
    /// Let every AWS account launch the AMI (and its copies).
    #[arg(long)]
    public: bool,
    /// Upload through S3 + ImportSnapshot instead of the EBS direct APIs.
    #[arg(long)]
    via_s3: bool,
    /// One endpoint for every AWS service (an emulator such as moto).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The raw image (default: the ec2 board's, from target/images/ec2/image.json).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Parallel PutSnapshotBlock requests.
    #[arg(long, default_value_t = 8)]
    threads: usize,
}

impl Ec2 {
    pub fn run(self) -> Result<()> {
        let (image, release) = match &self.image {
            Some(p) => (
                p.clone(),
                Release {
                    version: crate::build_image::VERSION.into(),
                    build_id: "local".into(),
                    channel: "stable".into(),
                },
            ),
            None => {
                let info = ImageInfo::load("ec2")
                    .context("run `cargo xtask build-image --board ec2` first")?;
                (info.raw.clone(), Release::of(&info))
            }
        };
        if self.via_s3 && self.bucket.is_none() {
            bail!("--via-s3 needs --bucket");
        }
        let settings = aws::config::Sources::process()
            .settings(self.region.as_deref(), self.endpoint_url.as_deref())?;
        let region = settings.region.clone();
        let client = aws::Client::new(settings)?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("ferrocore-{}-{}", release.version, release.build_id));
        let description = format!(
            "Ferrocore {} (build {}), container-optimized Linux",
            release.version, release.build_id
        );
        let tags = vec![
            ("Name".to_string(), name.clone()),
            ("version".to_string(), release.version.clone()),
            ("build-id".to_string(), release.build_id.clone()),
            ("channel".to_string(), release.channel.clone()),
        ];
        let size = std::fs::metadata(&image)
            .with_context(|| format!("reading {}", image.display()))?
            .len();
        eprintln!(
            "ec2: uploading {} ({} MiB) to {region} as a snapshot",
            image.display(),
            size >> 20
        );

        let bar = super::byte_progress("PutSnapshotBlock", size);
        let progress = super::report(&bar, "ec2 upload");
        let say = |line: &str| bar.suspend(|| eprintln!("ec2: {line}"));
        let published = ami::publish(
            &client,
            &ami::Publish {
                image,
                name,
                description,
                tags,
                transfer: match self.bucket {
                    Some(bucket) if self.via_s3 => ami::Transfer::ViaS3 { bucket },
                    Some(bucket) => ami::Transfer::DirectOrS3 {
                        threads: self.threads,
                        bucket,
                    },
                    None => ami::Transfer::Direct {
                        threads: self.threads,
                    },
                },
                public: self.public,
                copy_to_regions: self.copy_to_regions,
                timeout: Duration::from_secs(3 * 3600),
            },
            &progress,
            &say,
        )?;
        bar.finish_and_clear();
        for (region, ami) in &published.images {
            println!("ec2: {region} {ami} (snapshot {})", published.snapshot_id);
        }
        Ok(())
    }
}
