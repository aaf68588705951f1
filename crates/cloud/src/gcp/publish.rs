//! Publishing a GCE tarball as a Compute Engine image, the whole flow: resumable upload to
//! `gs://BUCKET/<image name>.tar.gz`, then `images.insert` from it, waiting for the operation.

use super::compute::{Compute, Image};
use super::storage::Storage;
use super::Error;
use std::path::PathBuf;
use std::time::Duration;

pub struct Publish {
    pub tarball: PathBuf,
    pub project: String,
    pub bucket: String,
    /// The image (its name also names the object).
    pub image: Image,
    pub timeout: Duration,
}

/// Returns the image's link.
pub fn publish(
    storage: &Storage,
    compute: &Compute,
    p: &Publish,
    progress: crate::Progress,
    say: &dyn Fn(&str),
) -> Result<String, Error> {
    let object = format!("{}.tar.gz", p.image.name);
    say(&format!(
        "uploading {} to gs://{}/{object}",
        p.tarball.display(),
        p.bucket
    ));
    storage.upload(&p.bucket, &object, &p.tarball, "application/gzip", progress)?;
    let mut image = p.image.clone();
    image.raw_disk.source = format!("https://storage.googleapis.com/{}/{object}", p.bucket);
    say(&format!(
        "images.insert {} (family {}) in project {}",
        image.name, image.family, p.project
    ));
    compute.insert_image(&p.project, &image, p.timeout)
}
