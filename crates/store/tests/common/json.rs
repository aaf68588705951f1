//! Order-preserving JSON (etcd's field order is part of what we compare) and the normalisation
//! that makes two servers' answers comparable: indices relative to each server's start, times masked,
//! directory listings sorted (etcd's order is Go map order, i.e. random).

use std::fmt::Write;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(serde_json::Number::from_f64(n).map_or(J::Null, J::Num))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl J {
    pub fn render(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => write!(out, "{b}").unwrap(),
            J::Num(n) => write!(out, "{n}").unwrap(),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.render(out);
                }
                out.push(']');
            }
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    x.render(out);
                }
                out.push('}');
            }
        }
    }

    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(v) => v.iter().find(|(k, _)| k == key).map(|(_, x)| x),
            _ => None,
        }
    }
}

/// Rewrites every number ≥ `base` in `s` as `n-base` (indices inside causes and in-order key names).
pub fn rebase_numbers(s: &str, base: u64) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() {
            let width = digits.len();
            match digits.parse::<u64>() {
                Ok(n) if n >= base && base > 0 => {
                    if width == 20 {
                        write!(out, "{:020}", n - base).unwrap();
                    } else {
                        write!(out, "{}", n - base).unwrap();
                    }
                }
                _ => out.push_str(digits),
            }
            digits.clear();
        }
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Normalises one response body in place.
pub fn normalise(j: &mut J, base: u64) {
    let error_code = j.get("errorCode").cloned();
    match j {
        J::Obj(fields) => {
            for (k, v) in fields.iter_mut() {
                match (k.as_str(), &mut *v) {
                    ("modifiedIndex" | "createdIndex" | "index", J::Num(n)) => {
                        let x = n.as_u64().unwrap_or(0);
                        *v = J::Num(x.saturating_sub(base).into());
                    }
                    ("expiration" | "startTime" | "uptime" | "ts" | "target", J::Str(s)) => {
                        *s = "<masked>".into()
                    }
                    ("cluster_id" | "member_id" | "raft_term", J::Num(_)) => {
                        *v = J::Str("<masked>".into())
                    }
                    // v3 lease IDs are random in etcd.
                    ("lease" | "ID", J::Num(n)) if n.as_u64() != Some(0) => {
                        *v = J::Str("<lease>".into())
                    }
                    ("id" | "leader", J::Str(s)) => *s = "<id>".into(),
                    ("key", J::Str(s)) => *s = rebase_numbers(s, base),
                    ("cause", J::Str(s)) if matches!(&error_code, Some(J::Num(c)) if c.as_u64() == Some(101) || c.as_u64() == Some(401)) => {
                        *s = rebase_numbers(s, base)
                    }
                    _ => normalise(v, base),
                }
            }
            for (k, v) in fields.iter_mut() {
                if k == "nodes" {
                    if let J::Arr(nodes) = v {
                        nodes.sort_by_key(|n| match n.get("key") {
                            Some(J::Str(s)) => s.clone(),
                            _ => String::new(),
                        });
                    }
                }
            }
        }
        J::Arr(v) => v.iter_mut().for_each(|x| normalise(x, base)),
        _ => {}
    }
}

/// A response body, normalised: each JSON line separately, other text as it is.
pub fn normalise_body(body: &str, base: u64) -> String {
    let mut out = String::new();
    for line in body.lines() {
        match serde_json::from_str::<J>(line) {
            Ok(mut j) => {
                normalise(&mut j, base);
                j.render(&mut out);
            }
            Err(_) => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
