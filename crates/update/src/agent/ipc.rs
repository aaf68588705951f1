//! The D-Bus-free control channel between `update_engine_client` and the `update_engine` daemon:
//! a unix stream socket (default `/run/update_engine/update_engine.sock`, mode 0600: root only),
//! one JSON request line, one JSON reply line.

use super::status::Status;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const SOCKET: &str = "/run/update_engine/update_engine.sock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Start an update check; with `wait`, answer when it has finished.
    Check {
        wait: bool,
    },
    /// Verify and install an offline payload directory; answers when done. An older version
    /// than the running one only with `allow_downgrade`.
    Apply {
        dir: PathBuf,
        #[serde(default)]
        allow_downgrade: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub status: Status,
    /// What the request ended with, e.g. "installed 2.0.0" or "no update".
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source} (is update_engine running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a reply: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Sends one request to the daemon and waits for its reply.
pub fn call(socket: &Path, req: &Request) -> Result<Reply, Error> {
    let mut s = UnixStream::connect(socket).map_err(|source| Error::Connect {
        path: socket.into(),
        source,
    })?;
    let io = |source| Error::Io {
        path: socket.into(),
        source,
    };
    let mut line = serde_json::to_string(req).expect("request serialises");
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).map_err(io)?;
    serde_json::from_str(&reply).map_err(|source| Error::Json {
        path: socket.into(),
        source,
    })
}
