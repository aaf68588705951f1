//! The cloud-config schema (the part applied so far), as coreos-cloudinit reads it: keys accept
//! hyphens and underscores alike; unknown keys are warnings, not errors.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct CloudConfig {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default, alias = "ssh-authorized-keys")]
    pub ssh_authorized_keys: Vec<String>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default, alias = "write-files")]
    pub write_files: Vec<WriteFile>,
    #[serde(default)]
    pub coreos: Option<crate::coreos::Coreos>,
    /// Keys this agent does not know (or does not apply yet): reported as warnings.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub gecos: Option<String>,
    /// A crypt(3) hash, as in /etc/shadow.
    #[serde(default)]
    pub passwd: Option<String>,
    #[serde(default)]
    pub homedir: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default, alias = "ssh-authorized-keys")]
    pub ssh_authorized_keys: Vec<String>,
    #[serde(default)]
    pub system: bool,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct WriteFile {
    pub path: String,
    #[serde(default)]
    pub content: String,
    /// Octal, quoted ("0644") or not (0644 reads as the number 644 in YAML 1.2: taken as octal digits).
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// `user`, `user:group`; default root.
    #[serde(default)]
    pub owner: Option<String>,
    /// `b64`/`base64`, `gzip`/`gz`, `gz+b64`/`gzip+base64`…
    #[serde(default)]
    pub encoding: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(untagged)]
pub enum Permissions {
    Text(String),
    Number(u64),
}

impl Permissions {
    /// The mode, reading the digits as octal either way.
    pub fn mode(&self) -> Option<u32> {
        let digits = match self {
            Permissions::Text(s) => s.trim().to_string(),
            Permissions::Number(n) => n.to_string(),
        };
        let digits = digits.strip_prefix("0o").unwrap_or(&digits);
        u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
    }
}

/// Top-level keys coreos-cloudinit knows but this agent does not apply yet.
const KNOWN_NOT_APPLIED: &[&str] = &["manage_etc_hosts"];

impl CloudConfig {
    /// Canonical key names: coreos-cloudinit accepts `a-b` and `a_b` alike.
    pub fn warnings(&self) -> Vec<String> {
        let coreos = self.coreos.iter().flat_map(|c| c.warnings());
        self.other
            .keys()
            .map(|k| {
                let canon = k.replace('-', "_");
                if KNOWN_NOT_APPLIED.contains(&canon.as_str()) {
                    format!("{k:?} is not applied by this version of coreos-cloudinit")
                } else {
                    format!("unrecognized key {k:?}")
                }
            })
            .chain(coreos)
            .collect()
    }

    /// Value checks serde cannot do; each message names the key.
    pub fn errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (i, f) in self.write_files.iter().enumerate() {
            if !f.path.starts_with('/') {
                errs.push(format!(
                    "write_files[{i}].path {:?} is not absolute",
                    f.path
                ));
            }
            if let Some(p) = &f.permissions {
                if p.mode().is_none() {
                    errs.push(format!(
                        "write_files[{i}].permissions {p:?} is not an octal mode"
                    ));
                }
            }
            if let Some(e) = &f.encoding {
                if crate::apply::decode(&f.content, Some(e)).is_err() {
                    errs.push(format!(
                        "write_files[{i}]: content does not decode as {e:?}"
                    ));
                }
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                errs.push(format!("users[{i}].name is empty"));
            }
        }
        errs.extend(self.coreos.iter().flat_map(|c| c.errors()));
        if let Some(h) = &self.hostname {
            if h.is_empty()
                || h.len() > 63
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                errs.push(format!("hostname {h:?} is not a valid host name"));
            }
        }
        errs
    }
}
