//! EC2's Query API (form-encoded POST, XML answers): register an AMI from a snapshot, tag it,
//! copy it to other regions, make it public; import a snapshot from S3 (the fallback path).

use super::client::{Body, Client, Error, Request};
use crate::xml::Element;
use http::Method;
use std::time::{Duration, Instant};

const API_VERSION: &str = "2016-11-15";

pub struct Ec2<'a> {
    pub client: &'a Client,
    /// The region requests go to (CopyImage runs in the destination region).
    pub region: String,
}

/// What RegisterImage is told about a Ferrocore disk.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub name: String,
    pub description: String,
    pub snapshot_id: String,
    /// `/dev/xvda`
    pub root_device: String,
}

/// The parts of DescribeImages the upload checks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageInfo {
    pub image_id: String,
    pub name: String,
    pub state: String,
    pub tags: Vec<(String, String)>,
}

impl<'a> Ec2<'a> {
    pub fn new(client: &'a Client) -> Ec2<'a> {
        Ec2 {
            region: client.region().to_string(),
            client,
        }
    }

    pub fn in_region(client: &'a Client, region: &str) -> Ec2<'a> {
        Ec2 {
            client,
            region: region.to_string(),
        }
    }

    fn call(&self, action: &'static str, params: &[(String, String)]) -> Result<Element, Error> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action);
        form.append_pair("Version", API_VERSION);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let resp = self.client.send(
            &Request::new("ec2", action, Method::POST, "/".into())
                .in_region(&self.region)
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body(Body::Bytes(form.finish().into_bytes())),
        )?;
        Element::parse(&resp.text()).map_err(|e| Error::Unexpected {
            what: format!("ec2 {action}"),
            message: format!("reading the answer: {e}"),
        })
    }

    fn field(action: &str, doc: &Element, name: &str) -> Result<String, Error> {
        doc.find_text(name).ok_or_else(|| Error::Unexpected {
            what: format!("ec2 {action}"),
            message: format!("the answer has no {name}"),
        })
    }

    /// RegisterImage for an x86_64 HVM disk that boots UEFI or BIOS, with ENA and IMDSv2 only.
    pub fn register_image(&self, spec: &ImageSpec) -> Result<String, Error> {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let params = [
            p("Name", &spec.name),
            p("Description", &spec.description),
            p("Architecture", "x86_64"),
            p("VirtualizationType", "hvm"),
            p("RootDeviceName", &spec.root_device),
            p("BlockDeviceMapping.1.DeviceName", &spec.root_device),
            p("BlockDeviceMapping.1.Ebs.SnapshotId", &spec.snapshot_id),
            p("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
            p("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"),
            p("EnaSupport", "true"),
            p("SriovNetSupport", "simple"),
            p("BootMode", "uefi-preferred"),
            p("ImdsSupport", "v2.0"),
        ];
        let doc = self.call("RegisterImage", &params)?;
        Self::field("RegisterImage", &doc, "imageId")
    }

    pub fn create_tags(&self, resources: &[&str], tags: &[(String, String)]) -> Result<(), Error> {
        let mut params = Vec::new();
        for (i, r) in resources.iter().enumerate() {
            params.push((format!("ResourceId.{}", i + 1), r.to_string()));
        }
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((format!("Tag.{}.Key", i + 1), k.clone()));
            params.push((format!("Tag.{}.Value", i + 1), v.clone()));
        }
        self.call("CreateTags", &params).map(|_| ())
    }

    /// CopyImage into this client's region from `source_region`; returns the new AMI's id.
    pub fn copy_image(
        &self,
        source_region: &str,
        source_image: &str,
        name: &str,
        description: &str,
    ) -> Result<String, Error> {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let doc = self.call(
            "CopyImage",
            &[
                p("SourceRegion", source_region),
                p("SourceImageId", source_image),
                p("Name", name),
                p("Description", description),
                p("ClientToken", &uuid::Uuid::new_v4().to_string()),
            ],
        )?;
        Self::field("CopyImage", &doc, "imageId")
    }

    /// Launch permission for everyone.
    pub fn make_public(&self, image_id: &str) -> Result<(), Error> {
        self.call(
            "ModifyImageAttribute",
            &[
                ("ImageId".into(), image_id.into()),
                ("LaunchPermission.Add.1.Group".into(), "all".into()),
            ],
        )
        .map(|_| ())
    }

    pub fn describe_image(&self, image_id: &str) -> Result<ImageInfo, Error> {
        let doc = self.call("DescribeImages", &[("ImageId.1".into(), image_id.into())])?;
        let item = doc
            .find("imagesSet")
            .and_then(|s| s.child("item"))
            .ok_or_else(|| Error::Unexpected {
                what: "ec2 DescribeImages".to_string(),
                message: format!("no image {image_id}"),
            })?;
        Ok(ImageInfo {
            image_id: item.child_text("imageId").unwrap_or_default().into(),
            name: item.child_text("name").unwrap_or_default().into(),
            state: item.child_text("imageState").unwrap_or_default().into(),
            tags: item
                .child("tagSet")
                .map(|t| {
                    t.children("item")
                        .map(|i| {
                            (
                                i.child_text("key").unwrap_or_default().to_string(),
                                i.child_text("value").unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Waits until the AMI is `available`.
    pub fn wait_image_available(&self, image_id: &str, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            let state = self.describe_image(image_id)?.state;
            match state.as_str() {
                "available" => return Ok(()),
                "failed" | "error" | "invalid" | "deregistered" => {
                    return Err(Error::Unexpected {
                        what: "ec2 DescribeImages".to_string(),
                        message: format!("image {image_id} is in state {state}"),
                    })
                }
                _ if start.elapsed() > timeout => {
                    return Err(Error::Unexpected {
                        what: "ec2 DescribeImages".to_string(),
                        message: format!(
                            "image {image_id} still `{state}` after {}s",
                            timeout.as_secs()
                        ),
                    })
                }
                _ => std::thread::sleep(Duration::from_secs(15)),
            }
        }
    }

    /// Waits until the snapshot is `completed` (RegisterImage refuses pending snapshots).
    pub fn wait_snapshot(&self, snapshot_id: &str, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            let doc = self.call(
                "DescribeSnapshots",
                &[("SnapshotId.1".into(), snapshot_id.into())],
            )?;
            let state = doc.find_text("status").unwrap_or_default();
            match state.as_str() {
                "completed" => return Ok(()),
                "error" => {
                    return Err(Error::Unexpected {
                        what: "ec2 DescribeSnapshots".to_string(),
                        message: format!("snapshot {snapshot_id} is in state error"),
                    })
                }
                _ if start.elapsed() > timeout => {
                    return Err(Error::Unexpected {
                        what: "ec2 DescribeSnapshots".to_string(),
                        message: format!(
                            "snapshot {snapshot_id} still `{state}` after {}s",
                            timeout.as_secs()
                        ),
                    })
                }
                _ => std::thread::sleep(Duration::from_secs(5)),
            }
        }
    }

    /// ImportSnapshot of a raw disk in S3 (needs the `vmimport` service role); returns the task id.
    pub fn import_snapshot(
        &self,
        bucket: &str,
        key: &str,
        description: &str,
    ) -> Result<String, Error> {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        let doc = self.call(
            "ImportSnapshot",
            &[
                p("Description", description),
                p("DiskContainer.Description", description),
                p("DiskContainer.Format", "RAW"),
                p("DiskContainer.UserBucket.S3Bucket", bucket),
                p("DiskContainer.UserBucket.S3Key", key),
                p("ClientToken", &uuid::Uuid::new_v4().to_string()),
            ],
        )?;
        Self::field("ImportSnapshot", &doc, "importTaskId")
    }

    /// Polls DescribeImportSnapshotTasks until the import is done; returns the snapshot id.
    pub fn wait_import(
        &self,
        task_id: &str,
        timeout: Duration,
        on_progress: &dyn Fn(&str),
    ) -> Result<String, Error> {
        let start = Instant::now();
        loop {
            let doc = self.call(
                "DescribeImportSnapshotTasks",
                &[("ImportTaskId.1".into(), task_id.into())],
            )?;
            let detail = doc.find("snapshotTaskDetail");
            let text = |n: &str| {
                detail
                    .and_then(|d| d.child_text(n))
                    .unwrap_or_default()
                    .to_string()
            };
            let status = text("status");
            match status.as_str() {
                "completed" => {
                    return Self::field("DescribeImportSnapshotTasks", &doc, "snapshotId")
                }
                "deleted" | "deleting" => {
                    return Err(Error::Unexpected {
                        what: "ec2 ImportSnapshot".to_string(),
                        message: format!("import {task_id} failed: {}", text("statusMessage")),
                    })
                }
                _ if start.elapsed() > timeout => {
                    return Err(Error::Unexpected {
                        what: "ec2 ImportSnapshot".to_string(),
                        message: format!(
                            "import {task_id} still `{status}` after {}s",
                            timeout.as_secs()
                        ),
                    })
                }
                _ => {
                    on_progress(&format!("{status} {}%", text("progress")));
                    std::thread::sleep(Duration::from_secs(10));
                }
            }
        }
    }
}
