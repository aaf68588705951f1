//! etcd's v2 discovery protocol (etcd 3.4's `etcdserver/api/v2discovery`): bootstrapping a new
//! cluster through a directory of any v2 keys service (`discovery.etcd.io`, an etcd, or a
//! ferro-store) instead of `--initial-cluster`.
//!
//! The directory holds `_config/size`; every founding member creates `<dir>/<member-id-hex>` with
//! `name=peer-url[,name=peer-url2]` and waits until `size` members have registered: the first
//! `size` by `createdIndex` are the cluster.

use std::time::Duration;

use serde::Deserialize;

use crate::config::host_port;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "discovery: invalid URL {0:?} (expected http[s]://host[:port]/path-of-a-v2-keys-directory)"
    )]
    InvalidUrl(String),
    #[error("discovery: invalid proxy address {0:?}")]
    InvalidProxy(String),
    #[error("discovery: size key not found ({0})")]
    SizeNotFound(String),
    #[error(
        "discovery: size key is bad ({url} holds {value:?}, expected a member count of 1 or more)"
    )]
    BadSizeKey { url: String, value: String },
    #[error("discovery: found duplicate id ({0} is registered already)")]
    DuplicateId(String),
    #[error("discovery: found duplicate name ({0})")]
    DuplicateName(String),
    #[error("discovery: cluster has duplicate url ({0})")]
    DuplicateUrl(String),
    #[error("discovery: invalid URL in the registered cluster {0:?}")]
    InvalidRegistration(String),
    #[error("discovery: cluster is full")]
    FullCluster,
    #[error(
        "discovery: too many retries: the discovery service at {url} did not answer ({error})"
    )]
    TooManyRetries { url: String, error: String },
    #[error("discovery: registering at {url}: no answer ({error})")]
    NoAnswer { url: String, error: String },
    #[error("discovery: bad discovery endpoint {url}: {detail}")]
    BadEndpoint { url: String, detail: String },
    #[error("discovery: {url}: {code}: {message} ({cause})")]
    Etcd {
        url: String,
        code: u64,
        message: String,
        cause: String,
    },
}

impl DiscoveryError {
    /// What the user can do about it, in etcd's words (etcdmain logs these after the error).
    pub fn hints(&self, name: &str, token: &str, data_dir: &std::path::Path) -> Vec<String> {
        match self {
            DiscoveryError::DuplicateId(_) => vec![
                format!("member {name:?} has previously registered with discovery service token ({token})"),
                format!("but ferro-store could not find valid cluster configuration in the given data dir ({})", data_dir.display()),
                "please check the given data dir path if the previous bootstrap succeeded".into(),
                "or use a new discovery token if the previous bootstrap failed".into(),
            ],
            DiscoveryError::DuplicateName(_) => vec![
                format!("member with duplicated name has registered with discovery service token ({token})"),
                "please check (cURL) the discovery token for more information".into(),
                "please do not reuse the discovery token and generate a new one to bootstrap the cluster".into(),
            ],
            DiscoveryError::TooManyRetries { .. } | DiscoveryError::InvalidProxy(_) => Vec::new(),
            _ => vec![
                format!("discovery token {token} was used, but failed to bootstrap the cluster"),
                "please generate a new discovery token and try to bootstrap again".into(),
            ],
        }
    }
}

/// How long to keep trying an unreachable discovery service: `retries` waits, doubling from
/// `first`. etcd retries forever (2 s doubling to 256 s); we give up after 1 + 2 + 4 s and exit,
/// naming the URL: the unit manager restarts the member, and a wrong URL is said at once.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            retries: 3,
        }
    }
}

/// A v2 keys node, as much of it as discovery reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub created_index: u64,
    #[serde(default)]
    pub modified_index: u64,
}

impl Node {
    /// The last path component (`path.Base`): a member's ID in hex, or `_config`.
    pub fn base(&self) -> &str {
        self.key
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }
}

/// A v2 keys answer: an action on a node.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    pub action: String,
    pub node: Node,
}

/// etcd's v2 error body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EtcdErrorBody {
    error_code: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    cause: String,
}

const KEY_NOT_FOUND: u64 = 100;
const NODE_EXIST: u64 = 105;
const EVENT_INDEX_CLEARED: u64 = 401;

