//! Where user data comes from. One trait, each source implements what it knows (afterburn's
//! `MetadataProvider` pattern); the agent does not care which one answered.

use anyhow::{Context, Result};
use std::path::PathBuf;

pub trait Datasource {
    fn name(&self) -> String;
    /// The user data, or `None` when this source has none.
    fn user_data(&self) -> Result<Option<String>>;
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
