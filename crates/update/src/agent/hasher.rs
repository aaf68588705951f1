//! sha256 on a helper thread, so hashing overlaps with decompressing, writing and reading the
//! slot (on the two-core machines updates run on, that is most of the gain). Buffers go to the
//! thread and come back for reuse.

use sha2::{Digest, Sha256};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub struct Hasher {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    back: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<(u64, String)>>,
    chunk: usize,
}

impl Hasher {
    pub fn new(chunk: usize) -> Hasher {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (back_tx, back) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (mut h, mut len) = (Sha256::new(), 0u64);
            for buf in rx {
                h.update(&buf);
                len += buf.len() as u64;
                let _ = back_tx.send(buf);
            }
            (len, hex::encode(h.finalize()))
        });
        Hasher {
            tx: Some(tx),
            back,
            thread: Some(thread),
            chunk,
        }
    }

    /// A buffer of `chunk` bytes: one the thread is done with, or a new one.
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.chunk));
        b.resize(self.chunk, 0);
        b
    }

    /// A buffer the thread is done with, if any (for a producer elsewhere to refill).
    pub fn recycled(&self) -> Option<Vec<u8>> {
        self.back.try_recv().ok()
    }

    /// Hashes `buf` (its whole length) after everything sent before.
    pub fn send(&self, buf: Vec<u8>) {
        if let Some(tx) = &self.tx {
            // The thread only ends when `tx` is dropped, so this cannot fail.
            let _ = tx.send(buf);
        }
    }

    /// Length and hex sha256 of everything sent.
    pub fn finish(mut self) -> (u64, String) {
        drop(self.tx.take());
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_one_pass() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let h = Hasher::new(100_000);
        for piece in data.chunks(100_000) {
            let mut b = h.buffer();
            b.truncate(piece.len());
            b.copy_from_slice(piece);
            h.send(b);
        }
        assert_eq!(
            h.finish(),
            (data.len() as u64, hex::encode(Sha256::digest(&data)))
        );
    }
}
