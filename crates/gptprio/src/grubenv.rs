//! GRUB's environment block: exactly 1024 bytes, `# GRUB Environment Block\n`, `name=value`
//! lines, padded with `#`. GRUB's `save_env` rewrites it in place, so the size never changes.
//! As in GRUB's `envblk.c`, a backslash or newline inside a value is written with a backslash
//! before it; lines starting with `#` (grub-editenv's warning, the padding) are comments.

pub const SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("grubenv is {0} bytes, not 1024 (GRUB's block is exactly 1024)")]
    Size(usize),
    #[error("grubenv does not start with \"# GRUB Environment Block\"")]
    Header,
    #[error("grubenv variables need {0} bytes; the block holds 1024")]
    Full(usize),
    #[error("grubenv line {0:?} is not name=value")]
    Line(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != SIZE {
            return Err(Error::Size(bytes.len()));
        }
        let text = String::from_utf8_lossy(bytes);
        let mut rest = text.strip_prefix(HEADER).ok_or(Error::Header)?;
        let mut env = GrubEnv::new();
        while !rest.is_empty() {
            let (line, after) = split_line(rest);
            rest = after;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| Error::Line(line.to_string()))?;
            env.set(k, &unescape(v));
        }
        Ok(env)
    }

    /// The 1024-byte block; fails when the variables do not fit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut s = String::from(HEADER);
        for (k, v) in &self.vars {
            s.push_str(k);
            s.push('=');
            for c in v.chars() {
                if c == '\\' || c == '\n' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('\n');
        }
        if s.len() > SIZE {
            return Err(Error::Full(s.len()));
        }
        let mut b = s.into_bytes();
        b.resize(SIZE, b'#');
        Ok(b)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (which must not contain `=` or a newline; GRUB cannot store that either).
    pub fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }

    /// Variables in block order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One logical line: up to a newline that is not escaped by a backslash.
fn split_line(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return (&s[..i], &s[i + 1..]),
            _ => i += 1,
        }
    }
    (s, "")
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}
