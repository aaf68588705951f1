//! The kernel command line, parsed once.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Cmdline {
    params: HashMap<String, String>,
}

impl Cmdline {
    pub fn read() -> Cmdline {
        Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    /// `key=value` and bare `flag` words; quotes around a value are removed.
    pub fn parse(text: &str) -> Cmdline {
        let mut params = HashMap::new();
        let mut word = String::new();
        let mut quoted = false;
        let mut words = Vec::new();
        for c in text.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => params.insert(k.to_string(), v.to_string()),
                None => params.insert(w, String::new()),
            };
        }
        Cmdline { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The A/B slot GRUB booted (`ferrocore.slot=A|B`).
    pub fn slot(&self) -> Option<&str> {
        self.get("ferrocore.slot")
    }

    pub fn fatal_delay(&self) -> u64 {
        self.get("ferrocore.fatal_delay")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
    }

    /// The init systemd runs as, after the switch.
    pub fn next_init(&self) -> &str {
        self.get("ferrocore.init")
            .unwrap_or("/usr/lib/systemd/systemd")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_dm_table_and_flags() {
        let c = Cmdline::parse(
            "console=ttyS0 dm-mod.create=\"usr,,,ro,0 8 verity 1 a b\" ferrocore.slot=B quiet\n",
        );
        assert_eq!(c.get("dm-mod.create"), Some("usr,,,ro,0 8 verity 1 a b"));
        assert_eq!(c.slot(), Some("B"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.fatal_delay(), 10);
    }
}
