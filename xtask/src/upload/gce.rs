//! `cargo xtask upload gce`: the gce board's tarball → Cloud Storage (resumable upload) →
//! Compute `images.insert` in the family `ferrocore-<channel>`. Service-account credentials
//! (`--credentials` or GOOGLE_APPLICATION_CREDENTIALS), or an access token in
//! GOOGLE_OAUTH_ACCESS_TOKEN (`gcloud auth print-access-token`).

use super::Release;
use crate::build_image::ImageInfo;
use anyhow::{bail, Context, Result};
use cloud::gcp::{auth, compute, publish, storage};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Gce {
    /// Project the image is created in (default: the key file's project_id).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    project: Option<String>,
    /// Cloud Storage bucket the tarball is uploaded to.
    #[arg(long)]
    bucket: String,
    /// Update channel; names the default family (default: the image's, from its build).
    #[arg(long)]
    channel: Option<String>,
    /// Image family (default: ferrocore-<channel>).
    #[arg(long)]
    family: Option<String>,
    /// Image name (default: ferrocore-<version>-<build id>, dots as dashes).
    #[arg(long)]
    name: Option<String>,
    /// Service-account key file (JSON).
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// OAuth token endpoint (default: the key file's token_uri).
    #[arg(long, env = "FERROCORE_GCP_TOKEN_URL")]
    token_url: Option<String>,
    /// Cloud Storage endpoint.
    #[arg(long, env = "STORAGE_EMULATOR_HOST", default_value = storage::DEFAULT_BASE)]
    storage_url: String,
    /// Compute Engine endpoint.
    #[arg(long, env = "FERROCORE_GCE_COMPUTE_URL", default_value = compute::DEFAULT_BASE)]
    compute_url: String,
    /// The tarball (default: the gce board's, from target/images/gce/image.json).
    #[arg(long)]
    tarball: Option<PathBuf>,
}

impl Gce {
    pub fn run(self) -> Result<()> {
        let (tarball, release) = match &self.tarball {
            Some(p) => (
                p.clone(),
                Release {
                    version: crate::build_image::VERSION.into(),
                    build_id: "local".into(),
                    channel: "stable".into(),
                },
            ),
            None => {
                let info = ImageInfo::load("gce")
                    .context("run `cargo xtask build-image --board gce` first")?;
                let t = info
                    .board_outputs
                    .get("gce-tarball")
                    .context("image.json of the gce board lists no gce-tarball")?
                    .clone();
                (t, Release::of(&info))
            }
        };
        let account = match &self.credentials {
            Some(p) => Some(auth::ServiceAccount::from_file(p)?),
            None => None,
        };
        let token = match (std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN"), &account) {
            (Ok(t), _) if !t.is_empty() => t,
            (_, Some(sa)) => sa.access_token(self.token_url.as_deref(), auth::SCOPES)?,
            _ => bail!("no Google credentials: pass --credentials KEY.json (or set GOOGLE_APPLICATION_CREDENTIALS), or set GOOGLE_OAUTH_ACCESS_TOKEN"),
        };
        let project = self
            .project
            .clone()
            .or_else(|| account.as_ref()?.project_id.clone())
            .context("no project: pass --project (or set GOOGLE_CLOUD_PROJECT)")?;
        let name = compute::resource_name(
            &self
                .name
                .clone()
                .unwrap_or_else(|| format!("ferrocore-{}-{}", release.version, release.build_id)),
        );
        let family = self.family.clone().unwrap_or_else(|| {
            let channel = self.channel.as_deref().unwrap_or(&release.channel);
            format!("ferrocore-{channel}")
        });
        let size = std::fs::metadata(&tarball)
            .with_context(|| format!("reading {}", tarball.display()))?
            .len();
        let mut image = compute::Image::new(
            &name,
            &family,
            &format!(
                "Ferrocore {} (build {}), container-optimized Linux",
                release.version, release.build_id
            ),
            &self.bucket,
            &format!("{name}.tar.gz"),
        );
        image
            .labels
            .insert("version".into(), compute::label_value(&release.version));
        image
            .labels
            .insert("build-id".into(), compute::label_value(&release.build_id));
        let bar = super::byte_progress("Cloud Storage", size);
        let progress = super::report(&bar, "gce upload");
        let say = |line: &str| bar.suspend(|| eprintln!("gce: {line}"));
        let link = publish::publish(
            &storage::Storage::new(&self.storage_url, &token)?,
            &compute::Compute::new(&self.compute_url, &token)?,
            &publish::Publish {
                tarball,
                project,
                bucket: self.bucket.clone(),
                image,
                timeout: Duration::from_secs(3600),
            },
            &progress,
            &say,
        )?;
        bar.finish_and_clear();
        println!("gce: {link}");
        Ok(())
    }
}
