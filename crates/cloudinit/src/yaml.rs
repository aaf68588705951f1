//! A YAML document as a tree of nodes that remember where they start, so that validation can say
//! "line 7, column 5" about any value. Built from saphyr-parser's events; scalars are resolved
//! with the YAML 1.2 core schema (so `off` and `yes` are strings, as a reboot strategy needs).

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// A place in the source, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of(span: &Span) -> Mark {
        Mark {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    /// Nodes in this subtree, aliases expanded: bounds what a few aliases can blow up to.
    size: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar) and not tagged `!!str`: its type comes from its text.
    pub plain: bool,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

impl Scalar {
    pub fn resolve(&self) -> Resolved {
        if !self.plain {
            return Resolved::Str;
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            "true" | "True" | "TRUE" => return Resolved::Bool(true),
            "false" | "False" | "FALSE" => return Resolved::Bool(false),
            ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
            _ => {}
        }
        if let Some(i) = parse_int(t) {
            return Resolved::Int(i);
        }
        let unsigned = t.trim_start_matches(['-', '+']);
        if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
            let inf = if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Resolved::Float(inf);
        }
        if is_float(t) {
            if let Ok(f) = t.parse() {
                return Resolved::Float(f);
            }
        }
        Resolved::Str
    }
}

fn parse_int(t: &str) -> Option<i64> {
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exp_ok
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// A null scalar (`key:` with nothing after it, `~`, `null`).
    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| s.resolve() == Resolved::Null)
    }

    /// How a user would name this node's type in a message.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => "null",
                Resolved::Bool(_) => "boolean",
                Resolved::Int(_) => "integer",
                Resolved::Float(_) => "number",
                Resolved::Str => "string",
            },
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// The first document (`None` for an empty stream) and where any further documents start.
#[derive(Debug, PartialEq)]
pub struct Document {
    pub root: Option<Node>,
    pub extra_documents: Vec<Mark>,
}

/// Deeper nesting than any cloud-config needs is refused rather than risked.
pub const MAX_DEPTH: usize = 64;
/// Nodes after alias expansion: a few kilobytes of aliases must not become gigabytes.
pub const MAX_NODES: usize = 100_000;

enum Frame {
    Seq(Mark, usize, Vec<Node>),
    Map(Mark, usize, Vec<(Node, Node)>, Option<Node>),
}

pub fn load(text: &str) -> Result<Document, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut docs: Vec<Node> = Vec::new();
    let mut extra = Vec::new();
    let mut seen_docs = 0;
    let mut total = 0usize;
    let err = |mark: Mark, message: &str| SyntaxError {
        mark,
        message: message.to_string(),
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            mark: Mark {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let mark = Mark::of(&span);
        let done = match event {
            Event::DocumentStart(_) => {
                seen_docs += 1;
                if seen_docs > 1 {
                    extra.push(mark);
                }
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let str_tag = tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain && !str_tag,
                    }),
                    mark,
                    size: 1,
                };
                Some((anchor, node))
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| err(mark, "alias to an unknown anchor"))?;
                Some((0, node))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(mark, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(mark, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(m, anchor, items)) => {
                    let size = 1 + items.iter().map(|n| n.size).sum::<usize>();
                    let node = Node {
                        value: Value::Seq(items),
                        mark: m,
                        size,
                    };
                    Some((anchor, node))
                }
                Some(Frame::Map(m, anchor, items, _)) => {
                    let size = 1 + items.iter().map(|(k, v)| k.size + v.size).sum::<usize>();
                    let node = Node {
                        value: Value::Map(items),
                        mark: m,
                        size,
                    };
                    Some((anchor, node))
                }
                None => return Err(err(mark, "unbalanced collection end")),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
        };
        if stack.len() > MAX_DEPTH {
            return Err(err(
                mark,
                &format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        let Some((anchor, node)) = done else { continue };
        total += node.size;
        if total > MAX_NODES {
            return Err(err(
                mark,
                &format!("more than {MAX_NODES} values (aliases expanded)"),
            ));
        }
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, items, key)) => match key.take() {
                Some(k) => items.push((k, node)),
                None => *key = Some(node),
            },
            None => docs.push(node),
        }
    }
    Ok(Document {
        root: docs.into_iter().next(),
        extra_documents: extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        load(text).unwrap().root.unwrap()
    }

    #[test]
    fn marks_are_one_based_lines_and_columns() {
        let n = root("#cloud-config\nhostname: a\nusers:\n  - name: core\n");
        let Value::Map(items) = &n.value else {
            panic!("{n:?}")
        };
        assert_eq!(items[0].0.mark, Mark { line: 2, column: 1 });
        assert_eq!(
            items[0].1.mark,
            Mark {
                line: 2,
                column: 11
            }
        );
        let Value::Seq(users) = &items[1].1.value else {
            panic!()
        };
        let Value::Map(u) = &users[0].value else {
            panic!()
        };
        assert_eq!(
            u[0].1.mark,
            Mark {
                line: 4,
                column: 11
            }
        );
    }

    #[test]
    fn core_schema_resolution() {
        let s = |t: &str| {
            Scalar {
                text: t.into(),
                plain: true,
            }
            .resolve()
        };
        assert_eq!(s("off"), Resolved::Str);
        assert_eq!(s("yes"), Resolved::Str);
        assert_eq!(s("true"), Resolved::Bool(true));
        assert_eq!(s("0644"), Resolved::Int(644));
        assert_eq!(s("0o17"), Resolved::Int(15));
        assert_eq!(s("-3"), Resolved::Int(-3));
        assert_eq!(s("1.5e3"), Resolved::Float(1500.0));
        assert_eq!(s(".5"), Resolved::Float(0.5));
        assert_eq!(s("1.2.3"), Resolved::Str);
        assert_eq!(s("~"), Resolved::Null);
        assert_eq!(s("e3"), Resolved::Str);
        let quoted = Scalar {
            text: "true".into(),
            plain: false,
        };
        assert_eq!(quoted.resolve(), Resolved::Str);
        let n = root("a: !!str 12\n");
        let Value::Map(items) = &n.value else {
            panic!()
        };
        assert_eq!(items[0].1.scalar().unwrap().resolve(), Resolved::Str);
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let n = root("a: &x [1, 2]\nb: *x\n");
        let Value::Map(items) = &n.value else {
            panic!()
        };
        assert_eq!(items[0].1.value, items[1].1.value);
        let mut bomb = String::from("a: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = load(&bomb).unwrap_err();
        assert!(e.message.contains("aliases expanded"), "{e:?}");
    }

    #[test]
    fn syntax_errors_and_depth() {
        let e = load("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.mark.line >= 1, "{e:?}");
        let deep = "[".repeat(100) + &"]".repeat(100);
        let e = load(&deep).unwrap_err();
        assert!(e.message.contains("nesting"), "{e:?}");
        assert_eq!(load("").unwrap().root, None);
        let two = load("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(two.extra_documents, vec![Mark { line: 2, column: 1 }]);
    }
}
