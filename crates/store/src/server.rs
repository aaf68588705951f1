//! Starting a member: recover the log, bind the client listeners, serve until a signal.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::core::Core;
use crate::member::Member;
use crate::{v2, v3};

/// A running server bound to its client listeners.
pub struct Server {
    pub core: Arc<Core>,
    pub router: axum::Router,
    pub listeners: Vec<TcpListener>,
}

impl Server {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Server> {
        cfg.check()?;
        let data_dir = cfg.data_dir();
        let member = Arc::new(Member::new(
            &cfg.name,
            cfg.peer_urls(),
            cfg.advertise_client_urls(),
            &cfg.initial_cluster_token,
        ));
        let (cluster_id, member_id) = (member.cluster_id, member.id);
        let header: crate::core::HeaderFn =
            Arc::new(move |revision| v3::pb::etcdserverpb::ResponseHeader {
                cluster_id,
                member_id,
                revision,
                raft_term: v2::TERM,
            });
        let core = Core::open(&data_dir, cfg.snapshot_count, header)
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
            member,
            enable_v2: cfg.enable_v2,
        };
        let router = v2::router(ctx, grpc);
        let mut listeners = Vec::new();
        for addr in cfg.client_listeners()? {
            let l = TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening for clients on {addr}"))?;
            tracing::info!(%addr, "serving client requests");
            listeners.push(l);
        }
        Ok(Server {
            core,
            router,
            listeners,
        })
    }

    /// Serves until SIGINT/SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        tokio::spawn(Arc::clone(&self.core).expire_loop());
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            let app = self.router.clone();
            // Without TCP_NODELAY, a gRPC answer written as headers + data waits for the
            // client's delayed ACK (~40 ms per read), as Go's net package never does.
            let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "setting TCP_NODELAY");
                }
            });
            tasks.spawn(async move { axum::serve(l, app).await });
        }
        if let Err(e) = crate::notify::ready() {
            tracing::warn!(error = %e, "telling systemd we are ready");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
            _ = term.recv() => tracing::info!("terminated, stopping"),
            Some(r) = tasks.join_next() => r.context("client listener task")?.context("serving clients")?,
        }
        Ok(())
    }
}
