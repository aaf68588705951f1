//! Starting real etcd (Debian's `etcd-server`) and ferro-store side by side on free loopback ports.
#![allow(dead_code)]

pub mod json;
pub mod script;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds a Debian-packaged tool or fails the test naming the package to install.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is missing: install the Debian package `{package}` (apt-get install {package}); the differential tests need real etcd as their oracle");
}

pub struct Server {
    pub name: &'static str,
    pub url: String,
    pub peer_url: String,
    child: Child,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    args: Vec<String>,
    bin: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(url: &str, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Ok(r) = client.get(format!("{url}/v2/keys/")).send() {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer on {url} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    fn spawn(
        name: &'static str,
        bin: PathBuf,
        args: Vec<String>,
        url: String,
        peer_url: String,
        dir: tempfile::TempDir,
        data_dir: PathBuf,
    ) -> Server {
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut child = Command::new(&bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        wait_ready(&url, &mut child, name);
        Server {
            name,
            url,
            peer_url,
            child,
            dir,
            data_dir,
            args,
            bin,
        }
    }

    /// Real etcd 3.4 with the v2 API on, single member, on free ports.
    pub fn etcd() -> Server {
        let bin = require_tool("etcd", "etcd-server");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let args = vec![
            "--name".into(),
            "node1".into(),
            "--enable-v2".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("node1={peer_url}"),
            "--log-level".into(),
            "error".into(),
            "--logger".into(),
            "zap".into(),
        ];
        Server::spawn("etcd", bin, args, url, peer_url, dir, data_dir)
    }

    /// ferro-store with the same flags (peer flags too: they must be accepted).
    pub fn ours() -> Server {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_ferro-store"));
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let args = vec![
            "--name".into(),
            "node1".into(),
            "--enable-v2".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("node1={peer_url}"),
            "--log-level".into(),
            "error".into(),
        ];
        Server::spawn("ferro-store", bin, args, url, peer_url, dir, data_dir)
    }

    /// kill -9 and start again on the same data dir and ports.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let log = std::fs::File::create(self.dir.path().join("log2")).unwrap();
        self.child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_ready(&self.url.clone(), &mut self.child, self.name);
    }
}
