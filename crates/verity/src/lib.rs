//! dm-verity hash trees, as the kernel's `verity` target and cryptsetup's `veritysetup` read them.
//!
//! Format 1 with sha256: every data block is hashed as `sha256(salt || block)`; hashes are packed
//! 128 to a 4 KiB hash block, zero padded; levels are stacked until one block remains, stored top
//! level first. The root hash is `sha256(salt || top block)`. A 512-byte superblock (in its own
//! hash block) precedes the tree so that `veritysetup verify --hash-offset` finds the parameters.
//!
//! We store the tree right after the filesystem in the same partition, so one partition is a
//! self-contained, verifiable `/usr` slot.

use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const BLOCK_SIZE: u64 = 4096;
const DIGEST_SIZE: usize = 32;
const HASHES_PER_BLOCK: usize = BLOCK_SIZE as usize / DIGEST_SIZE;
const SUPERBLOCK_SIZE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0} is empty: there is nothing to protect")]
    Empty(String),
    #[error("salt is {0} bytes; at most 256 fit the superblock")]
    SaltTooLong(usize),
    #[error("{path}: verity root hash mismatch: expected {expected}, computed {computed}")]
    Mismatch {
        path: String,
        expected: String,
        computed: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A computed tree and where it goes.
#[derive(Clone, Debug)]
pub struct Tree {
    pub root_hash: [u8; DIGEST_SIZE],
    pub salt: Vec<u8>,
    pub uuid: [u8; 16],
    /// Number of 4 KiB data blocks covered.
    pub data_blocks: u64,
    /// Superblock followed by the hash levels, ready to write at `hash_offset()`.
    pub hash_area: Vec<u8>,
}

impl Tree {
    /// Byte offset of the superblock: right after the (block-padded) data.
    pub fn hash_offset(&self) -> u64 {
        self.data_blocks * BLOCK_SIZE
    }
    /// The kernel's `hash_start_block`: the first tree block, after the superblock's block.
    pub fn hash_start_block(&self) -> u64 {
        self.data_blocks + 1
    }
    /// Bytes the slot needs: data + superblock + tree.
    pub fn total_size(&self) -> u64 {
        self.hash_offset() + self.hash_area.len() as u64
    }
    pub fn root_hash_hex(&self) -> String {
        hex::encode(self.root_hash)
    }
    pub fn salt_hex(&self) -> String {
        if self.salt.is_empty() {
            "-".into()
        } else {
            hex::encode(&self.salt)
        }
    }
    /// A device-mapper table line for `dm-mod.create=` / `dmsetup`, data and tree on `dev`.
    pub fn kernel_table(&self, dev: &str) -> String {
        format!(
            "0 {sectors} verity 1 {dev} {dev} {bs} {bs} {blocks} {start} sha256 {root} {salt}",
            sectors = self.data_blocks * (BLOCK_SIZE / 512),
            bs = BLOCK_SIZE,
            blocks = self.data_blocks,
            start = self.hash_start_block(),
            root = self.root_hash_hex(),
            salt = self.salt_hex(),
        )
    }
}

fn hash_block(salt: &[u8], block: &[u8]) -> [u8; DIGEST_SIZE] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Packs digests into zero-padded hash blocks.
fn pack(digests: &[[u8; DIGEST_SIZE]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(HASHES_PER_BLOCK).max(1);
    let mut out = vec![0u8; blocks * BLOCK_SIZE as usize];
    for (i, d) in digests.iter().enumerate() {
        out[i * DIGEST_SIZE..(i + 1) * DIGEST_SIZE].copy_from_slice(d);
    }
    out
}

/// Computes the tree over `data_blocks` blocks read from `data`.
pub fn build(
    mut data: impl Read,
    data_blocks: u64,
    salt: &[u8],
    uuid: [u8; 16],
) -> Result<Tree, Error> {
    if salt.len() > 256 {
        return Err(Error::SaltTooLong(salt.len()));
    }
    if data_blocks == 0 {
        return Err(Error::Empty("data".into()));
    }
    let mut block = vec![0u8; BLOCK_SIZE as usize];
    let mut digests = Vec::with_capacity(data_blocks as usize);
    for _ in 0..data_blocks {
        data.read_exact(&mut block)
            .map_err(io("reading data block"))?;
        digests.push(hash_block(salt, &block));
    }
    // Bottom-up: each level hashes the packed blocks of the one below, until one digest is left
    // (a single data block has no levels at all: its own digest is the root, as in the kernel).
    let mut levels: Vec<Vec<u8>> = Vec::new();
    while digests.len() > 1 {
        let packed = pack(&digests);
        digests = packed
            .chunks(BLOCK_SIZE as usize)
            .map(|b| hash_block(salt, b))
            .collect();
        levels.push(packed);
    }
    let root_hash = digests[0];
    let mut hash_area = superblock(data_blocks, salt, uuid);
    hash_area.resize(BLOCK_SIZE as usize, 0);
    for level in levels.iter().rev() {
        hash_area.extend_from_slice(level);
    }
    Ok(Tree {
        root_hash,
        salt: salt.to_vec(),
        uuid,
        data_blocks,
        hash_area,
    })
}

fn superblock(data_blocks: u64, salt: &[u8], uuid: [u8; 16]) -> Vec<u8> {
    let mut sb = Vec::with_capacity(SUPERBLOCK_SIZE);
    sb.extend_from_slice(b"verity\0\0");
    sb.extend_from_slice(&1u32.to_le_bytes()); // superblock version
    sb.extend_from_slice(&1u32.to_le_bytes()); // hash type: format 1 (salt first)
    sb.extend_from_slice(&uuid);
    let mut alg = [0u8; 32];
    alg[..6].copy_from_slice(b"sha256");
    sb.extend_from_slice(&alg);
    sb.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes()); // data block size
    sb.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes()); // hash block size
    sb.extend_from_slice(&data_blocks.to_le_bytes());
    sb.extend_from_slice(&(salt.len() as u16).to_le_bytes());
    sb.extend_from_slice(&[0u8; 6]);
    let mut salt_field = [0u8; 256];
    salt_field[..salt.len()].copy_from_slice(salt);
    sb.extend_from_slice(&salt_field);
    sb.resize(SUPERBLOCK_SIZE, 0);
    sb
}