/// The registered members of a directory listing, oldest registration first (`_config` is not a
/// member).
pub fn registrations(dir: &Node) -> Vec<Node> {
    let mut nodes: Vec<Node> = dir
        .nodes
        .iter()
        .filter(|n| n.base() != "_config")
        .cloned()
        .collect();
    nodes.sort_by_key(|n| n.created_index);
    nodes
}

/// etcd's rule: the cluster is full when `size` others registered before us (or, not
/// registered yet, when `size` are registered).
pub fn is_full(sorted: &[Node], size: u64, self_id: &str) -> bool {
    for (i, n) in sorted.iter().enumerate() {
        if n.base() == self_id {
            return false;
        }
        if i as u64 + 1 >= size {
            return true;
        }
    }
    false
}

/// The size key's value: a member count of at least 1.
pub fn parse_size(url: &str, value: &str) -> Result<u64, DiscoveryError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(DiscoveryError::BadSizeKey {
            url: url.to_string(),
            value: value.to_string(),
        }),
    }
}

/// The first `size` registrations as `--initial-cluster` (name, peer URLs) in registration
/// order: each value is `name=url[,name=url]`. Like etcd's `nodesToCluster`, fewer distinct
/// names than `size` means a name registered twice (under two IDs).
pub fn nodes_to_cluster(
    nodes: &[Node],
    size: u64,
) -> Result<Vec<(String, Vec<String>)>, DiscoveryError> {
    let joined = nodes
        .iter()
        .map(|n| n.value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in crate::config::split_urls(&joined) {
        let (name, url) = pair
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && host_port(u).is_some())
            .ok_or_else(|| DiscoveryError::InvalidRegistration(joined.clone()))?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.len() as u64 != size {
        return Err(DiscoveryError::DuplicateName(joined));
    }
    let mut urls: Vec<&String> = out.iter().flat_map(|(_, u)| u).collect();
    urls.sort();
    if urls.windows(2).any(|w| w[0] == w[1]) {
        return Err(DiscoveryError::DuplicateUrl(joined));
    }
    Ok(out)
}

/// `name=url,...` (what a member registers, and the `--initial-cluster` discovery yields).
pub fn cluster_string(members: &[(String, Vec<String>)]) -> String {
    members
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why one request failed.
enum Fail {
    /// The service did not answer (connection, timeout, 5xx): worth another try. `refused`: the
    /// request was never sent (no connection).
    Unreachable {
        refused: bool,
        error: String,
    },
    /// The service answered with etcd's error JSON.
    Etcd(u64, DiscoveryError),
    Fatal(DiscoveryError),
}

/// A client of one discovery directory, registering one member.
pub struct Discovery {
    http: reqwest::Client,
    /// The directory's URL, without a trailing slash.
    url: String,
    /// This member's ID in hex: its key in the directory.
    self_id: String,
    backoff: Backoff,
    /// Failed attempts in a row.
    failures: u32,
    /// The directory's key path as the service names it (`/_etcd/registry/TOKEN`), to tell its
    /// direct children in watch events.
    dir_key: Option<String>,
}

/// Per-request timeout (etcd's client `DefaultRequestTimeout`); watches wait as long as it takes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl Discovery {
    /// `durl` is the `--discovery` URL, `proxy` the `--discovery-proxy` (an HTTP proxy for
    /// reaching it; without one no proxy is used, whatever `HTTP_PROXY` says, as etcd).
    pub fn new(
        durl: &str,
        proxy: Option<&str>,
        self_id: u64,
        backoff: Backoff,
    ) -> Result<Discovery, DiscoveryError> {
        let url = discovery_url(durl)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30));
        builder = match proxy.filter(|p| !p.is_empty()) {
            None => builder.no_proxy(),
            Some(p) => {
                // etcd's sanitising: "host:port" means http://host:port.
                let with_scheme = if p.starts_with("http://") || p.starts_with("https://") {
                    p.to_string()
                } else {
                    format!("http://{p}")
                };
                let proxy = reqwest::Proxy::all(&with_scheme)
                    .map_err(|_| DiscoveryError::InvalidProxy(p.to_string()))?;
                tracing::info!(proxy_url = %with_scheme, "running proxy with discovery");
                builder.proxy(proxy)
            }
        };
        let http = builder.build().map_err(|e| DiscoveryError::BadEndpoint {
            url: url.clone(),
            detail: format!("building the HTTP client: {e}"),
        })?;
        Ok(Discovery {
            http,
            url,
            self_id: format!("{self_id:x}"),
            backoff,
            failures: 0,
            dir_key: None,
        })
    }

    /// Registers this member with `config` (`name=url,...`), waits for the others and returns
    /// the cluster: the first `size` registrations.
    pub async fn join_cluster(
        &mut self,
        config: &str,
    ) -> Result<Vec<(String, Vec<String>)>, DiscoveryError> {
        // Fast path: a full cluster is refused before registering.
        self.check_cluster().await?;
        self.create_self(config).await?;
        let (nodes, size, index) = self.check_cluster().await?;
        let all = self.wait_nodes(nodes, size, index).await?;
        nodes_to_cluster(&all, size)
    }

    /// The size and the registrations so far (oldest first), with the index to watch after.
    async fn check_cluster(&mut self) -> Result<(Vec<Node>, u64, u64), DiscoveryError> {
        loop {
            match self.try_check_cluster().await {
                Ok(v) => {
                    self.failures = 0;
                    return Ok(v);
                }
                Err(Fail::Unreachable { error, .. }) => {
                    self.back_off("cluster status check", error).await?
                }
                Err(Fail::Etcd(_, e) | Fail::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn try_check_cluster(&mut self) -> Result<(Vec<Node>, u64, u64), Fail> {
        let size_url = format!("{}/_config/size", self.url);
        let size = match self.get(&size_url, Some(REQUEST_TIMEOUT)).await {
            Ok((a, _)) => parse_size(&size_url, &a.node.value).map_err(Fail::Fatal)?,
            Err(Fail::Etcd(KEY_NOT_FOUND, _)) => {
                return Err(Fail::Fatal(DiscoveryError::SizeNotFound(size_url)))
            }
            Err(e) => return Err(e),
        };
        let (a, index) = self.get(&self.url, Some(REQUEST_TIMEOUT)).await?;
        self.dir_key = Some(a.node.key.trim_end_matches('/').to_string());
        let nodes = registrations(&a.node);
        if is_full(&nodes, size, &self.self_id) {
            return Err(Fail::Fatal(DiscoveryError::FullCluster));
        }
        Ok((nodes, size, index))
    }

    /// Creates our key (`prevExist=false`): it existing already is etcd's ErrDuplicateID.
    async fn create_self(&mut self, config: &str) -> Result<(), DiscoveryError> {
        let key_url = format!("{}/{}", self.url, self.self_id);
        let created = loop {
            let req = self
                .http
                .put(format!("{key_url}?prevExist=false"))
                .form(&[("value", config)])
                .timeout(REQUEST_TIMEOUT);
            match self.send(req, &key_url).await {
                Ok((a, _)) => break a.node.created_index,
                Err(Fail::Etcd(NODE_EXIST, _)) => return Err(DiscoveryError::DuplicateId(key_url)),
                // Only a refused connection is retried: a request that may have been applied
                // would find its own key the second time.
                Err(Fail::Unreachable {
                    refused: true,
                    error,
                }) => self.back_off("registering", error).await?,
                Err(Fail::Unreachable { error, .. }) => {
                    return Err(DiscoveryError::NoAnswer {
                        url: key_url,
                        error,
                    })
                }
                Err(Fail::Etcd(_, e) | Fail::Fatal(e)) => return Err(e),
            }
        };
        self.failures = 0;
        // etcd waits to see its key on the server it talks to (the service may be a cluster
        // whose members lag); the event is in the history, so this returns at once.
        let watch = format!("{key_url}?wait=true&waitIndex={created}");
        loop {
            match self.get(&watch, None).await {
                Ok(_) => return Ok(()),
                Err(Fail::Unreachable { error, .. }) => self.back_off("registering", error).await?,
                Err(Fail::Etcd(_, e) | Fail::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Waits until `size` members have registered, watching the directory from `index + 1`.
    async fn wait_nodes(
        &mut self,
        mut nodes: Vec<Node>,
        mut size: u64,
        mut index: u64,
    ) -> Result<Vec<Node>, DiscoveryError> {
        'listing: loop {
            nodes.truncate(size as usize);
            for n in &nodes {
                if n.base() == self.self_id {
                    tracing::info!(discovery_url = %self.url, self_id = n.base(), "found self from discovery server");
                } else {
                    tracing::info!(discovery_url = %self.url, peer = n.base(), "found peer from discovery server");
                }
            }
            while (nodes.len() as u64) < size {
                tracing::info!(
                    discovery_url = %self.url,
                    found_peers = nodes.len(),
                    needed_peers = size - nodes.len() as u64,
                    "found peers from discovery server; waiting for more"
                );
                let watch = format!(
                    "{}?wait=true&recursive=true&waitIndex={}",
                    self.url,
                    index + 1
                );
                match self.get(&watch, None).await {
                    Ok((a, _)) => {
                        self.failures = 0;
                        index = index.max(a.node.modified_index);
                        if self.is_registration(&a) && !nodes.iter().any(|n| n.key == a.node.key) {
                            tracing::info!(discovery_url = %self.url, peer = a.node.base(), "found peer from discovery server");
                            nodes.push(a.node);
                        }
                    }
                    Err(e) => {
                        match e {
                            Fail::Unreachable { error, .. } => {
                                self.back_off("waiting for other nodes", error).await?
                            }
                            // The events we missed left the service's history: list again.
                            Fail::Etcd(EVENT_INDEX_CLEARED, _) => {}
                            Fail::Etcd(_, e) | Fail::Fatal(e) => return Err(e),
                        }
                        (nodes, size, index) = self.check_cluster().await?;
                        continue 'listing;
                    }
                }
            }
            tracing::info!(discovery_url = %self.url, found_peers = nodes.len(), "found all needed peers from discovery server");
            return Ok(nodes);
        }
    }

    /// A member's key created in the directory (not `_config`, not a deletion or an update).
    fn is_registration(&self, a: &Answer) -> bool {
        let n = &a.node;
        let parent = n.key.rsplit_once('/').map(|(p, _)| p);
        matches!(a.action.as_str(), "create" | "set")
            && !n.dir
            && n.created_index == n.modified_index
            && n.base() != "_config"
            && parent.is_some()
            && parent == self.dir_key.as_deref()
    }

    async fn get(&self, url: &str, timeout: Option<Duration>) -> Result<(Answer, u64), Fail> {
        let mut req = self.http.get(url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        self.send(req, url).await
    }

    /// Sends a request; the answer with its `X-Etcd-Index`.
    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<(Answer, u64), Fail> {
        let unreachable = |e: reqwest::Error| Fail::Unreachable {
            refused: e.is_connect(),
            error: describe(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let index = resp
            .headers()
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = resp.bytes().await.map_err(unreachable)?;
        if status.is_server_error() {
            return Err(Fail::Unreachable {
                refused: false,
                error: format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
            });
        }
        let bad = |detail: String| {
            Fail::Fatal(DiscoveryError::BadEndpoint {
                url: url.to_string(),
                detail,
            })
        };
        if !status.is_success() {
            let e: EtcdErrorBody = serde_json::from_slice(&body).map_err(|_| {
                bad(format!(
                    "{status} without etcd's error JSON: {}",
                    String::from_utf8_lossy(&body).trim()
                ))
            })?;
            return Err(Fail::Etcd(
                e.error_code,
                DiscoveryError::Etcd {
                    url: url.to_string(),
                    code: e.error_code,
                    message: e.message,
                    cause: e.cause,
                },
            ));
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("not a v2 keys answer ({e})")))?;
        let index = index.unwrap_or(answer.node.modified_index);
        Ok((answer, index))
    }

    /// Waits before the next attempt, or gives up after `backoff.retries` failures in a row.
    async fn back_off(&mut self, step: &str, error: String) -> Result<(), DiscoveryError> {
        if self.failures >= self.backoff.retries {
            return Err(DiscoveryError::TooManyRetries {
                url: self.url.clone(),
                error,
            });
        }
        let wait = self.backoff.first * 2u32.pow(self.failures);
        self.failures += 1;
        tracing::warn!(url = %self.url, %error, backoff = ?wait, "{step}: error connecting to the discovery service, retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// A reqwest error with its causes (its own Display omits the interesting part).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The directory URL: http(s), a host, no query; without the trailing slash.
pub fn discovery_url(durl: &str) -> Result<String, DiscoveryError> {
    let bad = || DiscoveryError::InvalidUrl(durl.to_string());
    let u = reqwest::Url::parse(durl).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    let mut u = u;
    u.set_query(None);
    u.set_fragment(None);
    Ok(u.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(json: &str) -> Node {
        serde_json::from_str::<Answer>(json).unwrap().node
    }

    #[test]
    fn a_listing_is_ordered_by_created_index_without_config() {
        let dir = listing(
            r#"{"action":"get","node":{"key":"/_etcd/registry/t","dir":true,"nodes":[
            {"key":"/_etcd/registry/t/c","value":"c=http://3:2380","modifiedIndex":9,"createdIndex":9},
            {"key":"/_etcd/registry/t/_config","dir":true,"modifiedIndex":4,"createdIndex":4},
            {"key":"/_etcd/registry/t/a","value":"a=http://1:2380","modifiedIndex":12,"createdIndex":5},
            {"key":"/_etcd/registry/t/b","value":"b=http://2:2380","modifiedIndex":7,"createdIndex":7}],
            "modifiedIndex":4,"createdIndex":4}}"#,
        );
        let r = registrations(&dir);
        let ids: Vec<&str> = r.iter().map(Node::base).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            nodes_to_cluster(&r, 3).unwrap(),
            vec![
                ("a".to_string(), vec!["http://1:2380".to_string()]),
                ("b".to_string(), vec!["http://2:2380".to_string()]),
                ("c".to_string(), vec!["http://3:2380".to_string()]),
            ]
        );
    }

    fn node(id: &str, created: u64, value: &str) -> Node {
        Node {
            key: format!("/_etcd/registry/t/{id}"),
            value: value.into(),
            dir: false,
            nodes: Vec::new(),
            created_index: created,
            modified_index: created,
        }
    }

    #[test]
    fn full_is_etcds_rule() {
        let n = [node("a", 1, ""), node("b", 2, ""), node("c", 3, "")];
        // Among the first `size`: not full, whoever registered after.
        assert!(!is_full(&n, 2, "a"));
        assert!(!is_full(&n, 2, "b"));
        assert!(is_full(&n, 2, "c"));
        // Not registered yet: full once `size` are.
        assert!(is_full(&n, 3, "z"));
        assert!(!is_full(&n[..2], 3, "z"));
        assert!(!is_full(&[], 1, "z"));
        assert!(is_full(&n[..1], 1, "z"));
    }

    #[test]
    fn a_name_registered_twice_is_a_duplicate_name() {
        let n = [
            node("a", 1, "x=http://1:2380"),
            node("b", 2, "x=http://2:2380"),
        ];
        let e = nodes_to_cluster(&n, 2).unwrap_err();
        assert!(matches!(e, DiscoveryError::DuplicateName(_)), "{e}");
        assert!(e.to_string().starts_with("discovery: found duplicate name"));
    }

    #[test]
    fn several_urls_of_one_member_and_bad_values() {
        let n = [
            node("a", 1, "x=http://1:2380,x=http://1:2381"),
            node("b", 2, "y=http://2:2380"),
        ];
        let c = nodes_to_cluster(&n, 2).unwrap();
        assert_eq!(c[0].1, ["http://1:2380", "http://1:2381"]);
        assert_eq!(
            cluster_string(&c),
            "x=http://1:2380,x=http://1:2381,y=http://2:2380"
        );
        let same_url = [
            node("a", 1, "x=http://1:2380"),
            node("b", 2, "y=http://1:2380"),
        ];
        assert!(matches!(
            nodes_to_cluster(&same_url, 2),
            Err(DiscoveryError::DuplicateUrl(_))
        ));
        let garbage = [node("a", 1, "not a member")];
        assert!(matches!(
            nodes_to_cluster(&garbage, 1),
            Err(DiscoveryError::InvalidRegistration(_))
        ));
    }

    #[test]
    fn size_and_url_parsing() {
        assert_eq!(parse_size("u", "3").unwrap(), 3);
        for bad in ["", "0", "-1", "three", " 3"] {
            let e = parse_size("http://h/v2/keys/t/_config/size", bad).unwrap_err();
            assert!(
                e.to_string().starts_with("discovery: size key is bad"),
                "{e}"
            );
        }
        assert_eq!(
            discovery_url("https://discovery.etcd.io/abc/").unwrap(),
            "https://discovery.etcd.io/abc"
        );
        assert_eq!(
            discovery_url("http://127.0.0.1:2379/v2/keys/_etcd/registry/t?x=1").unwrap(),
            "http://127.0.0.1:2379/v2/keys/_etcd/registry/t"
        );
        for bad in ["", "discovery.etcd.io/abc", "ftp://h/x", "http://"] {
            assert!(
                matches!(discovery_url(bad), Err(DiscoveryError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }
}
