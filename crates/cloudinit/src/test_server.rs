//! A tiny HTTP/1.1 server on 127.0.0.1 for datasource tests: canned answers per method and path,
//! every request recorded (with its headers) so tests can check what the agent sent.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// Answers in turn; the last one repeats.
    pub answers: Vec<(u16, &'static str)>,
    /// A header the request must carry, else 401.
    pub require_header: Option<(&'static str, &'static str)>,
}

pub struct Server {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub fn serve(routes: Vec<Route>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        let mut served = vec![0usize; routes.len()];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                headers.push(h.trim().to_string());
            }
            log.lock()
                .unwrap()
                .push(format!("{method} {path} {}", headers.join("; ")));
            let (status, body) = match routes
                .iter()
                .position(|r| r.method == method && r.path == path)
            {
                Some(i) => {
                    let r = &routes[i];
                    let ok = r.require_header.is_none_or(|(k, v)| {
                        headers.iter().any(|h| {
                            h.to_ascii_lowercase()
                                == format!("{}: {}", k.to_ascii_lowercase(), v.to_ascii_lowercase())
                        })
                    });
                    if ok {
                        let a = r.answers[served[i].min(r.answers.len() - 1)];
                        served[i] += 1;
                        a
                    } else {
                        (401, "missing header")
                    }
                }
                None => (404, "not found"),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Server { base, requests }
}
