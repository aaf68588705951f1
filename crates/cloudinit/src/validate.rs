//! Validation: walks the YAML tree against the schema and reports every problem at once, each
//! with its line and column. Unknown keys are warnings (as in coreos-cloudinit); wrong types and
//! invalid values are errors, because applying them would do something the user did not ask for.
//! The walk also produces the config in canonical form (underscored keys, scalars typed as the
//! schema says) for the typed structs to deserialize.

use crate::schema::{Kind, Struct};
use crate::yaml::{Mark, Node, Resolved, Value};
use serde_yaml_ng::{Mapping, Value as Out};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub mark: Mark,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "line {}, column {}: {kind}: {}",
            self.mark.line, self.mark.column, self.message
        )
    }
}

/// What `--validate` shows, in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Error, message.into());
    }
    pub fn warning(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Warning, message.into());
    }
    fn push(&mut self, mark: Mark, severity: Severity, message: String) {
        self.problems.push(Problem {
            mark,
            severity,
            message,
        });
    }
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }
    pub fn sort(&mut self) {
        self.problems.sort_by_key(|p| p.mark);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The keys of one mapping that the schema knows, for checks across fields.
pub struct Present<'a> {
    pub path: String,
    pub mark: Mark,
    pub fields: Vec<(&'static str, &'a Node)>,
}

impl Present<'_> {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.fields
            .iter()
            .find(|(k, n)| *k == key && !n.is_null())
            .map(|(_, n)| *n)
    }
    fn text(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|n| n.scalar())
            .map(|s| s.text.as_str())
    }
}

/// Checks the document's root against the cloud-config schema; returns the canonical config.
pub fn check(root: &Node, report: &mut Report) -> Out {
    if root.is_null() {
        return Out::Mapping(Mapping::new());
    }
    let out = walk(
        root,
        &Kind::Struct(&crate::schema::CLOUD_CONFIG),
        "",
        report,
    );
    out.unwrap_or(Out::Mapping(Mapping::new()))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn want(kind: &Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::Bool => "a boolean (true or false)",
        Kind::Int => "an integer",
        Kind::Float => "a number",
        Kind::List(Kind::Str) => "a list of strings",
        Kind::List(_) => "a list",
        Kind::Struct(_) => "a mapping",
        Kind::Unsupported(_) => "nothing",
    }
}

fn walk(node: &Node, kind: &Kind, path: &str, report: &mut Report) -> Option<Out> {
    if node.is_null() {
        // `key:` with no value is the zero value, as in coreos-cloudinit: nothing to do.
        return None;
    }
    let wrong = |report: &mut Report| {
        let what = if path.is_empty() {
            "the cloud-config".to_string()
        } else {
            format!("{path:?}")
        };
        report.error(
            node.mark,
            format!(
                "incorrect type for {what}: want {}, found {}",
                want(kind),
                node.type_name()
            ),
        );
        None
    };
    let resolved = node.scalar().map(|s| (s, s.resolve()));
    match kind {
        Kind::Str => match resolved {
            Some((s, _)) => Some(Out::String(s.text.clone())),
            None => wrong(report),
        },
        Kind::Bool => match resolved {
            Some((_, Resolved::Bool(b))) => Some(Out::Bool(b)),
            _ => wrong(report),
        },
        Kind::Int => match resolved {
            Some((_, Resolved::Int(i))) => Some(Out::Number(i.into())),
            _ => wrong(report),
        },
        Kind::Float => match resolved {
            Some((_, Resolved::Int(i))) => Some(Out::Number(i.into())),
            Some((_, Resolved::Float(x))) if x.is_finite() => Some(Out::Number(x.into())),
            _ => wrong(report),
        },
        Kind::List(elem) => match &node.value {
            Value::Seq(items) => Some(Out::Sequence(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| walk(n, elem, &format!("{path}[{i}]"), report))
                    .collect(),
            )),
            _ => wrong(report),
        },
        Kind::Struct(s) => match &node.value {
            Value::Map(items) => Some(walk_struct(node.mark, items, s, path, report)),
            _ => wrong(report),
        },
        Kind::Unsupported(why) => {
            report.warning(node.mark, format!("{path:?} is ignored: {why}"));
            None
        }
    }
}

