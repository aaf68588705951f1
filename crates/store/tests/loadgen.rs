//! The bench's load generator against a real ferro-store: every request kind completes and the
//! report adds up (no timing assertions: the figures belong to `cargo xtask bench store`).

mod common;

use std::time::Duration;

use common::Server;
use store::loadgen::{self, Op, Spec};
use store::v3::pb::etcdserverpb::{kv_client::KvClient, RangeRequest};

fn spec(url: &str, op: Op, clients: usize) -> Spec {
    Spec {
        endpoints: vec![url.to_string()],
        op,
        clients,
        conns: 2,
        duration: Duration::from_millis(300),
        key_space: 20,
        value_size: 16,
    }
}

#[test]
fn puts_and_reads_complete_without_errors() {
    let s = Server::ours();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        loadgen::wait_ready(&s.url, Duration::from_secs(10))
            .await
            .unwrap();
        loadgen::fill(&spec(&s.url, Op::Put, 1)).await.unwrap();
        for op in [
            Op::Put,
            Op::Range {
                serializable: false,
            },
            Op::Range { serializable: true },
        ] {
            let r = loadgen::run(&spec(&s.url, op, 4)).await.unwrap();
            assert_eq!(r.errors, 0, "{op:?}");
            assert!(r.ops > 0, "{op:?}");
            assert!(r.p50_ms <= r.p99_ms, "{op:?}: {r:?}");
        }
        // The fill and the puts really landed: every key of the space has a value.
        let ch = tonic::transport::Endpoint::from_shared(s.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let r = KvClient::new(ch)
            .range(RangeRequest {
                key: b"bench/".to_vec(),
                range_end: b"bench0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.count, 20);
        // Every watcher saw every put of the writer.
        let r = loadgen::run(&spec(&s.url, Op::Watch, 5)).await.unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.ops > 0 && r.ops % 5 == 0, "{r:?}");
    });
}

#[test]
fn an_unreachable_server_is_reported() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(loadgen::wait_ready(&url, Duration::from_millis(300)));
    assert!(matches!(r, Err(loadgen::LoadError::NotReady(..))), "{r:?}");
}
