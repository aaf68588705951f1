//! A v3 load generator (our client on our tonic-generated stubs), used by `cargo xtask bench
//! store` to drive etcd and ferro-store the same way: N clients over M connections issue one kind
//! of request for a fixed time; the report is throughput and latency percentiles.

use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::v3::pb::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    /// A range read of one key; `serializable` answers from the local member without consensus.
    Range {
        serializable: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub endpoint: String,
    pub op: Op,
    pub clients: usize,
    pub conns: usize,
    pub duration: Duration,
    /// Keys written and read are `bench/0` .. `bench/{key_space - 1}`.
    pub key_space: u64,
    pub value_size: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid endpoint {0:?}")]
    Endpoint(String, #[source] tonic::transport::Error),
    #[error("the server at {0} did not answer within {1:?}")]
    NotReady(String, Duration),
    #[error("every request failed; the last error: {0}")]
    AllFailed(String),
}

async fn connect(endpoint: &str) -> Result<Channel, LoadError> {
    let e = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| LoadError::Endpoint(endpoint.into(), e))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    e.connect()
        .await
        .map_err(|e| LoadError::Endpoint(endpoint.into(), e))
}

/// Waits until a (linearizable) range succeeds: the server is up and has a leader.
pub async fn wait_ready(endpoint: &str, timeout: Duration) -> Result<(), LoadError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(ch) = connect(endpoint).await {
            let req = RangeRequest {
                key: b"bench/ready".to_vec(),
                ..Default::default()
            };
            if KvClient::new(ch).range(req).await.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LoadError::NotReady(endpoint.into(), timeout))
}

fn key(i: u64) -> Vec<u8> {
    format!("bench/{i}").into_bytes()
}

/// Writes every key of the key space once, so that reads find values.
pub async fn fill(spec: &Spec) -> Result<(), LoadError> {
    let mut kv = KvClient::new(connect(&spec.endpoint).await?);
    let value = vec![b'v'; spec.value_size];
    for i in 0..spec.key_space {
        let req = PutRequest {
            key: key(i),
            value: value.clone(),
            ..Default::default()
        };
        kv.put(req)
            .await
            .map_err(|e| LoadError::AllFailed(e.to_string()))?;
    }
    Ok(())
}

struct ClientResult {
    latencies_us: Vec<u32>,
    errors: u64,
    last_error: Option<String>,
}

async fn client(
    mut kv: KvClient<Channel>,
    op: Op,
    first_key: u64,
    spec_keys: u64,
    value: Vec<u8>,
    deadline: Instant,
) -> ClientResult {
    let mut r = ClientResult {
        latencies_us: Vec::new(),
        errors: 0,
        last_error: None,
    };
    let mut k = first_key;
    while Instant::now() < deadline {
        k = (k + 1) % spec_keys;
        let start = Instant::now();
        let res = match op {
            Op::Put => kv
                .put(PutRequest {
                    key: key(k),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::Range { serializable } => kv
                .range(RangeRequest {
                    key: key(k),
                    serializable,
                    ..Default::default()
                })
                .await
                .map(drop),
        };
        match res {
            Ok(()) => r
                .latencies_us
                .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                r.errors += 1;
                r.last_error = Some(e.to_string());
            }
        }
    }
    r
}

/// Runs the load and reports what completed.
pub async fn run(spec: &Spec) -> Result<Report, LoadError> {
    let mut channels = Vec::new();
    for _ in 0..spec.conns.max(1) {
        channels.push(connect(&spec.endpoint).await?);
    }
    let value = vec![b'v'; spec.value_size];
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..spec.clients.max(1) {
        let kv = KvClient::new(channels[i % channels.len()].clone());
        let first = (i as u64 * 7919) % spec.key_space.max(1);
        tasks.spawn(client(
            kv,
            spec.op,
            first,
            spec.key_space.max(1),
            value.clone(),
            deadline,
        ));
    }
    let mut all = Vec::new();
    let (mut errors, mut last_error) = (0, None);
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("load clients do not panic");
        all.extend(r.latencies_us);
        errors += r.errors;
        last_error = r.last_error.or(last_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if all.is_empty() {
        return Err(LoadError::AllFailed(last_error.unwrap_or_default()));
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    Ok(Report {
        ops: all.len() as u64,
        errors,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}
