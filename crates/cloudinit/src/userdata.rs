//! User data: a `#cloud-config` document, a `#!` script, or nothing. Parsing validates the whole
//! document first and reports every problem with its line and column; a config with any error is
//! never returned, so it cannot be partly applied.

use crate::config::CloudConfig;
use crate::validate::Report;
use crate::yaml::Mark;

#[derive(Debug, PartialEq)]
pub enum UserData {
    CloudConfig(Box<CloudConfig>),
    Script(String),
    Empty,
}

const TOP: Mark = Mark { line: 1, column: 1 };

impl UserData {
    /// The user data and its warnings, or every problem found when there is any error.
    pub fn parse(text: &str) -> Result<(UserData, Report), Report> {
        let mut report = Report::default();
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Ok((UserData::Empty, report));
        }
        if trimmed.starts_with("#!") {
            return Ok((UserData::Script(text.to_string()), report));
        }
        let header = trimmed.lines().next().unwrap_or("").trim_end();
        if header != "#cloud-config" {
            report.error(TOP, "user data must start with \"#cloud-config\" or \"#!\"");
            return Err(report);
        }
        let doc = match crate::yaml::load(text) {
            Ok(d) => d,
            Err(e) => {
                report.error(e.mark, format!("YAML syntax: {}", e.message));
                return Err(report);
            }
        };
        for m in &doc.extra_documents {
            report.warning(*m, "only the first YAML document is used");
        }
        let canonical = match &doc.root {
            Some(root) => crate::validate::check(root, &mut report),
            None => serde_yaml_ng::Value::Mapping(Default::default()),
        };
        report.sort();
        if report.has_errors() {
            return Err(report);
        }
        match serde_yaml_ng::from_value::<CloudConfig>(canonical) {
            Ok(c) => Ok((UserData::CloudConfig(Box::new(c)), report)),
            Err(e) => {
                // Validation and the typed structs disagree: a bug here, still no partial apply.
                report.error(
                    TOP,
                    format!("internal error reading the validated config: {e}"),
                );
                Err(report)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> CloudConfig {
        match UserData::parse(text).unwrap() {
            (UserData::CloudConfig(c), _) => *c,
            other => panic!("{other:?}"),
        }
    }

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
        assert_eq!(c.write_files[0].mode(), 0o600);
        assert_eq!(report, Report::default());
    }

    #[test]
    fn numbers_where_strings_are_wanted_keep_their_text() {
        let c = config(
            "#cloud-config\nhostname: 1234\nwrite_files:\n  - path: /x\n    content: 0012\n",
        );
        assert_eq!(c.hostname.as_deref(), Some("1234"));
        assert_eq!(c.write_files[0].content, "0012");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = UserData::parse("#cloud-config\nhostname: a\nusers: [\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 4, column 1: error: YAML syntax"),
            "{msg}"
        );
    }

    #[test]
    fn warnings_alone_still_apply() {
        let (ud, report) =
            UserData::parse("#cloud-config\nfoo: 1\nmanage_etc_hosts: localhost\n").unwrap();
        assert_eq!(report.warnings().count(), 1, "{report}");
        let UserData::CloudConfig(c) = ud else {
            panic!()
        };
        assert_eq!(c.manage_etc_hosts.as_deref(), Some("localhost"));
    }

    #[test]
    fn scripts_and_empty_and_garbage() {
        assert!(matches!(
            UserData::parse("#!/bin/sh\necho hi\n").unwrap().0,
            UserData::Script(_)
        ));
        assert_eq!(UserData::parse("  \n").unwrap().0, UserData::Empty);
        assert_eq!(config("#cloud-config\n"), CloudConfig::default());
        let err = UserData::parse("hello").unwrap_err();
        assert!(err.to_string().contains("must start with"), "{err}");
    }
}
