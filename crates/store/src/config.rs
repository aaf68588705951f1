//! etcd's command line: the same flags and `ETCD_*` environment variables, so that cloud-config's
//! `etcd2:` section and existing units configure us unchanged.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::tls;

/// A boolean flag that, like Go's, may be given bare (`--enable-v2`) or with a value (`--enable-v2=false`).
macro_rules! go_bool {
    () => {
        ArgAction::Set
    };
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferro-store",
    version,
    about = "An etcd-compatible key-value store (etcd 3.4 flags)"
)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `<name>.etcd`).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated wal directory (the log lives with the data here).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// Entries between snapshots of the state (log compaction).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (`name=peer-url,...`).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Discovery URL used to bootstrap the cluster.
    #[arg(long, env = "ETCD_DISCOVERY")]
    pub discovery: Option<String>,
    /// What to do ('exit' or 'proxy') when discovery finds the cluster full;
    /// etcd's default is 'proxy', which ferro-store does not implement: it exits either way.
    #[arg(long, env = "ETCD_DISCOVERY_FALLBACK")]
    pub discovery_fallback: Option<String>,
    /// HTTP proxy to use for traffic to discovery service.
    #[arg(long, env = "ETCD_DISCOVERY_PROXY")]
    pub discovery_proxy: Option<String>,
    /// DNS domain name used to bootstrap the initial cluster (not supported).
    #[arg(long, env = "ETCD_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// Comma-separated origins for CORS.
    #[arg(long, env = "ETCD_CORS")]
    pub cors: Option<String>,
    /// Accept etcd V2 client requests.
    #[arg(long, env = "ETCD_ENABLE_V2", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = go_bool!())]
    pub enable_v2: bool,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Logger ('zap' or 'capnslog'): accepted for compatibility, we log through tracing.
    #[arg(long, env = "ETCD_LOGGER")]
    pub logger: Option<String>,
    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Enable debug-level logging.
    #[arg(long, env = "ETCD_DEBUG", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = go_bool!())]
    pub debug: bool,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = go_bool!())]
    pub client_cert_auth: bool,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = go_bool!())]
    pub peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} is not supported by this version of ferro-store yet")]
    Unsupported { flag: &'static str },
    #[error("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"")]
    ConflictBootstrapFlags,
    #[error("--discovery-fallback must be exit or proxy, not {0:?}")]
    DiscoveryFallback(String),
    #[error("--discovery: {0}")]
    Discovery(#[from] crate::discovery::DiscoveryError),
    #[error("invalid --initial-cluster entry {0:?} (expected name=http[s]://host:port)")]
    ClusterEntry(String),
    #[error("--initial-cluster does not name this member ({0:?})")]
    NotInCluster(String),
    #[error("--initial-cluster-state must be new or existing, not {0:?}")]
    ClusterState(String),
    #[error("invalid URL {0:?} (expected http://host:port or https://host:port)")]
    Url(String),
    #[error("TLS key/cert ({}, {}) must be provided for {} url {url} with HTTPS scheme", names.cert, names.key, names.side)]
    HttpsWithoutCert {
        names: &'static tls::Names,
        url: String,
    },
    #[error("{0} is given without {1}: both or neither")]
    HalfPair(&'static str, &'static str),
    #[error(
        "{0} needs {1} (ferro-store does not check client certificates against the system's CAs)"
    )]
    CertAuthWithoutCa(&'static str, &'static str),
}

