//! Publishing a raw disk image as an AMI, the whole flow: snapshot (EBS direct APIs, or S3 +
//! ImportSnapshot) → wait until completed → RegisterImage → tags on the AMI and its snapshot →
//! optional public launch permission → optional copies to other regions (tagged, public alike).

use super::client::{Client, Error};
use super::ebs::Ebs;
use super::ec2::{Ec2, ImageSpec};
use super::s3::S3;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Transfer {
    /// EBS direct APIs with this many parallel PutSnapshotBlock requests.
    Direct { threads: usize },
    /// PutObject into this bucket, then ImportSnapshot.
    ViaS3 { bucket: String },
    /// The EBS direct APIs; if the service refuses them (a region or partition without them, a
    /// policy without `ebs:StartSnapshot`…), S3 + ImportSnapshot through this bucket instead.
    /// Rejected credentials, I/O errors and exhausted retries are not refusals: they stop.
    DirectOrS3 { threads: usize, bucket: String },
}

#[derive(Clone, Debug)]
pub struct Publish {
    pub image: PathBuf,
    pub name: String,
    pub description: String,
    /// On the snapshot, the AMI and its copies (`Name`, `version`, `build-id`).
    pub tags: Vec<(String, String)>,
    pub transfer: Transfer,
    pub public: bool,
    pub copy_to_regions: Vec<String>,
    /// How long to wait for the snapshot to complete (and an import to finish).
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub snapshot_id: String,
    /// (region, AMI id): the upload region first, then the copies.
    pub images: Vec<(String, String)>,
    /// Blocks sent and all-zero blocks skipped (EBS direct only).
    pub blocks_written: u64,
    pub blocks_skipped: u64,
}

/// Runs the flow; `progress` gets bytes as blocks are sent, `say` a line per step.
pub fn publish(
    client: &Client,
    p: &Publish,
    progress: crate::Progress,
    say: &dyn Fn(&str),
) -> Result<Published, Error> {
    let region = client.region().to_string();
    let ec2 = Ec2::new(client);
    let (snapshot_id, blocks_written, blocks_skipped) = match &p.transfer {
        Transfer::Direct { threads } => direct(client, p, *threads, progress, say)?,
        Transfer::ViaS3 { bucket } => (via_s3(client, p, bucket, say)?, 0, 0),
        Transfer::DirectOrS3 { threads, bucket } => {
            match direct(client, p, *threads, progress, say) {
                Ok(up) => up,
                Err(e @ Error::Api { .. }) => {
                    say(&format!(
                        "the EBS direct APIs were refused ({e}); falling back to S3 + ImportSnapshot"
                    ));
                    (via_s3(client, p, bucket, say)?, 0, 0)
                }
                Err(e) => return Err(e),
            }
        }
    };
    ec2.wait_snapshot(&snapshot_id, p.timeout)?;
    let ami = ec2.register_image(&ImageSpec {
        name: p.name.clone(),
        description: p.description.clone(),
        snapshot_id: snapshot_id.clone(),
        root_device: "/dev/xvda".into(),
    })?;
    say(&format!("RegisterImage {ami} in {region}"));
    ec2.create_tags(&[&ami, &snapshot_id], &p.tags)?;
    if p.public {
        ec2.make_public(&ami)?;
    }
    let mut images = vec![(region.clone(), ami.clone())];
    for dest in &p.copy_to_regions {
        let copy = Ec2::in_region(client, dest);
        let id = copy.copy_image(&region, &ami, &p.name, &p.description)?;
        say(&format!("CopyImage {ami} → {id} in {dest}"));
        copy.create_tags(&[&id], &p.tags)?;
        if p.public {
            // A copy's attributes can be changed once EC2 has finished copying it.
            say(&format!("waiting for {id} in {dest} to be available"));
            copy.wait_image_available(&id, p.timeout)?;
            copy.make_public(&id)?;
        }
        images.push((dest.clone(), id));
    }
    Ok(Published {
        snapshot_id,
        images,
        blocks_written,
        blocks_skipped,
    })
}

/// The snapshot through the EBS direct APIs: (snapshot id, blocks written, zero blocks skipped).
fn direct(
    client: &Client,
    p: &Publish,
    threads: usize,
    progress: crate::Progress,
    say: &dyn Fn(&str),
) -> Result<(String, u64, u64), Error> {
    let up = Ebs { client }.upload(&p.image, &p.description, &p.tags, threads, progress)?;
    say(&format!(
        "snapshot {} ({} GiB): {} blocks written, {} all-zero blocks skipped",
        up.snapshot_id, up.volume_gib, up.blocks_written, up.blocks_skipped
    ));
    Ok((up.snapshot_id, up.blocks_written, up.blocks_skipped))
}

/// The snapshot through S3: PutObject, ImportSnapshot, wait for the import task.
fn via_s3(client: &Client, p: &Publish, bucket: &str, say: &dyn Fn(&str)) -> Result<String, Error> {
    let ec2 = Ec2::new(client);
    let key = format!("{}.raw", p.name);
    say(&format!("PutObject s3://{bucket}/{key}"));
    S3 { client }.put_file(bucket, &key, &p.image)?;
    let task = ec2.import_snapshot(bucket, &key, &p.description)?;
    say(&format!("ImportSnapshot {task}"));
    ec2.wait_import(&task, p.timeout, &|s| say(&format!("import {task}: {s}")))
}
