//! The v2 node tree: files and directories, with etcd's path rules and rendering.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::{rfc3339_nanos, NodeExtern};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File(String),
    Dir(BTreeMap<String, Node>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub created: u64,
    pub modified: u64,
    /// Absolute expiry in unix nanoseconds; `None` is permanent.
    pub expire: Option<i64>,
    pub kind: Kind,
}

impl Node {
    pub fn file(value: String, index: u64, expire: Option<i64>) -> Self {
        Node {
            created: index,
            modified: index,
            expire,
            kind: Kind::File(value),
        }
    }

    pub fn dir(index: u64, expire: Option<i64>) -> Self {
        Node {
            created: index,
            modified: index,
            expire,
            kind: Kind::Dir(BTreeMap::new()),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub fn value(&self) -> &str {
        match &self.kind {
            Kind::File(v) => v,
            Kind::Dir(_) => "",
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    /// etcd's `expirationAndTTL`: the TTL is the ceiling of the remaining seconds.
    pub fn expiration_and_ttl(&self, now: i64) -> (Option<String>, i64) {
        match self.expire {
            None => (None, 0),
            Some(exp) => {
                let left = exp - now;
                let mut ttl = left / 1_000_000_000;
                if left % 1_000_000_000 > 0 {
                    ttl += 1;
                }
                (Some(rfc3339_nanos(exp)), ttl)
            }
        }
    }

    /// etcd's `Repr`: a directory lists its children only when `recursive`; hidden (`_`) children are left out.
    pub fn repr(&self, path: &str, recursive: bool, now: i64) -> NodeExtern {
        let (expiration, ttl) = self.expiration_and_ttl(now);
        let mut out = NodeExtern {
            key: path.to_string(),
            expiration,
            ttl,
            modified_index: self.modified,
            created_index: self.created,
            ..Default::default()
        };
        match &self.kind {
            Kind::File(v) => out.value = Some(v.clone()),
            Kind::Dir(children) => {
                out.dir = true;
                if recursive {
                    out.nodes = list(children, path, true, now);
                }
            }
        }
        out
    }

    /// etcd's `loadInternalNode` (a GET): a directory always lists one level, deeper when `recursive`.
    pub fn load(&self, path: &str, recursive: bool, now: i64) -> NodeExtern {
        let mut out = self.repr(path, false, now);
        if let Kind::Dir(children) = &self.kind {
            out.nodes = list(children, path, recursive, now);
        }
        out
    }

    /// Every path in this subtree, children before their parent (the order etcd removes them in).
    pub fn subtree_paths(&self, path: &str, out: &mut Vec<(String, Option<i64>)>) {
        if let Kind::Dir(children) = &self.kind {
            for (name, child) in children {
                child.subtree_paths(&join(path, name), out);
            }
        }
        out.push((path.to_string(), self.expire));
    }
}

fn list(
    children: &BTreeMap<String, Node>,
    path: &str,
    recursive: bool,
    now: i64,
) -> Vec<NodeExtern> {
    children
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, child)| child.repr(&join(path, name), recursive, now))
        .collect()
}

pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Go's `path.Clean(path.Join("/", p))`: absolute, no `.`/`..`/empty components, no trailing slash.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The components of a clean path (`/` has none).
pub fn components(p: &str) -> Vec<&str> {
    p.split('/').filter(|c| !c.is_empty()).collect()
}

/// Splits a clean path into its parent directory and last name.
pub fn split(p: &str) -> (String, String) {
    match p.rfind('/') {
        Some(0) => ("/".to_string(), p[1..].to_string()),
        Some(i) => (p[..i].to_string(), p[i + 1..].to_string()),
        None => ("/".to_string(), p.to_string()),
    }
}

/// etcd's `isHidden`: is `key` hidden from a watcher at `watch` (a `_` component below it)?
pub fn is_hidden(watch: &str, key: &str) -> bool {
    if watch.len() > key.len() || !key.starts_with(watch) {
        return false;
    }
    let after = clean(&format!("/{}", &key[watch.len()..]));
    after.contains("/_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a//b/"), "/a/b");
        assert_eq!(clean("/a/../../b/./c"), "/b/c");
        assert_eq!(split("/a"), ("/".into(), "a".into()));
        assert_eq!(split("/a/b/c"), ("/a/b".into(), "c".into()));
    }

    #[test]
    fn hidden_keys() {
        assert!(is_hidden("/", "/_a"));
        assert!(is_hidden("/foo", "/foo/_bar/baz"));
        assert!(!is_hidden("/foo", "/foo/bar"));
        assert!(!is_hidden("/foo/bar", "/foo"));
    }

    #[test]
    fn ttl_is_rounded_up() {
        let n = Node::file("v".into(), 1, Some(10_500_000_000));
        assert_eq!(n.expiration_and_ttl(0).1, 11);
        assert_eq!(n.expiration_and_ttl(500_000_000).1, 10);
    }
}
