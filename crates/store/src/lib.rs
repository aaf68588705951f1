//! An etcd-compatible key-value store: etcd's v2 keys API over HTTP and its v3 gRPC API on one
//! port, etcd's flags, and a deterministic state machine replicated by Raft (openraft) over a
//! durable (fsynced) log.

pub mod authority;
pub mod config;
pub mod core;
pub mod discovery;
pub mod loadgen;
pub mod member;
pub mod notify;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod v2;
pub mod v3;
