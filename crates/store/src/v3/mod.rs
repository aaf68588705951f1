//! etcd's v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth), served on the client port.

pub mod auth;
mod check;
mod cluster;
mod errors;
mod kv;
mod lease;
pub mod watch;
mod watch_rpc;

use std::path::PathBuf;
use std::sync::Arc;

use crate::core::Core;
use crate::member::Member;

pub mod pb {
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// gRPC's framing on top of etcd's request limit, as etcd allows.
const GRPC_OVERHEAD: usize = 512 * 1024;

pub struct Options {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub data_dir: PathBuf,
}

/// All v3 services as one axum router (tonic's routes), for the shared client port.
pub fn router(core: Arc<Core>, member: Arc<Member>, o: Options) -> axum::Router {
    use pb::etcdserverpb::*;
    let max = o.max_request_bytes + GRPC_OVERHEAD;
    let cluster = Arc::new(cluster::Cluster {
        core: Arc::clone(&core),
        member,
        data_dir: o.data_dir,
    });
    tonic::service::Routes::new(
        kv_server::KvServer::new(kv::Kv {
            core: Arc::clone(&core),
            max_txn_ops: o.max_txn_ops,
        })
        .max_decoding_message_size(max),
    )
    .add_service(
        watch_server::WatchServer::new(watch_rpc::Watch {
            core: Arc::clone(&core),
            next_stream: Default::default(),
        })
        .max_decoding_message_size(max),
    )
    .add_service(lease_server::LeaseServer::new(lease::Lease {
        core: Arc::clone(&core),
    }))
    .add_service(cluster_server::ClusterServer::new(Arc::clone(&cluster)))
    .add_service(maintenance_server::MaintenanceServer::new(cluster))
    .add_service(auth_server::AuthServer::new(auth::Auth {
        core: Arc::clone(&core),
    }))
    .prepare()
    .into_axum_router()
}
