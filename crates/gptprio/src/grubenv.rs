//! GRUB's environment block: exactly 1024 bytes, `# GRUB Environment Block\n`, `name=value`
//! lines, padded with `#`. GRUB's `save_env` rewrites it in place, so the size never changes.

pub const SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("grubenv is {0} bytes; GRUB's block is exactly 1024")]
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
        let body = text.strip_prefix(HEADER).ok_or(Error::Header)?;
        let mut env = GrubEnv::new();
        for line in body.split('\n') {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| Error::Line(line.to_string()))?;
            env.set(k, v);
        }
        Ok(env)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut s = String::from(HEADER);
        for (k, v) in &self.vars {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
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

    pub fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }
}
