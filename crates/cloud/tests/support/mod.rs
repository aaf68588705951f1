//! Test plumbing: the PyPI emulators (moto, gcp-storage-emulator) from the venv that
//! `cargo xtask ci` installs, child processes killed on drop, and a small HTTP/1.1 server that
//! records every request and either answers it itself (test doubles) or forwards it to an
//! emulator (a proxy that can inject faults).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A script from `~/.cache/ferrocore/venv/bin` (or `$FERROCORE_CACHE/venv/bin`).
pub fn venv_bin(name: &str) -> PathBuf {
    let cache = std::env::var_os("FERROCORE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ferrocore")
        });
    let p = cache.join("venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask ci` installs it (host setup), or run: python3 -m venv {venv} && {venv}/bin/pip install 'moto[server]==5.2.5' gcp-storage-emulator==2026.7.19",
        p.display(),
        venv = cache.join("venv").display()
    );
    p
}

pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the emulator answers an HTTP request on `probe` itself (any status line): a
/// port that merely accepts connections is not enough, the Python servers bind before they
/// serve and a request sent then fails with "error sending request".
fn wait_serving(port: u16, probe: &str, what: &str, child: &mut Child) {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before serving on {port}");
        }
        if answers_http(port, probe) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} not answering HTTP on {port} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers_http(port: u16, probe: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET {probe} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// moto's server on 127.0.0.1 (every AWS service on one port); `env` configures it.
pub fn moto(env: &[(&str, &str)]) -> (Process, String) {
    let port = free_port();
    let mut child = Command::new(venv_bin("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    wait_serving(port, "/moto-api/", "moto_server", &mut child);
    (Process(child), format!("http://127.0.0.1:{port}"))
}

/// gcp-storage-emulator on 127.0.0.1, in memory, with `bucket` created.
pub fn gcs(bucket: &str) -> (Process, String) {
    let port = free_port();
    let mut child = Command::new(venv_bin("gcp-storage-emulator"))
        .args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--in-memory",
            "--default-bucket",
            bucket,
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting gcp-storage-emulator");
    wait_serving(port, "/storage/v1/b", "gcp-storage-emulator", &mut child);
    (Process(child), format!("http://127.0.0.1:{port}"))
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    /// Form fields of a form-encoded body (EC2's Query API).
    pub fn form(&self) -> BTreeMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", v.to_string())
    }
}

/// What the server does with a request.
pub enum Action {
    Reply(Reply),
    /// Forward to the upstream and relay its answer.
    Forward,
    /// Forward, then close the connection without answering (the upstream did the work; the
    /// client cannot know).
    ForwardThenDrop,
}

pub type Handler = Box<dyn FnMut(&Recorded) -> Action + Send>;

pub struct Server {
    pub base: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves on 127.0.0.1 until the test ends; one request per connection.
pub fn serve(upstream: Option<String>, mut handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let upstream: Option<SocketAddr> = upstream.map(|u| {
        u.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT")
    });
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some((req, raw)) = read_request(&stream) else {
                continue;
            };
            log.lock().unwrap().push(req.clone());
            let mut stream = stream;
            match handler(&req) {
                Action::Reply(r) => write_reply(&mut stream, r),
                Action::Forward => {
                    let answer = forward(upstream.expect("an upstream to forward to"), &raw);
                    let _ = stream.write_all(&answer);
                }
                Action::ForwardThenDrop => {
                    let _ = forward(upstream.expect("an upstream to forward to"), &raw);
                }
            }
        }
    });
    Server { base, requests }
}

/// Reads one request; returns it parsed and as raw bytes (rewritten to `Connection: close`).
fn read_request(stream: &TcpStream) -> Option<(Recorded, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    let mut raw_head = format!("{method} {target} HTTP/1.1\r\n");
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        let (k, v) = h.trim_end().split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        if k != "connection" {
            raw_head.push_str(h.trim_end());
            raw_head.push_str("\r\n");
        }
        headers.insert(k, v.trim().to_string());
    }
    raw_head.push_str("Connection: close\r\n\r\n");
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    let mut raw = raw_head.into_bytes();
    raw.extend_from_slice(&body);
    Some((
        Recorded {
            method,
            target,
            headers,
            body,
        },
        raw,
    ))
}

/// Sends the raw request upstream and returns its whole answer, marked `Connection: close`.
fn forward(upstream: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut up = TcpStream::connect(upstream).expect("connecting upstream");
    up.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer;
    };
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut out: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    out.push_str("\r\nConnection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer[split + 4..]);
    bytes
}

fn write_reply(stream: &mut TcpStream, r: Reply) {
    let mut head = format!("HTTP/1.1 {} X\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&r.body);
}
