//! Cloud Storage JSON API resumable upload: one POST opens a session, chunks (multiples of
//! 256 KiB) follow as PUTs with `Content-Range`; after a failed or interrupted chunk the session
//! is asked how much it holds (`Content-Range: bytes */TOTAL`, answered 308 with `Range`) and the
//! upload goes on from there.

use super::{error_message, Error};
use crate::backoff::Backoff;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const DEFAULT_BASE: &str = "https://storage.googleapis.com";
/// Chunks must be multiples of this (except the last).
pub const CHUNK_QUANTUM: u64 = 256 * 1024;

pub struct Storage {
    /// `https://storage.googleapis.com`, or an emulator.
    pub base: String,
    pub token: String,
    /// Bytes per PUT, a multiple of 256 KiB.
    pub chunk_size: u64,
    pub backoff: Backoff,
    http: reqwest::blocking::Client,
}

/// Percent-encodes all but RFC 3986's unreserved characters (so `/` in a name is `%2F`).
fn enc(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// What a chunk PUT (or a status query) told us.
enum Step {
    Done(serde_json::Value),
    /// The session holds this many bytes.
    Holds(u64),
}

impl Storage {
    pub fn new(base: &str, token: &str) -> Result<Storage, Error> {
        Ok(Storage {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            chunk_size: 16 << 20,
            backoff: Backoff::default(),
            http: super::http_client()?,
        })
    }

    /// Uploads `file` as `gs://bucket/name`; returns the object resource.
    pub fn upload(
        &self,
        bucket: &str,
        name: &str,
        file: &Path,
        content_type: &str,
        progress: crate::Progress,
    ) -> Result<serde_json::Value, Error> {
        assert!(self.chunk_size > 0 && self.chunk_size.is_multiple_of(CHUNK_QUANTUM));
        let what = format!("uploading {} to gs://{bucket}/{name}", file.display());
        let io = |source| Error::Io {
            context: format!("reading {}", file.display()),
            source,
        };
        let mut f = std::fs::File::open(file).map_err(io)?;
        let total = f.metadata().map_err(io)?.len();
        let session = self.open_session(bucket, name, content_type, total, &what)?;
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut buf = vec![0u8; self.chunk_size as usize];
        loop {
            let len = self.chunk_size.min(total - offset);
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.read_exact(&mut buf[..len as usize]).map_err(io)?;
            let range = if total == 0 {
                "bytes */0".to_string()
            } else {
                format!("bytes {offset}-{}/{total}", offset + len - 1)
            };
            let sent = self.put(&session, &range, buf[..len as usize].to_vec(), &what);
            let step = match sent {
                Ok(step) => step,
                Err(Retryable(last)) => {
                    failures += 1;
                    if failures >= self.backoff.attempts {
                        return Err(Error::GaveUp {
                            what,
                            attempts: failures,
                            last,
                        });
                    }
                    let delay = self.backoff.delay(failures);
                    tracing::warn!(
                        "{what}: chunk at {offset} failed ({last}); asking the session what it holds in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    self.status(&session, total, &what)?
                }
                Err(Fatal(e)) => return Err(e),
            };
            match step {
                Step::Done(object) => {
                    progress(total - offset);
                    return Ok(object);
                }
                Step::Holds(held) => {
                    if held < offset {
                        return Err(Error::Api {
                            what,
                            message: format!("the session went back from {offset} to {held} bytes"),
                        });
                    }
                    if held > offset {
                        progress(held - offset);
                    }
                    if held == offset + len && len > 0 {
                        failures = 0;
                    }
                    offset = held;
                }
            }
        }
    }

    fn open_session(
        &self,
        bucket: &str,
        name: &str,
        content_type: &str,
        total: u64,
        what: &str,
    ) -> Result<String, Error> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}",
            self.base,
            enc(bucket),
            enc(name)
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .header("X-Upload-Content-Type", content_type)
                .header("X-Upload-Content-Length", total.to_string())
                .json(&serde_json::json!({"name": name, "contentType": content_type}))
                .send();
            let last = match resp {
                Ok(r) if r.status().is_success() => {
                    return r
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| Error::Api {
                            what: what.into(),
                            message: "the session answer has no Location".into(),
                        })
                }
                Ok(r) if retryable(r.status().as_u16()) => {
                    error_message(r.status().as_u16(), &r.text().unwrap_or_default())
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    return Err(Error::Api {
                        what: what.into(),
                        message: error_message(status, &r.text().unwrap_or_default()),
                    });
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.backoff.attempts {
                return Err(Error::GaveUp {
                    what: what.into(),
                    attempts: attempt,
                    last,
                });
            }
            std::thread::sleep(self.backoff.delay(attempt));
        }
    }

    fn put(&self, session: &str, range: &str, body: Vec<u8>, what: &str) -> Result<Step, PutError> {
        let resp = self
            .http
            .put(session)
            .bearer_auth(&self.token)
            .header("Content-Range", range)
            .body(body)
            .send()
            .map_err(|e| Retryable(e.to_string()))?;
        let status = resp.status().as_u16();
        let held = resp
            .headers()
            .get("range")
            .and_then(|r| r.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes=0-"))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|last| last + 1);
        match status {
            200 | 201 => {
                let body = resp.text().map_err(|e| Retryable(e.to_string()))?;
                Ok(Step::Done(serde_json::from_str(&body).unwrap_or_default()))
            }
            308 => Ok(Step::Holds(held.unwrap_or(0))),
            s if retryable(s) => Err(Retryable(error_message(
                s,
                &resp.text().unwrap_or_default(),
            ))),
            s => Err(Fatal(Error::Api {
                what: what.into(),
                message: error_message(s, &resp.text().unwrap_or_default()),
            })),
        }
    }

    /// Asks the session how many bytes it holds (retrying while it cannot say).
    fn status(&self, session: &str, total: u64, what: &str) -> Result<Step, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.put(session, &format!("bytes */{total}"), Vec::new(), what) {
                Ok(step) => return Ok(step),
                Err(Fatal(e)) => return Err(e),
                Err(Retryable(last)) if attempt >= self.backoff.attempts => {
                    return Err(Error::GaveUp {
                        what: format!("{what} (asking the session for its size)"),
                        attempts: attempt,
                        last,
                    })
                }
                Err(Retryable(_)) => std::thread::sleep(self.backoff.delay(attempt)),
            }
        }
    }

    /// The object's bytes (`alt=media`).
    pub fn download(&self, bucket: &str, name: &str) -> Result<Vec<u8>, Error> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.base,
            enc(bucket),
            enc(name)
        );
        let what = format!("downloading gs://{bucket}/{name}");
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| Error::Api {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().map_err(|e| Error::Api {
            what: what.clone(),
            message: e.to_string(),
        })?;
        if !(200..300).contains(&status) {
            return Err(Error::Api {
                what,
                message: error_message(status, &String::from_utf8_lossy(&body)),
            });
        }
        Ok(body.to_vec())
    }
}

enum PutError {
    Retryable(String),
    Fatal(Error),
}
use PutError::{Fatal, Retryable};

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}
