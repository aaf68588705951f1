//! The JSON shapes of v2 responses: events and nodes as etcd serialises them.

use serde::{Deserialize, Serialize};

pub const GET: &str = "get";
pub const CREATE: &str = "create";
pub const SET: &str = "set";
pub const UPDATE: &str = "update";
pub const DELETE: &str = "delete";
pub const COMPARE_AND_SWAP: &str = "compareAndSwap";
pub const COMPARE_AND_DELETE: &str = "compareAndDelete";
pub const EXPIRE: &str = "expire";

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A node as clients see it (etcd's `NodeExtern`; field order and omissions match Go's encoder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExtern {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeExtern>,
    #[serde(default, rename = "modifiedIndex", skip_serializing_if = "is_zero_u64")]
    pub modified_index: u64,
    #[serde(default, rename = "createdIndex", skip_serializing_if = "is_zero_u64")]
    pub created_index: u64,
}

/// One change (or a read) of the v2 store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeExtern>,
    #[serde(default, rename = "prevNode", skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<NodeExtern>,
    /// The store index when the event was made (the `X-Etcd-Index` header, not in the body).
    #[serde(skip)]
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history but never sent to watchers.
    #[serde(skip)]
    pub refresh: bool,
}

impl Event {
    pub fn new(action: &str, key: &str, modified: u64, created: u64) -> Self {
        Event {
            action: action.to_string(),
            node: Some(NodeExtern {
                key: key.to_string(),
                modified_index: modified,
                created_index: created,
                ..Default::default()
            }),
            prev_node: None,
            etcd_index: 0,
            refresh: false,
        }
    }

    /// The index the event happened at (its node's modified index).
    pub fn index(&self) -> u64 {
        self.node.as_ref().map_or(0, |n| n.modified_index)
    }

    pub fn key(&self) -> &str {
        self.node.as_ref().map_or("", |n| n.key.as_str())
    }

    /// etcd answers 201 Created for creations and for a `set` of a new key.
    pub fn is_created(&self) -> bool {
        self.action == CREATE || (self.action == SET && self.prev_node.is_none())
    }
}

/// Formats unix nanoseconds as Go's `time.Time` JSON (RFC 3339, nanoseconds without trailing zeros, UTC).
pub fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        // 2026-11-25T05:44:44.355469478Z as etcd printed it.
        assert_eq!(
            rfc3339_nanos(1_795_585_484_355_469_478),
            "2026-11-25T05:44:44.355469478Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_500_000_000),
            "2000-02-29T00:00:00.5Z"
        );
    }

    #[test]
    fn node_json_omits_empty_fields_in_go_order() {
        let e = Event::new(SET, "/a", 4, 4);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"action":"set","node":{"key":"/a","modifiedIndex":4,"createdIndex":4}}"#
        );
    }
}
