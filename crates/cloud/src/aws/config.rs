//! Credentials and region as the AWS CLI finds them: the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL`), else the profile (`AWS_PROFILE`, default `default`) in
//! `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`/`AWS_CONFIG_FILE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from, for error messages ("environment", "profile default in …").
    pub source: String,
}

// Never print the secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Everything a client needs to know before its first request.
#[derive(Clone, Debug)]
pub struct Settings {
    pub credentials: Credentials,
    pub region: String,
    /// One endpoint for every service (an emulator), instead of `https://<service>.<region>.amazonaws.com`.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile in {credentials} with AWS_PROFILE (looked for profile `{profile}`)")]
    NoCredentials {
        profile: String,
        credentials: String,
    },
    #[error("profile `{profile}` in {file} has aws_access_key_id but no aws_secret_access_key")]
    IncompleteProfile { profile: String, file: String },
    #[error("no AWS region: pass --region, set AWS_REGION, or set region in profile `{profile}` of {config}")]
    NoRegion { profile: String, config: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Where to look: the environment and the home directory, passed in so tests need no globals.
pub struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub home: PathBuf,
}

impl Sources<'_> {
    pub fn process() -> Sources<'static> {
        Sources {
            env: &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into()),
        }
    }

    fn profile(&self) -> String {
        (self.env)("AWS_PROFILE").unwrap_or_else(|| "default".into())
    }

    fn credentials_file(&self) -> PathBuf {
        (self.env)("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.home.join(".aws/credentials"))
    }

    fn config_file(&self) -> PathBuf {
        (self.env)("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.home.join(".aws/config"))
    }

    /// `region`, `endpoint` override: explicit values win over the environment and profile.
    pub fn settings(
        &self,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let profile = self.profile();
        let config = self.config_file();
        let config_section = read_ini(&config)?
            .remove(&format!("profile {profile}"))
            .or_else(|| {
                // The default profile is `[default]` in the config file too.
                (profile == "default")
                    .then(|| read_ini(&config).ok()?.remove("default"))
                    .flatten()
            });
        let region = region
            .map(str::to_string)
            .or_else(|| (self.env)("AWS_REGION"))
            .or_else(|| (self.env)("AWS_DEFAULT_REGION"))
            .or_else(|| config_section.as_ref()?.get("region").cloned())
            .ok_or_else(|| ConfigError::NoRegion {
                profile: profile.clone(),
                config: config.display().to_string(),
            })?;
        let endpoint_url = endpoint_url
            .map(str::to_string)
            .or_else(|| (self.env)("AWS_ENDPOINT_URL"))
            .or_else(|| config_section.as_ref()?.get("endpoint_url").cloned());
        Ok(Settings {
            credentials: self.credentials(&profile, config_section.as_ref())?,
            region,
            endpoint_url,
        })
    }

    fn credentials(
        &self,
        profile: &str,
        config_section: Option<&BTreeMap<String, String>>,
    ) -> Result<Credentials, ConfigError> {
        if let (Some(id), Some(secret)) = (
            (self.env)("AWS_ACCESS_KEY_ID"),
            (self.env)("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: (self.env)("AWS_SESSION_TOKEN"),
                source: "the environment (AWS_ACCESS_KEY_ID)".into(),
            });
        }
        let file = self.credentials_file();
        let from_credentials = read_ini(&file)?.remove(profile);
        for (section, path) in [
            (from_credentials.as_ref(), &file),
            (config_section, &self.config_file()),
        ] {
            let Some(s) = section else { continue };
            let Some(id) = s.get("aws_access_key_id") else {
                continue;
            };
            let secret =
                s.get("aws_secret_access_key")
                    .ok_or_else(|| ConfigError::IncompleteProfile {
                        profile: profile.into(),
                        file: path.display().to_string(),
                    })?;
            return Ok(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: s.get("aws_session_token").cloned(),
                source: format!("profile `{profile}` in {}", path.display()),
            });
        }
        Err(ConfigError::NoCredentials {
            profile: profile.into(),
            credentials: file.display().to_string(),
        })
    }
}

/// The AWS CLI's INI files: `[section]`, `key = value`, `#`/`;` comments. A missing file is empty.
fn read_ini(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    Ok(parse_ini(&text))
}

fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.get_mut(s)
                .expect("section inserted")
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sources<'a>(env: &'a dyn Fn(&str) -> Option<String>, home: &Path) -> Sources<'a> {
        Sources {
            env,
            home: home.into(),
        }
    }

    #[test]
    fn environment_wins_and_the_secret_is_never_printed() {
        let home = tempfile::tempdir().unwrap();
        let vars: HashMap<&str, &str> = [
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let s = sources(&env, home.path()).settings(None, None).unwrap();
        assert_eq!(s.credentials.access_key_id, "AKIDENV");
        assert_eq!(s.credentials.session_token.as_deref(), Some("tok"));
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.endpoint_url, None);
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let explicit = sources(&env, home.path())
            .settings(Some("us-east-2"), Some("http://127.0.0.1:5000"))
            .unwrap();
        assert_eq!(explicit.region, "us-east-2");
        assert_eq!(
            explicit.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
    }

    #[test]
    fn profile_files_as_the_aws_cli_writes_them() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = x\n\n[build]\n# ci\naws_access_key_id=AKIDBUILD\naws_secret_access_key=y\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[default]\nregion = us-west-2\n[profile build]\nregion = ap-south-1\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let d = sources(&none, home.path()).settings(None, None).unwrap();
        assert_eq!(
            (d.credentials.access_key_id.as_str(), d.region.as_str()),
            ("AKIDDEF", "us-west-2")
        );
        let build = |k: &str| (k == "AWS_PROFILE").then(|| "build".to_string());
        let b = sources(&build, home.path()).settings(None, None).unwrap();
        assert_eq!(
            (b.credentials.access_key_id.as_str(), b.region.as_str()),
            ("AKIDBUILD", "ap-south-1")
        );
        assert!(b.credentials.source.contains("profile `build`"));
    }

    #[test]
    fn missing_credentials_and_region_say_where_we_looked() {
        let home = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let err = sources(&none, home.path())
            .settings(Some("us-east-1"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID") && err.contains(".aws/credentials"),
            "{err}"
        );
        let keys = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("A".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("B".into()),
            _ => None,
        };
        let err = sources(&keys, home.path())
            .settings(None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no AWS region"), "{err}");
    }
}
