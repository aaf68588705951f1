//! Where user data comes from. One trait, each source implements what it knows (afterburn's
//! `MetadataProvider` pattern); the agent does not care which one answered.

use crate::fetch::{fetch, Request, Retry};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What a source knows about the machine, for `$private_ipv4`/`$public_ipv4` and /etc/environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    pub private_ipv4: Option<String>,
    pub public_ipv4: Option<String>,
    /// The instance's SSH keys (EC2's key pair, GCE's `ssh-keys`), authorized for `core`.
    pub ssh_public_keys: Vec<String>,
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        *self == Metadata::default()
    }
}

pub trait Datasource {
    fn name(&self) -> String;
    /// The user data, or `None` when this source has none.
    fn user_data(&self) -> Result<Option<String>>;
    fn metadata(&self) -> Result<Metadata> {
        Ok(Metadata::default())
    }
}

/// An OpenStack-style config drive mounted at a directory (filesystem label `config-2`).
pub struct ConfigDrive(pub PathBuf);

impl Datasource for ConfigDrive {
    fn name(&self) -> String {
        format!("config drive {}", self.0.display())
    }
    fn user_data(&self) -> Result<Option<String>> {
        let p = self.0.join("openstack/latest/user_data");
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
}

/// A local file.
pub struct File(pub PathBuf);

impl Datasource for File {
    fn name(&self) -> String {
        format!("file {}", self.0.display())
    }
    fn user_data(&self) -> Result<Option<String>> {
        std::fs::read_to_string(&self.0)
            .map(Some)
            .with_context(|| format!("reading {}", self.0.display()))
    }
}

/// A URL (`--from-url`).
pub struct Url {
    pub url: String,
    pub retry: Retry,
}

impl Datasource for Url {
    fn name(&self) -> String {
        format!("url {}", self.url)
    }
    fn user_data(&self) -> Result<Option<String>> {
        fetch(&Request::get(&self.url), &self.retry)
    }
}

/// `cloud-config-url=` on the kernel command line (`--from-proc-cmdline`).
pub struct ProcCmdline {
    pub cmdline: PathBuf,
    pub retry: Retry,
}

impl ProcCmdline {
    pub fn url(&self) -> Result<Option<String>> {
        let text = std::fs::read_to_string(&self.cmdline)
            .with_context(|| format!("reading {}", self.cmdline.display()))?;
        Ok(text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cloud-config-url="))
            .map(str::to_string))
    }
}

impl Datasource for ProcCmdline {
    fn name(&self) -> String {
        format!("cloud-config-url= in {}", self.cmdline.display())
    }
    fn user_data(&self) -> Result<Option<String>> {
        match self.url()? {
            Some(url) => fetch(&Request::get(&url), &self.retry),
            None => Ok(None),
        }
    }
}

/// EC2's instance metadata service, IMDSv2 (a session token first), base URL configurable.
pub struct Ec2 {
    pub base: String,
    pub retry: Retry,
}

impl Ec2 {
    fn token(&self) -> Result<String> {
        let url = format!("{}/latest/api/token", self.base.trim_end_matches('/'));
        let req = Request {
            method: reqwest::Method::PUT,
            url: &url,
            headers: Vec::new(),
        }
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600");
        fetch(&req, &self.retry)?.context("the metadata service has no IMDSv2 token endpoint")
    }
    fn get(&self, token: &str, path: &str) -> Result<Option<String>> {
        let url = format!("{}/latest/{path}", self.base.trim_end_matches('/'));
        fetch(
            &Request::get(&url).header("X-aws-ec2-metadata-token", token),
            &self.retry,
        )
    }
}

impl Datasource for Ec2 {
    fn name(&self) -> String {
        format!("EC2 metadata {}", self.base)
    }
    fn user_data(&self) -> Result<Option<String>> {
        let token = self.token()?;
        self.get(&token, "user-data")
    }
    fn metadata(&self) -> Result<Metadata> {
        let token = self.token()?;
        // `public-keys` lists `0=name` lines; each index has its `openssh-key`.
        let mut ssh_public_keys = Vec::new();
        for line in self
            .get(&token, "meta-data/public-keys/")?
            .unwrap_or_default()
            .lines()
        {
            let Some(index) = line.split('=').next().filter(|i| !i.trim().is_empty()) else {
                continue;
            };
            let path = format!("meta-data/public-keys/{}/openssh-key", index.trim());
            if let Some(key) = self.get(&token, &path)? {
                ssh_public_keys.extend(
                    key.lines()
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string),
                );
            }
        }
        Ok(Metadata {
            private_ipv4: self.get(&token, "meta-data/local-ipv4")?,
            public_ipv4: self.get(&token, "meta-data/public-ipv4")?,
            ssh_public_keys,
        })
    }
}

/// GCE's metadata server (`Metadata-Flavor: Google`), base URL configurable.
pub struct Gce {
    pub base: String,
    pub retry: Retry,
}

impl Gce {
    fn get(&self, path: &str) -> Result<Option<String>> {
        let url = format!(
            "{}/computeMetadata/v1/instance/{path}",
            self.base.trim_end_matches('/')
        );
        fetch(
            &Request::get(&url).header("Metadata-Flavor", "Google"),
            &self.retry,
        )
    }
}

impl Datasource for Gce {
    fn name(&self) -> String {
        format!("GCE metadata {}", self.base)
    }
    fn user_data(&self) -> Result<Option<String>> {
        self.get("attributes/user-data")
    }
    fn metadata(&self) -> Result<Metadata> {
        // `ssh-keys` lines are `user:key`; as on CoreOS, they all go to `core`.
        let ssh_public_keys = self
            .get("attributes/ssh-keys")?
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(':').map(|(_, key)| key.trim().to_string()))
            .filter(|k| !k.is_empty())
            .collect();
        Ok(Metadata {
            private_ipv4: self.get("network-interfaces/0/ip")?,
            public_ipv4: self.get("network-interfaces/0/access-configs/0/external-ip")?,
            ssh_public_keys,
        })
    }
}