/// Pads the file at `path` to a whole number of blocks and appends superblock + tree to it.
pub fn append_to_file(path: &Path, salt: &[u8], uuid: [u8; 16]) -> Result<Tree, Error> {
    let name = path.display().to_string();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(format!("opening {name}")))?;
    let len = f.metadata().map_err(io(format!("reading {name}")))?.len();
    if len == 0 {
        return Err(Error::Empty(name));
    }
    let data_blocks = len.div_ceil(BLOCK_SIZE);
    f.set_len(data_blocks * BLOCK_SIZE)
        .map_err(io(format!("padding {name}")))?;
    let tree = build(
        std::io::BufReader::with_capacity(1 << 20, &mut f),
        data_blocks,
        salt,
        uuid,
    )?;
    f.seek(SeekFrom::Start(tree.hash_offset()))
        .map_err(io(format!("seeking {name}")))?;
    f.write_all(&tree.hash_area)
        .map_err(io(format!("writing tree to {name}")))?;
    f.sync_all().map_err(io(format!("syncing {name}")))?;
    Ok(tree)
}

/// Recomputes the root hash of the first `data_blocks` blocks of `dev` and compares it with
/// `expected` (for re-verifying a slot after writing it).
pub fn verify_data(
    dev: &mut (impl Read + Seek),
    data_blocks: u64,
    salt: &[u8],
    expected: &[u8; DIGEST_SIZE],
    name: &str,
) -> Result<(), Error> {
    dev.seek(SeekFrom::Start(0))
        .map_err(io(format!("seeking {name}")))?;
    let tree = build(
        std::io::BufReader::with_capacity(1 << 20, dev),
        data_blocks,
        salt,
        [0; 16],
    )?;
    if &tree.root_hash != expected {
        return Err(Error::Mismatch {
            path: name.into(),
            expected: hex::encode(expected),
            computed: tree.root_hash_hex(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