fn walk_struct(
    mark: Mark,
    items: &[(Node, Node)],
    s: &'static Struct,
    path: &str,
    report: &mut Report,
) -> Out {
    let mut out = Mapping::new();
    let mut present = Present {
        path: path.to_string(),
        mark,
        fields: Vec::new(),
    };
    for (k, value) in items {
        let Some(key) = k.scalar().map(|s| s.text.as_str()) else {
            report.error(k.mark, format!("keys in {path:?} must be strings"));
            continue;
        };
        let canonical = key.replace('-', "_");
        let Some(field) = s.field(&canonical) else {
            report.warning(k.mark, format!("unrecognized key {:?}", join(path, key)));
            continue;
        };
        let here = join(path, field.key);
        if present.fields.iter().any(|(f, _)| *f == field.key) {
            report.error(k.mark, format!("duplicate key {here:?}"));
            continue;
        }
        present.fields.push((field.key, value));
        let Some(v) = walk(value, &field.kind, &here, report) else {
            continue;
        };
        if let (Some(valid), Out::String(text)) = (field.valid, &v) {
            if let Err(why) = valid(text) {
                report.error(
                    value.mark,
                    format!("invalid value {text:?} for {here:?}: {why}"),
                );
                continue;
            }
        }
        out.insert(Out::String(field.key.to_string()), v);
    }
    if let Some(check) = s.check {
        check(&present, report);
    }
    Out::Mapping(out)
}

fn required(p: &Present, key: &str, report: &mut Report) -> bool {
    if p.get(key).is_none() {
        report.error(p.mark, format!("{:?} needs a {key}", p.path));
        return false;
    }
    true
}

pub fn check_user(p: &Present, report: &mut Report) {
    required(p, "name", report);
}

pub fn check_named(p: &Present, report: &mut Report) {
    required(p, "name", report);
}

pub fn check_unit(p: &Present, report: &mut Report) {
    if !required(p, "name", report) {
        return;
    }
    if let (Some(m), Some(c)) = (p.get("mask"), p.get("content")) {
        let masked = m
            .scalar()
            .is_some_and(|s| s.resolve() == Resolved::Bool(true));
        if masked {
            report.warning(
                c.mark,
                format!("{:?}: content of a masked unit is not used", p.path),
            );
        }
    }
}

pub fn check_file(p: &Present, report: &mut Report) {
    if required(p, "path", report) {
        if let Some(path) = p.text("path") {
            if !path.starts_with('/') {
                let n = p.get("path").expect("present");
                report.error(
                    n.mark,
                    format!(
                        "invalid value {path:?} for \"{}.path\": must be an absolute path",
                        p.path
                    ),
                );
            }
        }
    }
    if let (Some(enc), Some(content)) = (p.text("encoding"), p.get("content")) {
        let text = content.scalar().map(|s| s.text.as_str()).unwrap_or("");
        if let Err(e) = crate::apply::decode(text, Some(enc)) {
            report.error(
                content.mark,
                format!("\"{}.content\" does not decode as {enc}: {e:#}", p.path),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let doc = crate::yaml::load(text).unwrap();
        let mut r = Report::default();
        check(&doc.root.unwrap(), &mut r);
        r.sort();
        r.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn every_problem_at_once_with_locations() {
        let got = problems(
            "hostname: [a]\nbogus: 1\nwrite_files:\n  - path: rel\n    permissions: 0999\ncoreos:\n  update:\n    reboot-strategy: sometimes\n",
        );
        assert_eq!(
            got,
            [
                "line 1, column 11: error: incorrect type for \"hostname\": want a string, found list",
                "line 2, column 1: warning: unrecognized key \"bogus\"",
                "line 4, column 11: error: invalid value \"rel\" for \"write_files[0].path\": must be an absolute path",
                "line 5, column 18: error: invalid value \"0999\" for \"write_files[0].permissions\": must be an octal mode such as '0644' (quote it)",
                "line 8, column 22: error: invalid value \"sometimes\" for \"coreos.update.reboot_strategy\": must be one of best-effort, etcd-lock, reboot, off",
            ]
        );
    }

    #[test]
    fn canonical_output_uses_underscores_and_schema_types() {
        let doc = crate::yaml::load(
            "ssh-authorized-keys: [k]\ncoreos:\n  etcd2:\n    heartbeat-interval: 100\n    name: 7\n",
        )
        .unwrap();
        let mut r = Report::default();
        let out = check(&doc.root.unwrap(), &mut r);
        assert_eq!(r, Report::default());
        let text = serde_yaml_ng::to_string(&out).unwrap();
        assert_eq!(
            text,
            "ssh_authorized_keys:\n- k\ncoreos:\n  etcd2:\n    heartbeat_interval: 100\n    name: '7'\n"
        );
    }
}