/// `$private_ipv4` / `$public_ipv4` in the user data, as coreos-cloudinit substitutes them.
pub fn substitute(text: &str, md: &Metadata) -> String {
    let mut out = text.to_string();
    if let Some(ip) = &md.private_ipv4 {
        out = out.replace("$private_ipv4", ip);
    }
    if let Some(ip) = &md.public_ipv4 {
        out = out.replace("$public_ipv4", ip);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{serve, Route};
    use std::time::Duration;

    fn quick() -> Retry {
        Retry {
            attempts: 3,
            first_delay: Duration::from_millis(10),
        }
    }

    #[test]
    fn ec2_uses_an_imdsv2_token_and_reads_ips() {
        let s = serve(vec![
            Route {
                method: "PUT",
                path: "/latest/api/token",
                answers: vec![(200, "TOKEN1")],
                require_header: Some(("x-aws-ec2-metadata-token-ttl-seconds", "21600")),
            },
            Route {
                method: "GET",
                path: "/latest/user-data",
                answers: vec![(200, "#cloud-config\nhostname: a\n")],
                require_header: Some(("x-aws-ec2-metadata-token", "TOKEN1")),
            },
            Route {
                method: "GET",
                path: "/latest/meta-data/local-ipv4",
                answers: vec![(200, "10.0.0.5")],
                require_header: Some(("x-aws-ec2-metadata-token", "TOKEN1")),
            },
            Route {
                method: "GET",
                path: "/latest/meta-data/public-ipv4",
                answers: vec![(200, "203.0.113.9")],
                require_header: Some(("x-aws-ec2-metadata-token", "TOKEN1")),
            },
        ]);
        let ec2 = Ec2 {
            base: s.base.clone(),
            retry: quick(),
        };
        assert_eq!(
            ec2.user_data().unwrap().as_deref(),
            Some("#cloud-config\nhostname: a\n")
        );
        let md = ec2.metadata().unwrap();
        assert_eq!(
            md,
            Metadata {
                private_ipv4: Some("10.0.0.5".into()),
                public_ipv4: Some("203.0.113.9".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            substitute("x=$private_ipv4 y=$public_ipv4", &md),
            "x=10.0.0.5 y=203.0.113.9"
        );
    }

    #[test]
    fn gce_sends_metadata_flavor() {
        let s = serve(vec![
            Route {
                method: "GET",
                path: "/computeMetadata/v1/instance/attributes/user-data",
                answers: vec![(200, "#!/bin/sh\n")],
                require_header: Some(("metadata-flavor", "Google")),
            },
            Route {
                method: "GET",
                path: "/computeMetadata/v1/instance/network-interfaces/0/ip",
                answers: vec![(200, "10.1.2.3")],
                require_header: Some(("metadata-flavor", "Google")),
            },
        ]);
        let gce = Gce {
            base: s.base.clone(),
            retry: quick(),
        };
        assert_eq!(gce.user_data().unwrap().as_deref(), Some("#!/bin/sh\n"));
        // No external IP: 404 means "none", not an error.
        assert_eq!(
            gce.metadata().unwrap(),
            Metadata {
                private_ipv4: Some("10.1.2.3".into()),
                public_ipv4: None,
                ..Default::default()
            }
        );
    }

    #[test]
    fn url_retries_server_errors_then_succeeds() {
        let s = serve(vec![Route {
            method: "GET",
            path: "/cc",
            answers: vec![(503, "busy"), (500, "oops"), (200, "#cloud-config\n")],
            require_header: None,
        }]);
        let url = Url {
            url: format!("{}/cc", s.base),
            retry: quick(),
        };
        assert_eq!(url.user_data().unwrap().as_deref(), Some("#cloud-config\n"));
        assert_eq!(s.requests.lock().unwrap().len(), 3);
    }

    #[test]
    fn url_gives_up_with_a_clear_message() {
        let s = serve(vec![Route {
            method: "GET",
            path: "/cc",
            answers: vec![(503, "busy")],
            require_header: None,
        }]);
        let url = Url {
            url: format!("{}/cc", s.base),
            retry: quick(),
        };
        let err = url.user_data().unwrap_err().to_string();
        assert!(
            err.contains("giving up on") && err.contains("after 3 attempts"),
            "{err}"
        );
        // Nothing listening at all: also a clear give-up.
        let dead = Url {
            url: "http://127.0.0.1:9/cc".into(),
            retry: quick(),
        };
        assert!(dead
            .user_data()
            .unwrap_err()
            .to_string()
            .contains("giving up on http://127.0.0.1:9/cc"));
    }

    #[test]
    fn proc_cmdline_finds_cloud_config_url() {
        let s = serve(vec![Route {
            method: "GET",
            path: "/u",
            answers: vec![(200, "#cloud-config\nhostname: p\n")],
            require_header: None,
        }]);
        let dir = tempfile::tempdir().unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(
            &cmdline,
            format!("console=ttyS0 cloud-config-url={}/u quiet\n", s.base),
        )
        .unwrap();
        let src = ProcCmdline {
            cmdline: cmdline.clone(),
            retry: quick(),
        };
        assert_eq!(
            src.user_data().unwrap().as_deref(),
            Some("#cloud-config\nhostname: p\n")
        );
        std::fs::write(&cmdline, "console=ttyS0\n").unwrap();
        assert_eq!(src.user_data().unwrap(), None);
    }
}
