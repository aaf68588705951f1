//! Starting a member: recover the log, bind the client listeners, serve until a signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::core::Core;
use crate::member::Member;
use crate::raft::PeerNode;
use crate::{v2, v3};

/// A running server bound to its client listeners.
pub struct Server {
    pub core: Arc<Core>,
    pub member: Arc<Member>,
    pub router: axum::Router,
    /// Client listeners, each with its TLS config if it is `https://`.
    pub listeners: Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    pub peer_listeners: Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
}

impl Server {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Server> {
        cfg.check()?;
        let cfg = &discover(cfg).await?;
        // Every TLS file in use is read and checked before anything listens: the client files
        // when a client URL is https (etcd ignores them otherwise), the peer files always, as
        // the peer client presents them to https peers.
        let (client_tls, peer_tls) = (cfg.client_tls(), cfg.peer_tls());
        let client_server_tls = if cfg.client_listen()?.iter().any(|l| l.tls) {
            client_tls.server_config()?
        } else {
            None
        };
        let peer_server_tls = peer_tls.server_config()?;
        let net = crate::raft::network::Network::new(&peer_tls)?;
        let data_dir = cfg.data_dir();
        let token = &cfg.initial_cluster_token;
        // Every member derives every member's ID from --initial-cluster, as etcd does.
        let initial = Member::initial_nodes(cfg.initial_members()?, token);
        let own_urls = initial
            .iter()
            .find(|(_, n)| n.name == cfg.name)
            .map(|(_, n)| n.peer_urls.clone())
            .unwrap_or_else(|| cfg.peer_urls());
        let mut member = Member::new(&cfg.name, own_urls, cfg.advertise_client_urls(), token);
        let ids: Vec<u64> = initial.iter().map(|(id, _)| *id).collect();
        member.set_cluster(&ids, token);
        member.id = member_id(&data_dir, member.id)?;
        member.cluster_id = cluster_id(cfg, &data_dir, &initial, &member, &net).await?;
        let member = Arc::new(member);
        let (cluster_id, member_id) = (member.cluster_id, member.id);
        let term = Arc::new(AtomicU64::new(0));
        let header_term = Arc::clone(&term);
        let header: crate::core::HeaderFn =
            Arc::new(move |revision| v3::pb::etcdserverpb::ResponseHeader {
                cluster_id,
                member_id,
                revision,
                raft_term: header_term.load(Ordering::Relaxed),
            });
        let opts = crate::core::Options {
            id: member_id,
            snapshot_count: cfg.snapshot_count,
            heartbeat_ms: cfg.heartbeat_interval,
            election_ms: cfg.election_timeout,
            net,
        };
        let core = Core::open(&data_dir, opts, header, term)
            .await
            .with_context(|| format!("opening the data dir {}", data_dir.display()))?;
        let grpc = v3::router(
            Arc::clone(&core),
            Arc::clone(&member),
            v3::Options {
                max_request_bytes: cfg.max_request_bytes,
                max_txn_ops: cfg.max_txn_ops,
                data_dir: data_dir.clone(),
            },
        );
        let ctx = v2::Ctx {
            core: Arc::clone(&core),
            member: Arc::clone(&member),
            enable_v2: cfg.enable_v2,
        };
        let router = v2::router(ctx, grpc);
        let listeners = bind_all(cfg.client_listen()?, &client_tls, client_server_tls).await?;
        // A lone member listens for peers too: a member added later talks to it there.
        let peer_listeners = bind_all(cfg.peer_listen()?, &peer_tls, peer_server_tls).await?;
        let raft = core.raft();
        if cfg.initial_cluster_state == "new"
            && !raft.is_initialized().await.context("asking raft")?
        {
            let members: std::collections::BTreeMap<u64, PeerNode> = initial.into_iter().collect();
            let lone = members.len() == 1;
            // Every member initialises with the same membership: the first entry is identical
            // everywhere, so whoever wins the first election the logs agree.
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!(error = %e, "initialising the cluster");
            }
            if lone {
                let _ = raft.trigger().elect().await;
            }
        } else if core.lock().membership.voter_ids().eq([member_id]) {
            // A lone member restarting elects itself at once instead of after a timeout.
            let _ = raft.trigger().elect().await;
        }
        if core.lock().membership.voter_ids().eq([member_id]) {
            // A lone member serves once it leads and has applied its whole log, so that a
            // restart never answers from a state behind what it acknowledged.
            raft.wait(Some(std::time::Duration::from_secs(30)))
                .metrics(
                    |m| {
                        m.current_leader == Some(member_id)
                            && m.last_applied.map(|l| l.index) >= m.last_log_index
                    },
                    "leading and applied",
                )
                .await
                .context("waiting to lead the one-member cluster")?;
        }
        Ok(Server {
            core,
            member,
            router,
            listeners,
            peer_listeners,
        })
    }

    /// Serves until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        tokio::spawn(Arc::clone(&self.core).expire_loop());
        tokio::spawn(publish(Arc::clone(&self.core), Arc::clone(&self.member)));
        tokio::spawn(crate::raft::membership::promote_loop(Arc::clone(
            &self.core,
        )));
        let mut tasks = tokio::task::JoinSet::new();
        for (l, tls) in self.peer_listeners {
            let app = crate::raft::peer::router(Arc::clone(&self.core));
            tasks.spawn(serve(l, tls, app));
        }
        for (l, tls) in self.listeners {
            tasks.spawn(serve(l, tls, self.router.clone()));
        }
        if let Err(e) = crate::notify::ready() {
            tracing::warn!(error = %e, "telling systemd we are ready");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
            _ = term.recv() => tracing::info!("terminated, stopping"),
            _ = removed(Arc::clone(&self.core)) => {
                anyhow::bail!("the member has been permanently removed from the cluster")
            }
            Some(r) = tasks.join_next() => r.context("client listener task")?.context("serving clients")?,
        }
        Ok(())
    }
}

