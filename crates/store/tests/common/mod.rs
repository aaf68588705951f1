//! Starting real etcd (Debian's `etcd-server`) and ferro-store side by side on free loopback ports.
#![allow(dead_code)]

pub mod json;
pub mod linearizability;
pub mod proxy;
pub mod recorder;
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

/// Why a server did not come up.
enum StartError {
    /// It exited; its log says why.
    Exited(String),
}

fn wait_ready(url: &str, child: &mut Child, what: &str, log: &Path) -> Result<(), StartError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Ok(r) = client.get(format!("{url}/v2/keys/")).send() {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(StartError::Exited(format!(
                "{what} exited early with {status}: {log}"
            )));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer on {url} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How often a server whose free port was taken meanwhile is started again on other ports.
const PORT_RETRIES: usize = 5;

impl Server {
    /// Starts `bin` with the flags `args` makes for (client URL, peer URL, data dir) on free
    /// ports. A free port can be taken by someone else (an etcdctl's outgoing connection) before
    /// the server binds it: then it starts again on other ports.
    fn start(
        name: &'static str,
        bin: PathBuf,
        args: impl Fn(&str, &str, &Path) -> Vec<String>,
    ) -> Server {
        for _ in 0..PORT_RETRIES {
            let (client, peer) = (free_port(), free_port());
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let dir = tempfile::tempdir().unwrap();
            let data_dir = dir.path().join("data");
            let args = args(&url, &peer_url, &data_dir);
            let log_path = dir.path().join("log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&bin)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            match wait_ready(&url, &mut child, name, &log_path) {
                Ok(()) => {
                    return Server {
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
                Err(StartError::Exited(why))
                    if why.to_lowercase().contains("address already in use") =>
                {
                    eprintln!("{name}: a free port was taken meanwhile, starting again: {why}");
                }
                Err(StartError::Exited(why)) => panic!("{why}"),
            }
        }
        panic!("{name}: no free ports after {PORT_RETRIES} attempts");
    }

    /// Real etcd 3.4 with the v2 API on, single member, on free ports.
    pub fn etcd() -> Server {
        let bin = require_tool("etcd", "etcd-server");
        Server::start("etcd", bin, |url, peer_url, data_dir| {
            vec![
                "--name".into(),
                "node1".into(),
                "--enable-v2".into(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen-client-urls".into(),
                url.into(),
                "--advertise-client-urls".into(),
                url.into(),
                "--listen-peer-urls".into(),
                peer_url.into(),
                "--initial-advertise-peer-urls".into(),
                peer_url.into(),
                "--initial-cluster".into(),
                format!("node1={peer_url}"),
                "--log-level".into(),
                "error".into(),
                "--logger".into(),
                "zap".into(),
            ]
        })
    }

    /// ferro-store with the same flags (peer flags too: they must be accepted).
    pub fn ours() -> Server {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_ferro-store"));
        Server::start("ferro-store", bin, |url, peer_url, data_dir| {
            vec![
                "--name".into(),
                "node1".into(),
                "--enable-v2".into(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen-client-urls".into(),
                url.into(),
                "--advertise-client-urls".into(),
                url.into(),
                "--listen-peer-urls".into(),
                peer_url.into(),
                "--initial-advertise-peer-urls".into(),
                peer_url.into(),
                "--initial-cluster".into(),
                format!("node1={peer_url}"),
                "--log-level".into(),
                "error".into(),
            ]
        })
    }

    /// kill -9 and start again on the same data dir and ports.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let log_path = self.dir.path().join("log2");
        let log = std::fs::File::create(&log_path).unwrap();
        self.child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        if let Err(StartError::Exited(why)) =
            wait_ready(&self.url.clone(), &mut self.child, self.name, &log_path)
        {
            panic!("{why}");
        }
    }
}
