//! A one-file HTTP server on 127.0.0.1 for tests that hand a guest something to fetch
//! (QEMU's user network shows the host's loopback to the guest as 10.0.2.2).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// The address under which a guest on QEMU's user network reaches the host's 127.0.0.1.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

pub struct FileServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// Serves `body` at `path` (404 elsewhere) until the process ends; each request line is kept.
    pub fn start(path: &str, body: &str) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (path, body, seen) = (path.to_string(), body.to_string(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the headers so the client sees a clean answer.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let line = line.trim_end().to_string();
                let found = line.split(' ').nth(1) == Some(path.as_str());
                seen.lock().unwrap().push(line);
                let (status, text) = if found {
                    ("200 OK", body.as_str())
                } else {
                    ("404 Not Found", "not found\n")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
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
