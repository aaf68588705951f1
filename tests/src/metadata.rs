//! A cloud's instance metadata service on 127.0.0.1, for guests booted with
//! `Setup::metadata_port` (QEMU forwards their 169.254.169.254:80 here). It answers as the real
//! services do where our agent could tell the difference: EC2's IMDSv2 hands out a session
//! token on `PUT /latest/api/token` and refuses reads without it (401); GCE's server refuses
//! requests without `Metadata-Flavor: Google` (403). Every request is recorded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Ec2,
    Gce,
}

/// The token this service issues; a real IMDS makes a random one per session.
const EC2_TOKEN: &str = "AQAEAFerrocoreTestToken==";

/// One request as the service saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Whether it carried what the cloud demands (the token, the flavor header).
    pub authorized: bool,
    pub status: u16,
}

pub struct MetadataServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MetadataServer {
    /// Serves `values` (paths under `/latest/` for EC2, `/computeMetadata/v1/instance/` for GCE,
    /// e.g. `user-data` or `attributes/user-data`) until the process ends.
    pub fn start(cloud: Cloud, values: &[(&str, &str)]) -> std::io::Result<MetadataServer> {
        let prefix = match cloud {
            Cloud::Ec2 => "/latest/",
            Cloud::Gce => "/computeMetadata/v1/instance/",
        };
        let values: Arc<BTreeMap<String, String>> = Arc::new(
            values
                .iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v.to_string()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (values, log) = (values.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = answer(cloud, stream, &values, &log);
                });
            }
        });
        Ok(MetadataServer { port, seen })
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(
    cloud: Cloud,
    mut stream: TcpStream,
    values: &BTreeMap<String, String>,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: u64 = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())?;
    let header = |name: &str| headers.get(name).map(String::as_str);
    let (authorized, status, body) = match cloud {
        Cloud::Ec2 if method == "PUT" && path == "/latest/api/token" => {
            match header("x-aws-ec2-metadata-token-ttl-seconds") {
                Some(_) => (true, 200, EC2_TOKEN.to_string()),
                None => (false, 400, "missing token TTL".to_string()),
            }
        }
        Cloud::Ec2 if header("x-aws-ec2-metadata-token") != Some(EC2_TOKEN) => {
            (false, 401, "Unauthorized".to_string())
        }
        Cloud::Gce if header("metadata-flavor") != Some("Google") => (
            false,
            403,
            "Missing Metadata-Flavor: Google header".to_string(),
        ),
        _ if method != "GET" => (true, 405, "Method Not Allowed".to_string()),
        _ => match values.get(&path) {
            Some(v) => (true, 200, v.clone()),
            None => (true, 404, "Not Found".to_string()),
        },
    };
    log.lock().unwrap().push(Seen {
        method,
        path,
        authorized,
        status,
    });
    let flavor = if cloud == Cloud::Gce {
        "Metadata-Flavor: Google\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\n{flavor}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )
}
