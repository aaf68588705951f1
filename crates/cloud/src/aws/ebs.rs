//! The EBS direct APIs: a snapshot written block by block (StartSnapshot, PutSnapshotBlock with a
//! SHA-256 checksum per 512 KiB block, CompleteSnapshot), and read back (ListSnapshotBlocks,
//! GetSnapshotBlock). All-zero blocks are not sent: a new snapshot reads as zeros where nothing
//! was written.

use super::client::{Body, Client, Error, Request};
use base64::Engine;
use http::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The block size of the EBS direct APIs.
pub const BLOCK_SIZE: u64 = 512 * 1024;
const GIB: u64 = 1 << 30;

pub struct Ebs<'a> {
    pub client: &'a Client,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    pub snapshot_id: String,
    pub volume_gib: u64,
    pub blocks_written: u64,
    pub blocks_skipped: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSnapshotOutput {
    snapshot_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBlocksOutput {
    #[serde(default)]
    blocks: Vec<BlockEntry>,
    next_token: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct BlockEntry {
    pub block_index: u64,
    pub block_token: String,
}

pub fn checksum(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
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

impl Ebs<'_> {
    fn unexpected(&self, operation: &str, message: String) -> Error {
        Error::Unexpected {
            what: format!("ebs {operation}"),
            message,
        }
    }

    /// A new snapshot of `volume_gib` GiB, tagged; returns its id.
    pub fn start_snapshot(
        &self,
        volume_gib: u64,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<String, Error> {
        let body = serde_json::json!({
            "VolumeSize": volume_gib,
            "Description": description,
            "Tags": tags.iter().map(|(k, v)| serde_json::json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
            // Minutes without a PutSnapshotBlock before EBS gives the snapshot up.
            "Timeout": 60,
            "ClientToken": uuid::Uuid::new_v4().to_string(),
        });
        let resp = self.client.send(
            &Request::new("ebs", "StartSnapshot", Method::POST, "/snapshots".into())
                .header("content-type", "application/json")
                .body(Body::Bytes(body.to_string().into_bytes())),
        )?;
        let out: StartSnapshotOutput = serde_json::from_slice(&resp.body)
            .map_err(|e| self.unexpected("StartSnapshot", format!("reading the answer: {e}")))?;
        Ok(out.snapshot_id)
    }

    pub fn put_block(&self, snapshot: &str, index: u64, data: &[u8]) -> Result<(), Error> {
        let sum = checksum(data);
        let resp = self.client.send(
            &Request::new(
                "ebs",
                "PutSnapshotBlock",
                Method::PUT,
                format!("/snapshots/{}/blocks/{index}", enc(snapshot)),
            )
            .header("x-amz-Data-Length", data.len().to_string())
            .header("x-amz-Checksum", sum.clone())
            .header("x-amz-Checksum-Algorithm", "SHA256")
            .header("content-type", "application/octet-stream")
            .body(Body::Bytes(data.to_vec())),
        )?;
        match resp.header("x-amz-checksum") {
            Some(echo) if echo != sum => Err(self.unexpected(
                "PutSnapshotBlock",
                format!("block {index}: EBS stored checksum {echo}, we sent {sum}"),
            )),
            _ => Ok(()),
        }
    }

    pub fn complete_snapshot(&self, snapshot: &str, changed_blocks: u64) -> Result<String, Error> {
        let resp = self.client.send(
            &Request::new(
                "ebs",
                "CompleteSnapshot",
                Method::POST,
                format!("/snapshots/completion/{}", enc(snapshot)),
            )
            .header("x-amz-ChangedBlocksCount", changed_blocks.to_string()),
        )?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        Ok(v.get("Status")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string())
    }

    /// Every written block of a snapshot, following NextToken.
    pub fn list_blocks(&self, snapshot: &str) -> Result<Vec<BlockEntry>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/snapshots/{}/blocks?maxResults=10000", enc(snapshot));
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={}", enc(t)));
            }
            let resp = self.client.send(&Request::new(
                "ebs",
                "ListSnapshotBlocks",
                Method::GET,
                path,
            ))?;
            let page: ListBlocksOutput = serde_json::from_slice(&resp.body).map_err(|e| {
                self.unexpected("ListSnapshotBlocks", format!("reading the answer: {e}"))
            })?;
            out.extend(page.blocks);
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort_by_key(|b| b.block_index);
        Ok(out)
    }

    /// One block's bytes, checked against the checksum EBS returns with them.
    pub fn get_block(&self, snapshot: &str, block: &BlockEntry) -> Result<Vec<u8>, Error> {
        let resp = self.client.send(&Request::new(
            "ebs",
            "GetSnapshotBlock",
            Method::GET,
            format!(
                "/snapshots/{}/blocks/{}?blockToken={}",
                enc(snapshot),
                block.block_index,
                enc(&block.block_token)
            ),
        ))?;
        if let Some(sum) = resp.header("x-amz-checksum") {
            if sum != checksum(&resp.body) {
                return Err(self.unexpected(
                    "GetSnapshotBlock",
                    format!("block {} does not match its checksum", block.block_index),
                ));
            }
        }
        Ok(resp.body)
    }

    /// Uploads a raw disk image as a new snapshot with `threads` parallel PutSnapshotBlock
    /// requests, skipping all-zero blocks; returns once the snapshot is completed.
    pub fn upload(
        &self,
        image: &Path,
        description: &str,
        tags: &[(String, String)],
        threads: usize,
        progress: crate::Progress,
    ) -> Result<Uploaded, Error> {
        let io = |context: String| move |source| Error::Io { context, source };
        let size = std::fs::metadata(image)
            .map_err(io(format!("reading {}", image.display())))?
            .len();
        let volume_gib = size.div_ceil(GIB).max(1);
        let snapshot_id = self.start_snapshot(volume_gib, description, tags)?;
        let blocks = size.div_ceil(BLOCK_SIZE);
        let next = AtomicU64::new(0);
        let written = AtomicU64::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let result = (|| -> Result<(), Error> {
                        let mut f = std::fs::File::open(image)
                            .map_err(io(format!("opening {}", image.display())))?;
                        let mut buf = vec![0u8; BLOCK_SIZE as usize];
                        loop {
                            if first_error.lock().expect("not poisoned").is_some() {
                                return Ok(());
                            }
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= blocks {
                                return Ok(());
                            }
                            let offset = index * BLOCK_SIZE;
                            let len = BLOCK_SIZE.min(size - offset) as usize;
                            buf[len..].fill(0);
                            f.seek(SeekFrom::Start(offset))
                                .and_then(|_| f.read_exact(&mut buf[..len]))
                                .map_err(io(format!("reading {}", image.display())))?;
                            // A short last block is sent zero-padded: blocks are always 512 KiB.
                            if buf.iter().any(|&b| b != 0) {
                                self.put_block(&snapshot_id, index, &buf)?;
                                written.fetch_add(1, Ordering::Relaxed);
                            }
                            progress(len as u64);
                        }
                    })();
                    if let Err(e) = result {
                        first_error.lock().expect("not poisoned").get_or_insert(e);
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().expect("not poisoned") {
            return Err(e);
        }
        let blocks_written = written.into_inner();
        let status = self.complete_snapshot(&snapshot_id, blocks_written)?;
        if status == "error" {
            return Err(self.unexpected(
                "CompleteSnapshot",
                format!("snapshot {snapshot_id} ended in state error"),
            ));
        }
        Ok(Uploaded {
            snapshot_id,
            volume_gib,
            blocks_written,
            blocks_skipped: blocks - blocks_written,
        })
    }
}
