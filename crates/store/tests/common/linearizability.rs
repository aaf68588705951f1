//! A linearizability checker for a history of reads and writes on independent registers (one per
//! key), after Wing & Gong with Lowe's memoisation (the WGL search Knossos and Porcupine use).
//!
//! Each key's operations are checked alone (linearizability is compositional). A write whose
//! outcome the client does not know (an error or a timeout) may have taken effect at any point
//! after its call, or never: it has no return time and need not be linearized. A failed read
//! tells nothing and is left out by the recorder.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Wrote this value (values are unique per history).
    Write(String),
    /// Read this value (None: the key did not exist).
    Read(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub key: String,
    pub kind: Kind,
    pub call: Instant,
    /// None: the outcome is unknown (only for writes).
    pub ret: Option<Instant>,
    pub client: usize,
}

/// A key whose history has no linearization, with that history (for the failure message).
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    pub ops: Vec<Op>,
}

/// Checks every key's history; the first key without a linearization, if any.
pub fn check(history: &[Op]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        let mut ops = settle_unknown_writes(ops);
        ops.sort_by_key(|o| o.call);
        if !linearizable(&ops) {
            return Err(Violation {
                key: key.to_string(),
                ops,
            });
        }
    }
    Ok(())
}

/// Gives every write of unknown outcome a return time, or drops it, without changing whether
/// the history is linearizable (and keeping the search from trying every subset of them):
/// - never read: it can always take effect last, after everything else, so it is dropped;
/// - read: it took effect before the first read of its value returned, which becomes its
///   return time.
fn settle_unknown_writes(ops: Vec<Op>) -> Vec<Op> {
    let first_read = |v: &String| {
        ops.iter()
            .filter(|o| matches!(&o.kind, Kind::Read(Some(r)) if r == v))
            .filter_map(|o| o.ret)
            .min()
    };
    let settled: Vec<Option<Op>> = ops
        .iter()
        .map(|o| match (&o.kind, o.ret) {
            (Kind::Write(v), None) => first_read(v).map(|ret| Op {
                ret: Some(ret),
                ..o.clone()
            }),
            _ => Some(o.clone()),
        })
        .collect();
    settled.into_iter().flatten().collect()
}

/// Depth-first search over which operation takes effect next. An operation may go next if it
/// was called before every pending operation with a known return had returned (real-time
/// order), and the register allows it (a read must see the current value). Visited (set of
/// linearized operations, register value) pairs are not searched again.
fn linearizable(ops: &[Op]) -> bool {
    assert!(ops.len() <= 64 * 64, "history too long for the checker");
    let words = ops.len().div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, Option<usize>)> = HashSet::new();
    // Stack of (linearized set, index of the op whose write the register holds).
    let mut stack = vec![(vec![0u64; words], None::<usize>)];
    let is_done = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    while let Some((set, value)) = stack.pop() {
        if !seen.insert((set.clone(), value)) {
            continue;
        }
        // The earliest return among pending operations bounds which may go next.
        let deadline = (0..ops.len())
            .filter(|&i| !is_done(&set, i))
            .filter_map(|i| ops[i].ret)
            .min();
        let Some(deadline) = deadline else {
            // Only unknown writes remain: they may never have happened.
            return true;
        };
        for (i, op) in ops.iter().enumerate() {
            if is_done(&set, i) || op.call > deadline {
                continue;
            }
            let next_value = match &op.kind {
                Kind::Write(_) => Some(i),
                Kind::Read(seen_value) => {
                    let current = value.and_then(|w| match &ops[w].kind {
                        Kind::Write(v) => Some(v),
                        Kind::Read(_) => None,
                    });
                    if current != seen_value.as_ref() {
                        continue;
                    }
                    value
                }
            };
            let mut next = set.clone();
            next[i / 64] |= 1 << (i % 64);
            stack.push((next, next_value));
        }
    }
    false
}
