//! A small HTTP server on 127.0.0.1 for tests that hand a guest something to fetch: a cloud-config,
//! a kernel and initramfs for iPXE (QEMU's user network shows the host's loopback to the guest
//! as 10.0.2.2).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The address under which a guest on QEMU's user network reaches the host's 127.0.0.1.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

pub enum Body {
    Text(String),
    /// Streamed from disk (kernels and initramfs are large).
    File(PathBuf),
}

pub struct FileServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// Serves `body` at `path` (404 elsewhere).
    pub fn start(path: &str, body: &str) -> std::io::Result<FileServer> {
        FileServer::routes(vec![(path.into(), Body::Text(body.into()))])
    }

    /// Serves each path's body (404 elsewhere) until the process ends; request lines are kept.
    pub fn routes(routes: Vec<(String, Body)>) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let routes: Arc<BTreeMap<String, Body>> = Arc::new(routes.into_iter().collect());
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, seen) = (routes.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &routes, &seen);
                });
            }
        });
        Ok(FileServer { port, requests })
    }

    /// The URL a guest uses for `path`.
    pub fn guest_url(&self, path: &str) -> String {
        format!("http://{HOST_FROM_GUEST}:{}{path}", self.port)
    }

    /// Request lines seen so far, e.g. `GET /cloud-config.yml HTTP/1.1`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn answer(
    mut stream: TcpStream,
    routes: &BTreeMap<String, Body>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Drain the headers so the client sees a clean answer.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let line = line.trim_end().to_string();
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    seen.lock().unwrap().push(line);
    let head = |status: &str, len: u64| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match routes.get(&path) {
        Some(Body::Text(text)) => {
            stream.write_all(head("200 OK", text.len() as u64).as_bytes())?;
            stream.write_all(text.as_bytes())
        }
        Some(Body::File(file)) => {
            let mut f = std::fs::File::open(file)?;
            stream.write_all(head("200 OK", f.metadata()?.len()).as_bytes())?;
            std::io::copy(&mut f, &mut stream).map(drop)
        }
        None => {
            stream.write_all(head("404 Not Found", 10).as_bytes())?;
            stream.write_all(b"not found\n")
        }
    }
}