impl Config {
    /// Parses argv, accepting Go's single-dash long flags (`-name x`) as etcd does.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, clap::Error> {
        Self::try_parse_from(args.into_iter().enumerate().map(|(i, a)| {
            let single_dash_long = a.starts_with('-') && !a.starts_with("--") && a.len() > 2;
            if i > 0 && single_dash_long {
                format!("-{a}")
            } else {
                a
            }
        }))
    }

    /// `--discovery`, unless empty (cloud-config may write `ETCD_DISCOVERY=`).
    pub fn discovery_url(&self) -> Option<&str> {
        given(&self.discovery)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// Rejects what we would otherwise silently do wrong, with etcd 3.4's rules for TLS: an
    /// `https://` listen URL needs a certificate and key; an `http://` one serves plain HTTP even
    /// when they are given (warned at startup). The files themselves are checked by
    /// [`crate::tls`] when the server binds.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bootstraps = [
            self.discovery_url().is_some(),
            given(&self.initial_cluster).is_some(),
            given(&self.discovery_srv).is_some(),
        ];
        if bootstraps.iter().filter(|b| **b).count() > 1 {
            return Err(ConfigError::ConflictBootstrapFlags);
        }
        if given(&self.discovery_srv).is_some() {
            return Err(ConfigError::Unsupported {
                flag: "--discovery-srv",
            });
        }
        if let Some(f) = given(&self.discovery_fallback) {
            if !matches!(f, "exit" | "proxy") {
                return Err(ConfigError::DiscoveryFallback(f.to_string()));
            }
        }
        if let Some(d) = self.discovery_url() {
            crate::discovery::discovery_url(d)?;
        }
        let members = self.initial_members()?;
        if !members.iter().any(|(n, _)| *n == self.name) {
            return Err(ConfigError::NotInCluster(self.name.clone()));
        }
        if !matches!(self.initial_cluster_state.as_str(), "new" | "existing") {
            return Err(ConfigError::ClusterState(
                self.initial_cluster_state.clone(),
            ));
        }
        for (_, urls) in &members {
            for u in urls {
                host_port(u).ok_or_else(|| ConfigError::Url(u.clone()))?;
            }
        }
        for (listens, flags) in [
            (self.client_listen()?, self.client_tls()),
            (self.peer_listen()?, self.peer_tls()),
        ] {
            let n = flags.names;
            // Only https URLs use the files: with http ones alone, etcd ignores even half a pair.
            for l in listens.iter().filter(|l| l.tls) {
                match (&flags.cert_file, &flags.key_file) {
                    (Some(_), None) => return Err(ConfigError::HalfPair(n.cert, n.key)),
                    (None, Some(_)) => return Err(ConfigError::HalfPair(n.key, n.cert)),
                    _ => {}
                }
                if !flags.has_cert() {
                    return Err(ConfigError::HttpsWithoutCert {
                        names: n,
                        url: l.url.clone(),
                    });
                }
                if flags.client_cert_auth && flags.trusted_ca_file.is_none() {
                    return Err(ConfigError::CertAuthWithoutCa(n.auth, n.ca));
                }
            }
        }
        Ok(())
    }

    /// The client side's TLS flags.
    pub fn client_tls(&self) -> tls::Flags {
        tls::Flags {
            names: &tls::CLIENT,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
        }
    }

    /// The peer side's TLS flags (the peer listener and the peer client).
    pub fn peer_tls(&self) -> tls::Flags {
        tls::Flags {
            names: &tls::PEER,
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
        }
    }

    /// `--listen-client-urls`, parsed.
    pub fn client_listen(&self) -> Result<Vec<Listen>, ConfigError> {
        listen(&self.listen_client_urls)
    }

    /// `--listen-peer-urls`, parsed.
    pub fn peer_listen(&self) -> Result<Vec<Listen>, ConfigError> {
        listen(&self.listen_peer_urls)
    }

    /// `--initial-cluster` as (name, peer URLs) in first-seen order; a name may repeat to give a
    /// member several URLs, as in etcd. Without the flag: this member alone, at its advertised
    /// peer URLs.
    pub fn initial_members(&self) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let Some(c) = given(&self.initial_cluster) else {
            return Ok(vec![(self.name.clone(), self.peer_urls())]);
        };
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for entry in split_urls(c) {
            let (name, url) = entry
                .split_once('=')
                .filter(|(n, u)| !n.is_empty() && !u.is_empty())
                .ok_or_else(|| ConfigError::ClusterEntry(entry.clone()))?;
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.to_string()),
                None => out.push((name.to_string(), vec![url.to_string()])),
            }
        }
        Ok(out)
    }

    /// `host:port` of every client listener.
    pub fn client_listeners(&self) -> Result<Vec<String>, ConfigError> {
        Ok(self.client_listen()?.into_iter().map(|l| l.addr).collect())
    }

    pub fn advertise_client_urls(&self) -> Vec<String> {
        split_urls(&self.advertise_client_urls)
    }

    pub fn peer_urls(&self) -> Vec<String> {
        split_urls(&self.initial_advertise_peer_urls)
    }
}

