//! Who this member is: name, IDs, URLs, start time (for `/v2/members`, stats and headers).

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// Unix nanoseconds.
    pub start_time: i64,
    /// `--initial-cluster-token`: with the peer URLs, it makes a member's ID.
    pub token: String,
}

/// A stable 64-bit ID from strings (etcd derives IDs by hashing the same inputs): the first 8
/// bytes of a SHA-256 over the length-prefixed parts. Not std's `DefaultHasher`, whose output
/// may change between Rust releases: members built by different toolchains must agree.
fn id_of(parts: &[&str]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

impl Member {
    pub fn new(name: &str, peer_urls: Vec<String>, client_urls: Vec<String>, token: &str) -> Self {
        let mut id_parts: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
        id_parts.push(token);
        let id = id_of(&id_parts);
        let cluster_id = id_of(&[&format!("{id:x}"), token]);
        Member {
            name: name.to_string(),
            id,
            cluster_id,
            peer_urls,
            client_urls,
            start_time: crate::core::now_nanos(),
            token: token.to_string(),
        }
    }

    /// The cluster ID from every initial member's ID (sorted) and the token, so that all
    /// members agree on it; for one member it is what a lone member always had.
    pub fn set_cluster(&mut self, member_ids: &[u64], token: &str) {
        let mut hex: Vec<String> = member_ids.iter().map(|id| format!("{id:x}")).collect();
        hex.sort();
        let mut parts: Vec<&str> = hex.iter().map(String::as_str).collect();
        parts.push(token);
        self.cluster_id = id_of(&parts);
    }

    /// Every initial member's ID and node from `--initial-cluster` (name, peer URLs) and the
    /// cluster token: the same on every member, and in a restored data dir.
    pub fn initial_nodes(
        members: Vec<(String, Vec<String>)>,
        token: &str,
    ) -> Vec<(u64, crate::raft::PeerNode)> {
        members
            .into_iter()
            .map(|(name, urls)| {
                let id = Member::new(&name, urls.clone(), Vec::new(), token).id;
                (
                    id,
                    crate::raft::PeerNode {
                        name,
                        peer_urls: urls,
                        learner: false,
                    },
                )
            })
            .collect()
    }

    /// The ID a member added with these peer URLs gets: the one it computes for itself when it
    /// starts with them in `--initial-cluster` (same token).
    pub fn id_for(&self, peer_urls: &[String]) -> u64 {
        Member::new("", peer_urls.to_vec(), Vec::new(), &self.token).id
    }

    pub fn id_hex(&self) -> String {
        format!("{:x}", self.id)
    }

    pub fn cluster_id_hex(&self) -> String {
        format!("{:x}", self.cluster_id)
    }
}
