//! A v3 load generator (our client on our tonic-generated stubs), used by `cargo xtask bench
//! store` to drive etcd and ferro-store the same way: N clients over M connections (spread over
//! the endpoints, as etcd's benchmark tool spreads its clients over a cluster's members) issue
//! one kind of request for a fixed time; the report is throughput and latency percentiles.
//!
//! The watch load is N watch streams on one prefix and one writer putting keys under it as fast
//! as it can: the report is events delivered per second (over all watchers) and the delivery
//! latency, from the writer's put acknowledgement to the watcher's receipt of the event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::v3::pb::etcdserverpb::{
    kv_client::KvClient, watch_client::WatchClient, watch_request, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    /// A range read of one key; `serializable` answers from the local member without consensus.
    Range {
        serializable: bool,
    },
    /// `clients` watch streams on `bench/watch/`, one writer putting keys under it.
    Watch,
}

#[derive(Debug, Clone)]
pub struct Spec {
    /// Client URLs; connection `i` goes to `endpoints[i % len]` (the watch writer to the first).
    pub endpoints: Vec<String>,
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
    /// Completed requests (watch: events received, over all watchers).
    pub ops: u64,
    /// Failed requests (watch: failed puts, plus events a watcher never received).
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
    #[error("no endpoint given")]
    NoEndpoint,
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
    let first = spec.endpoints.first().ok_or(LoadError::NoEndpoint)?;
    let mut kv = KvClient::new(connect(first).await?);
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
            Op::Watch => unreachable!("watch loads run in watch_load"),
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

async fn channels(spec: &Spec) -> Result<Vec<Channel>, LoadError> {
    if spec.endpoints.is_empty() {
        return Err(LoadError::NoEndpoint);
    }
    let mut channels = Vec::new();
    for i in 0..spec.conns.max(1) {
        channels.push(connect(&spec.endpoints[i % spec.endpoints.len()]).await?);
    }
    Ok(channels)
}

/// The value at quantile `p` of sorted microseconds, in milliseconds.
fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    sorted_us[((sorted_us.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// Runs the load and reports what completed.
pub async fn run(spec: &Spec) -> Result<Report, LoadError> {
    if spec.op == Op::Watch {
        return watch_load(spec).await;
    }
    let channels = channels(spec).await?;
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
    Ok(Report {
        ops: all.len() as u64,
        errors,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    })
}

const WATCH_PREFIX: &[u8] = b"bench/watch/";
/// The end of the `bench/watch/` prefix range.
const WATCH_END: &[u8] = b"bench/watch0";
/// How long watchers wait for the last events after the writer stops.
const WATCH_GRACE: Duration = Duration::from_secs(3);

/// What one watcher received: each event's revision and when it arrived.
type Received = Vec<(i64, Instant)>;

/// Opens a watch stream on the prefix and returns once the server confirmed it, with a task
/// that collects events until the writer's last revision has arrived (or `give_up`).
async fn watcher(
    ch: Channel,
    last: tokio::sync::watch::Receiver<Option<i64>>,
    give_up: Instant,
) -> Result<tokio::task::JoinHandle<Received>, String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: WATCH_PREFIX.to_vec(),
                range_end: WATCH_END.to_vec(),
                ..Default::default()
            },
        )),
    };
    tx.send(create).map_err(|e| e.to_string())?;
    let mut stream = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match stream.message().await {
        Ok(Some(r)) if r.created && !r.canceled => {}
        other => return Err(format!("creating the watch: {other:?}")),
    }
    Ok(tokio::spawn(async move {
        // The request side stays open as long as the stream is read.
        let _tx = tx;
        let mut got: Received = Vec::new();
        let mut newest = 0;
        loop {
            if last.borrow().is_some_and(|l| newest >= l) {
                break;
            }
            let wait = give_up.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, stream.message()).await {
                Ok(Ok(Some(r))) => {
                    let at = Instant::now();
                    for e in &r.events {
                        let rev = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                        newest = newest.max(rev);
                        got.push((rev, at));
                    }
                }
                _ => break,
            }
        }
        got
    }))
}

/// `clients` watchers on the prefix, one writer putting under it for the duration.
async fn watch_load(spec: &Spec) -> Result<Report, LoadError> {
    let channels = channels(spec).await?;
    let writer_ch = connect(&spec.endpoints[0]).await?;
    let (last_tx, last_rx) = tokio::sync::watch::channel(None);
    let give_up = Instant::now() + spec.duration + WATCH_GRACE + Duration::from_secs(10);
    let mut watchers = Vec::new();
    for i in 0..spec.clients.max(1) {
        let ch = channels[i % channels.len()].clone();
        let w = watcher(ch, last_rx.clone(), give_up)
            .await
            .map_err(LoadError::AllFailed)?;
        watchers.push(w);
    }
    let mut kv = KvClient::new(writer_ch);
    let value = vec![b'v'; spec.value_size];
    let mut acked: HashMap<i64, Instant> = HashMap::new();
    let (mut puts, mut errors, mut last_error) = (0u64, 0u64, None);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut newest = 0;
    while Instant::now() < deadline {
        let mut key = WATCH_PREFIX.to_vec();
        key.extend_from_slice(format!("{}", puts % 16).as_bytes());
        let put = kv
            .put(PutRequest {
                key,
                value: value.clone(),
                ..Default::default()
            })
            .await;
        match put {
            Ok(r) => {
                let rev = r.into_inner().header.map_or(0, |h| h.revision);
                acked.insert(rev, Instant::now());
                newest = newest.max(rev);
                puts += 1;
            }
            Err(e) => {
                errors += 1;
                last_error = Some(e.to_string());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = last_tx.send(Some(newest));
    let mut latencies = Vec::new();
    let mut received = 0u64;
    for w in watchers {
        let got = w.await.expect("watchers do not panic");
        for (rev, at) in got {
            if let Some(ack) = acked.get(&rev) {
                received += 1;
                let us = at.saturating_duration_since(*ack).as_micros();
                latencies.push(us.min(u32::MAX as u128) as u32);
            }
        }
    }
    if latencies.is_empty() {
        return Err(LoadError::AllFailed(
            last_error.unwrap_or_else(|| "no watch event arrived".into()),
        ));
    }
    let expected = puts * spec.clients.max(1) as u64;
    latencies.sort_unstable();
    Ok(Report {
        ops: received,
        errors: errors + expected.saturating_sub(received),
        ops_per_sec: received as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}