/// One listen URL: where to bind, and whether it serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub url: String,
    /// `host:port`.
    pub addr: String,
    /// `https://`.
    pub tls: bool,
}

/// A flag's value unless absent or empty.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn listen(urls: &str) -> Result<Vec<Listen>, ConfigError> {
    split_urls(urls)
        .into_iter()
        .map(|url| {
            let addr = host_port(&url).ok_or_else(|| ConfigError::Url(url.clone()))?;
            let tls = url.starts_with("https://");
            Ok(Listen { url, addr, tls })
        })
        .collect()
}

pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// `http[s]://host:port[/]` → `host:port` (`localhost` stays a name; the listener resolves it).
pub fn host_port(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let hp = rest.trim_end_matches('/');
    (hp.contains(':') && !hp.contains('/')).then(|| hp.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::from_args(
            std::iter::once("ferro-store")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn cli_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn etcd_style_flags() {
        let c = parse(&[
            "-name",
            "n1",
            "--data-dir=/d",
            "--enable-v2",
            "--listen-client-urls",
            "http://127.0.0.1:1,http://[::1]:2",
        ])
        .unwrap();
        assert_eq!(c.name, "n1");
        assert!(c.enable_v2);
        assert_eq!(
            c.client_listeners().unwrap(),
            vec!["127.0.0.1:1", "[::1]:2"]
        );
        let c = parse(&["--enable-v2=false"]).unwrap();
        assert!(!c.enable_v2);
        assert_eq!(c.data_dir(), PathBuf::from("default.etcd"));
    }

    #[test]
    fn unknown_flags_are_an_error() {
        let e = parse(&["--no-such-flag"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("--no-such-flag"));
    }

    #[test]
    fn https_listen_url_without_a_cert_is_refused() {
        let c = parse(&["--listen-client-urls", "https://127.0.0.1:2379"]).unwrap();
        let e = c.check().unwrap_err();
        assert!(matches!(e, ConfigError::HttpsWithoutCert { .. }), "{e}");
        // etcd 3.4's words, naming the flags and the URL.
        assert_eq!(
            e.to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
        );
        let p = parse(&["--listen-peer-urls", "https://127.0.0.1:2380"]).unwrap();
        let e = p.check().unwrap_err().to_string();
        assert!(
            e.contains("--peer-cert-file, --peer-key-file")
                && e.contains("peer url https://127.0.0.1:2380"),
            "{e}"
        );
        // With both files, the URL is fine (the files are read when the server binds).
        let ok = parse(&[
            "--listen-client-urls=https://127.0.0.1:2379",
            "--cert-file=c.pem",
            "--key-file=k.pem",
        ])
        .unwrap();
        ok.check().unwrap();
        assert!(ok.client_listen().unwrap()[0].tls);
    }

    #[test]
    fn half_a_cert_pair_is_refused() {
        let https = "--listen-client-urls=https://127.0.0.1:2379";
        let e = parse(&[https, "--cert-file", "c.pem"])
            .unwrap()
            .check()
            .unwrap_err();
        assert!(
            matches!(e, ConfigError::HalfPair("--cert-file", "--key-file")),
            "{e}"
        );
        let peer = "--listen-peer-urls=https://127.0.0.1:2380";
        let e = parse(&[peer, "--peer-key-file", "k.pem"])
            .unwrap()
            .check()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::HalfPair("--peer-key-file", "--peer-cert-file")
            ),
            "{e}"
        );
        // On http URLs the files are not used, and etcd 3.4 starts: so do we.
        parse(&["--cert-file", "c.pem"]).unwrap().check().unwrap();
    }

    #[test]
    fn client_cert_auth_on_https_needs_a_ca() {
        let base = [
            "--listen-client-urls=https://127.0.0.1:2379",
            "--cert-file=c.pem",
            "--key-file=k.pem",
            "--client-cert-auth",
        ];
        let e = parse(&base).unwrap().check().unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::CertAuthWithoutCa("--client-cert-auth", "--trusted-ca-file")
            ),
            "{e}"
        );
        let mut with_ca = base.to_vec();
        with_ca.push("--trusted-ca-file=ca.pem");
        parse(&with_ca).unwrap().check().unwrap();
    }

    #[test]
    fn http_urls_with_tls_flags_are_accepted_as_etcd_does() {
        // etcd serves plain HTTP there and warns; so do we.
        let c = parse(&[
            "--cert-file=c.pem",
            "--key-file=k.pem",
            "--client-cert-auth",
            "--peer-cert-file=c.pem",
            "--peer-key-file=k.pem",
        ])
        .unwrap();
        c.check().unwrap();
        assert!(!c.client_listen().unwrap()[0].tls);
    }

    #[test]
    fn etcd_tls_environment_variables() {
        // clap reads them; a test of the mapping, not of the process environment.
        let cmd = Config::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        for (id, var) in [
            ("cert_file", "ETCD_CERT_FILE"),
            ("key_file", "ETCD_KEY_FILE"),
            ("client_cert_auth", "ETCD_CLIENT_CERT_AUTH"),
            ("trusted_ca_file", "ETCD_TRUSTED_CA_FILE"),
            ("peer_cert_file", "ETCD_PEER_CERT_FILE"),
            ("peer_key_file", "ETCD_PEER_KEY_FILE"),
            ("peer_client_cert_auth", "ETCD_PEER_CLIENT_CERT_AUTH"),
            ("peer_trusted_ca_file", "ETCD_PEER_TRUSTED_CA_FILE"),
            ("discovery", "ETCD_DISCOVERY"),
            ("discovery_fallback", "ETCD_DISCOVERY_FALLBACK"),
            ("discovery_proxy", "ETCD_DISCOVERY_PROXY"),
            ("discovery_srv", "ETCD_DISCOVERY_SRV"),
        ] {
            assert_eq!(env(id).as_deref(), Some(var));
        }
    }

    #[test]
    fn discovery_flags_are_checked_as_etcd_does() {
        let url = "http://127.0.0.1:2379/v2/keys/_etcd/registry/t";
        parse(&["--discovery", url]).unwrap().check().unwrap();
        parse(&["--discovery", url, "--discovery-fallback", "exit"])
            .unwrap()
            .check()
            .unwrap();
        let e = parse(&[
            "--discovery",
            url,
            "--initial-cluster",
            "default=http://1:2380",
        ])
        .unwrap()
        .check()
        .unwrap_err();
        assert!(matches!(e, ConfigError::ConflictBootstrapFlags), "{e}");
        assert!(e
            .to_string()
            .starts_with("multiple discovery or bootstrap flags are set"));
        let e = parse(&["--discovery-srv", "example.com"])
            .unwrap()
            .check()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Unsupported {
                    flag: "--discovery-srv"
                }
            ),
            "{e}"
        );
        let e = parse(&["--discovery", url, "--discovery-fallback", "retry"])
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--discovery-fallback must be exit or proxy, not \"retry\""
        );
        let e = parse(&["--discovery", "discovery.etcd.io/abc"])
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("discovery: invalid URL"), "{e}");
        // Empty values (cloud-config's `discovery: ''`) are no discovery.
        let c = parse(&["--discovery=", "--initial-cluster=default=http://1:2380"]).unwrap();
        c.check().unwrap();
        assert_eq!(c.discovery_url(), None);
    }

    #[test]
    fn initial_cluster_parses_like_etcd() {
        let c = parse(&[
            "--name",
            "b",
            "--initial-cluster",
            "a=http://1:2380,b=http://2:2380,b=http://3:2380",
        ])
        .unwrap();
        c.check().unwrap();
        let m = c.initial_members().unwrap();
        assert_eq!(m[0], ("a".into(), vec!["http://1:2380".into()]));
        assert_eq!(
            m[1],
            (
                "b".into(),
                vec!["http://2:2380".into(), "http://3:2380".into()]
            )
        );
        let other = parse(&["--name", "c", "--initial-cluster", "a=http://1:2380"]).unwrap();
        assert!(matches!(other.check(), Err(ConfigError::NotInCluster(_))));
        let bad = parse(&["--name", "a", "--initial-cluster", "a"]).unwrap();
        assert!(matches!(bad.check(), Err(ConfigError::ClusterEntry(_))));
        // Without the flag, this member alone.
        let alone = parse(&["--name", "x"]).unwrap();
        assert_eq!(alone.initial_members().unwrap()[0].0, "x");
    }
}
