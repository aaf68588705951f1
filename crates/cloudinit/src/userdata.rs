//! User data: a `#cloud-config` document, a `#!` script, or nothing. Parsing reports every
//! problem with its line and column, and nothing is applied unless parsing succeeded.

use crate::config::CloudConfig;

#[derive(Debug, PartialEq)]
pub enum UserData {
    CloudConfig(Box<CloudConfig>),
    Script(String),
    Empty,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("user data is neither a #cloud-config document nor a #! script")]
    Unknown,
}

/// What `--validate` shows: errors and warnings.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl UserData {
    pub fn parse(text: &str) -> Result<(UserData, Report), Error> {
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Ok((UserData::Empty, Report::default()));
        }
        if trimmed.starts_with("#!") {
            return Ok((UserData::Script(text.to_string()), Report::default()));
        }
        if !trimmed.starts_with("#cloud-config") {
            return Err(Error::Unknown);
        }
        let config: CloudConfig = match serde_yaml_ng::from_str::<Option<CloudConfig>>(text) {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                return Err(Error::Invalid(format!("{at}{e}")));
            }
        };
        let report = Report {
            errors: config.errors(),
            warnings: config.warnings(),
        };
        Ok((UserData::CloudConfig(Box::new(config)), report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_with_hyphen_keys() {
        let (ud, report) = UserData::parse(
            "#cloud-config\nhostname: node1\nssh-authorized-keys:\n  - ssh-ed25519 AAAA x\nwrite-files:\n  - path: /etc/x\n    permissions: 0600\n    content: hi\n",
        )
        .unwrap();
        let UserData::CloudConfig(c) = ud else {
            panic!("not a config")
        };
        assert_eq!(c.hostname.as_deref(), Some("node1"));
        assert_eq!(c.ssh_authorized_keys, vec!["ssh-ed25519 AAAA x"]);
        assert_eq!(
            c.write_files[0].permissions.as_ref().unwrap().mode(),
            Some(0o600)
        );
        assert_eq!(report, Report::default());
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = UserData::parse("#cloud-config\nhostname: a\nusers: [\n").unwrap_err();
        let Error::Invalid(msg) = err else { panic!() };
        assert!(msg.starts_with("line "), "{msg}");
    }

    #[test]
    fn wrong_type_is_an_error_and_unknown_key_a_warning() {
        assert!(UserData::parse("#cloud-config\nssh_authorized_keys: 5\n").is_err());
        let (_, report) =
            UserData::parse("#cloud-config\nfoo: 1\nmanage_etc_hosts: localhost\n").unwrap();
        assert_eq!(report.warnings.len(), 2, "{report:?}");
        assert!(report.errors.is_empty());
    }

    #[test]
    fn bad_values_are_errors() {
        let (_, report) = UserData::parse(
            "#cloud-config\nwrite_files:\n  - path: etc/x\n    permissions: \"0999\"\n  - path: /y\n    encoding: b64\n    content: '%%%'\n",
        )
        .unwrap();
        assert_eq!(report.errors.len(), 3, "{report:?}");
    }

    #[test]
    fn scripts_and_empty_and_garbage() {
        assert!(matches!(
            UserData::parse("#!/bin/sh\necho hi\n").unwrap().0,
            UserData::Script(_)
        ));
        assert_eq!(UserData::parse("  \n").unwrap().0, UserData::Empty);
        assert_eq!(UserData::parse("hello").unwrap_err(), Error::Unknown);
    }
}