/// Binds every listen URL; `https://` ones get the side's TLS config (Config::check made sure
/// there is one). `http://` ones serve plain HTTP even with a certificate given, as etcd 3.4.
async fn bind_all(
    listens: Vec<crate::config::Listen>,
    flags: &crate::tls::Flags,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>> {
    let side = flags.names.side;
    let mut out = Vec::new();
    for l in listens {
        if !l.tls && flags.has_cert() {
            tracing::warn!(url = %l.url, "the scheme of this {side} URL is HTTP while key/cert files are given: ignoring them for it");
        }
        if !l.tls && flags.client_cert_auth {
            tracing::warn!(url = %l.url, "the scheme of this {side} URL is HTTP while client cert auth is on: ignoring it for this URL");
        }
        let tcp = TcpListener::bind(&l.addr)
            .await
            .with_context(|| format!("listening for {side}s on {}", l.addr))?;
        let tls = if l.tls { tls.clone() } else { None };
        tracing::info!(url = %l.url, tls = tls.is_some(), "serving {side} requests");
        out.push((tcp, tls));
    }
    Ok(out)
}

/// Serves `app` on one listener, over TLS if it has a config.
async fn serve(
    l: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
) -> std::io::Result<()> {
    match tls {
        Some(cfg) => {
            let l = crate::tls::TlsListener::new(l, cfg)?;
            axum::serve(crate::authority::Listener(l), app).await
        }
        None => {
            // Without TCP_NODELAY, a gRPC answer written as headers + data waits for the
            // client's delayed ACK (~40 ms per read), as Go's net package never does.
            let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "setting TCP_NODELAY");
                }
            });
            axum::serve(crate::authority::Listener(l), app).await
        }
    }
}

/// Returns once the applied membership no longer has this member, after it had it (etcd's
/// removed member stops).
async fn removed(core: Arc<Core>) {
    let listed = |core: &Core| {
        core.lock()
            .membership
            .membership()
            .get_node(&core.id)
            .is_some()
    };
    let mut was_listed = false;
    let told = core.removed.notified();
    tokio::pin!(told);
    loop {
        let now = listed(&core);
        if was_listed && !now {
            return;
        }
        was_listed |= now;
        tokio::select! {
            _ = &mut told => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
        }
    }
}

