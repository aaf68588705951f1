//! Compute Engine `images.insert` from a tarball in Cloud Storage, then waiting on the global
//! operation it returns.

use super::{error_message, Error};
use serde::Serialize;
use std::time::{Duration, Instant};

pub const DEFAULT_BASE: &str = "https://compute.googleapis.com";

/// Guest OS features of a Ferrocore image: it boots under UEFI (and BIOS), its kernel has
/// virtio-scsi with multiqueue and the gVNIC driver (CONFIG_GVE).
pub const GUEST_OS_FEATURES: &[&str] = &["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"];

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub name: String,
    pub family: String,
    pub description: String,
    pub raw_disk: RawDisk,
    pub guest_os_features: Vec<Feature>,
    pub architecture: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct RawDisk {
    /// `https://storage.googleapis.com/BUCKET/OBJECT`, the form the API documents.
    pub source: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct Feature {
    #[serde(rename = "type")]
    pub kind: String,
}

impl Image {
    /// An image of the tarball at `gs://bucket/object`.
    pub fn new(name: &str, family: &str, description: &str, bucket: &str, object: &str) -> Image {
        Image {
            name: name.into(),
            family: family.into(),
            description: description.into(),
            raw_disk: RawDisk {
                source: format!("https://storage.googleapis.com/{bucket}/{object}"),
            },
            guest_os_features: GUEST_OS_FEATURES
                .iter()
                .map(|f| Feature {
                    kind: f.to_string(),
                })
                .collect(),
            architecture: "X86_64".into(),
            labels: Default::default(),
        }
    }
}

/// GCE resource names: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`. Anything else becomes `-`.
pub fn resource_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "i-");
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

/// Label values: lowercase letters, digits, `-` and `_`, at most 63 characters.
pub fn label_value(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect()
}

pub struct Compute {
    pub base: String,
    pub token: String,
    pub poll: Duration,
    http: reqwest::blocking::Client,
}

impl Compute {
    pub fn new(base: &str, token: &str) -> Result<Compute, Error> {
        Ok(Compute {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            poll: Duration::from_secs(5),
            http: super::http_client()?,
        })
    }

    fn call(
        &self,
        what: &str,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<serde_json::Value, Error> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| Error::Api {
                what: what.into(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(Error::Api {
                what: what.into(),
                message: error_message(status, &body),
            });
        }
        serde_json::from_str(&body).map_err(|e| Error::Api {
            what: what.into(),
            message: format!("reading the answer: {e}"),
        })
    }

    /// `images.insert`; waits for the operation and returns the image's selfLink.
    pub fn insert_image(
        &self,
        project: &str,
        image: &Image,
        timeout: Duration,
    ) -> Result<String, Error> {
        let what = format!("images.insert {} in project {project}", image.name);
        let url = format!("{}/compute/v1/projects/{project}/global/images", self.base);
        let op = self.call(&what, self.http.post(&url).json(image))?;
        let op = self.wait(project, op, timeout, &what)?;
        Ok(op
            .get("targetLink")
            .and_then(|t| t.as_str())
            .unwrap_or(&image.name)
            .to_string())
    }

    fn wait(
        &self,
        project: &str,
        mut op: serde_json::Value,
        timeout: Duration,
        what: &str,
    ) -> Result<serde_json::Value, Error> {
        let start = Instant::now();
        loop {
            if let Some(errors) = op.pointer("/error/errors").and_then(|e| e.as_array()) {
                let messages: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.get("code").and_then(|c| c.as_str()).unwrap_or("ERROR"),
                            e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                        )
                    })
                    .collect();
                return Err(Error::Api {
                    what: what.into(),
                    message: messages.join("; "),
                });
            }
            if op.get("status").and_then(|s| s.as_str()) == Some("DONE") {
                return Ok(op);
            }
            if start.elapsed() > timeout {
                return Err(Error::Api {
                    what: what.into(),
                    message: format!("operation not done after {}s", timeout.as_secs()),
                });
            }
            std::thread::sleep(self.poll);
            let name = op
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| Error::Api {
                    what: what.into(),
                    message: "the operation has no name".into(),
                })?
                .to_string();
            let url = format!(
                "{}/compute/v1/projects/{project}/global/operations/{name}",
                self.base
            );
            op = self.call(what, self.http.get(&url))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_gce_pattern() {
        assert_eq!(
            resource_name("ferrocore-0.1.0-ABC123"),
            "ferrocore-0-1-0-abc123"
        );
        assert_eq!(resource_name("1x"), "i-1x");
        assert!(resource_name(&"a".repeat(80)).len() <= 63);
        assert_eq!(label_value("0.1.0"), "0-1-0");
    }

    #[test]
    fn the_request_carries_the_documented_fields() {
        let v =
            serde_json::to_value(Image::new("n", "ferrocore-dev", "d", "b", "o.tar.gz")).unwrap();
        assert_eq!(
            v["rawDisk"]["source"],
            "https://storage.googleapis.com/b/o.tar.gz"
        );
        assert_eq!(v["guestOsFeatures"][0]["type"], "UEFI_COMPATIBLE");
        assert_eq!(v["family"], "ferrocore-dev");
    }
}