/// The cluster ID, kept in the data dir from the first start on. The first time: derived from
/// `--initial-cluster` (every founding member derives the same), except for a member joining an
/// existing cluster with an empty data dir, which asks the other members on their peer URLs. A
/// member restarting with `existing` never waits for the others (they may be restarting too).
async fn cluster_id(
    cfg: &Config,
    data_dir: &std::path::Path,
    initial: &[(u64, PeerNode)],
    own: &Member,
    net: &crate::raft::network::Network,
) -> anyhow::Result<u64> {
    let dir = data_dir.join("member");
    let path = dir.join("cluster-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return u64::from_str_radix(text.trim(), 16)
            .with_context(|| format!("reading the cluster ID in {}", path.display()));
    }
    let joining = cfg.initial_cluster_state == "existing" && !dir.join("raft.redb").exists();
    let id = if joining {
        ask_cluster_id(initial, own.id, net).await?
    } else {
        own.cluster_id
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, format!("{id:x}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// This member's ID: the one the data dir was created with (etcd keeps it in the WAL), else
/// `computed` (from the flags), recorded for the next start. A restart with other flags (a
/// `--discovery` URL or token instead of the `--initial-cluster` it was started with) stays the
/// same member instead of becoming a stranger to its own log.
fn member_id(data_dir: &std::path::Path, computed: u64) -> anyhow::Result<u64> {
    let dir = data_dir.join("member");
    let path = dir.join("member-id");
    // Only a data dir with a log is a member already: a start that failed before it (a join
    // with a wrong peer URL) must not pin the ID its flags made.
    let has_log = dir.join("raft.redb").exists();
    if let Some(text) = has_log
        .then(|| std::fs::read_to_string(&path).ok())
        .flatten()
    {
        let id = u64::from_str_radix(text.trim(), 16)
            .with_context(|| format!("reading the member ID in {}", path.display()))?;
        if id != computed {
            tracing::info!(member_id = %format!("{id:x}"), from = %path.display(), "the data dir has a member already: keeping its ID (the flags would make {computed:x})");
        }
        return Ok(id);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, format!("{computed:x}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(computed)
}

/// Asks the other members of `--initial-cluster` for the cluster ID, for up to 30 s.
async fn ask_cluster_id(
    initial: &[(u64, PeerNode)],
    own: u64,
    net: &crate::raft::network::Network,
) -> anyhow::Result<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for (_, node) in initial.iter().filter(|(id, _)| *id != own) {
            for url in &node.peer_urls {
                match net.cluster_id(url).await {
                    Ok(id) => return Ok(id),
                    Err(e) => tracing::debug!(%url, error = %e, "asking for the cluster ID"),
                }
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "joining an existing cluster: no other member of --initial-cluster answered on its peer URLs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// With `--discovery`: the config with the cluster the discovery service formed as
/// `--initial-cluster` (found the first time, then kept in the data dir) and the discovery URL as
/// the cluster token, as etcd does; member IDs derive from it. A data dir that has a member
/// already (etcd: a WAL) is a restart: no discovery.
async fn discover(cfg: &Config) -> anyhow::Result<Config> {
    use crate::discovery::{cluster_string, Backoff, Discovery, DiscoveryError};
    let Some(durl) = cfg.discovery_url() else {
        return Ok(cfg.clone());
    };
    let mut cfg = cfg.clone();
    cfg.discovery = None;
    cfg.initial_cluster_token = durl.to_string();
    let dir = cfg.data_dir().join("member");
    let saved = dir.join(DISCOVERED);
    if let Ok(text) = std::fs::read_to_string(&saved) {
        tracing::info!(cluster = text.trim(), "using the cluster discovered before");
        cfg.initial_cluster = Some(text.trim().to_string());
        return Ok(cfg);
    }
    if dir.join("raft.redb").exists() {
        tracing::info!(data_dir = %cfg.data_dir().display(), "the data dir has a member already: ignoring --discovery");
        return Ok(cfg);
    }
    anyhow::ensure!(
        cfg.initial_cluster_state == "new",
        "--discovery bootstraps a new cluster: --initial-cluster-state {} cannot be used with it",
        cfg.initial_cluster_state
    );
    let own = vec![(cfg.name.clone(), cfg.peer_urls())];
    let id = Member::new(&cfg.name, cfg.peer_urls(), Vec::new(), durl).id;
    tracing::info!(discovery_url = durl, member_id = %format!("{id:x}"), "joining the discovery cluster");
    let joined = match Discovery::new(durl, cfg.discovery_proxy.as_deref(), id, Backoff::default())
    {
        Ok(mut d) => d.join_cluster(&cluster_string(&own)).await,
        Err(e) => Err(e),
    };
    let members = match joined {
        Ok(m) => m,
        Err(e) => {
            for hint in e.hints(&cfg.name, durl, &cfg.data_dir()) {
                tracing::warn!("{hint}");
            }
            if matches!(e, DiscoveryError::FullCluster)
                && cfg.discovery_fallback.as_deref() != Some("exit")
            {
                tracing::warn!("--discovery-fallback is proxy (etcd's default), but ferro-store does not run as a proxy: exiting as with --discovery-fallback=exit");
            }
            return Err(
                anyhow::Error::new(e).context(format!("failed to join discovery cluster {durl}"))
            );
        }
    };
    let text = cluster_string(&members);
    tracing::info!(cluster = %text, "discovered the initial cluster");
    // Kept before anything else is written, so that a restart before the cluster's first entry
    // bootstraps with the same members (the registration cannot be made again).
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{DISCOVERED}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &saved)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", saved.display()))?;
    cfg.initial_cluster = Some(text);
    Ok(cfg)
}

/// The file in `<data-dir>/member` with the cluster discovery found (`--initial-cluster` syntax).
const DISCOVERED: &str = "discovered-cluster";

/// Publishes this member's name and client URLs through the log (until it succeeds), so that
/// every member lists them, as etcd's publish does.
async fn publish(core: Arc<Core>, member: Arc<Member>) {
    loop {
        let published = core
            .lock()
            .state
            .members
            .get(&member.id)
            .is_some_and(|p| p.name == member.name && p.client_urls == member.client_urls);
        if published {
            return;
        }
        let cmd = crate::state::Command::Publish {
            id: member.id,
            name: member.name.clone(),
            client_urls: member.client_urls.clone(),
        };
        match core.propose(cmd).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publishing our client URLs; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
