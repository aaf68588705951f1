//! The `coreos:` section: service settings (`etcd2`, `fleet`, `flannel`, `locksmith`), `update`,
//! and `units`, written where coreos-cloudinit writes them.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A service's settings: every key is a flag of that service (`advertise-client-urls`), written as
/// an environment variable (`ETCD_ADVERTISE_CLIENT_URLS`).
pub type Settings = BTreeMap<String, serde_yaml_ng::Value>;

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Coreos {
    #[serde(default)]
    pub etcd2: Option<Settings>,
    #[serde(default)]
    pub fleet: Option<Settings>,
    #[serde(default)]
    pub flannel: Option<Settings>,
    #[serde(default)]
    pub locksmith: Option<Settings>,
    #[serde(default)]
    pub update: Option<Update>,
    #[serde(default)]
    pub units: Vec<Unit>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Update {
    #[serde(default, alias = "reboot_strategy")]
    #[serde(rename = "reboot-strategy")]
    pub reboot_strategy: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub server: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Unit {
    pub name: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub runtime: bool,
    #[serde(default)]
    pub mask: bool,
    #[serde(default, alias = "drop_ins", rename = "drop-ins")]
    pub drop_ins: Vec<DropIn>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct DropIn {
    pub name: String,
    #[serde(default)]
    pub content: String,
}

pub const REBOOT_STRATEGIES: &[&str] = &["best-effort", "etcd-lock", "reboot", "off"];
pub const UNIT_COMMANDS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
];
const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "snapshot",
    "slice",
    "scope",
];

/// `advertise-client-urls` → `ETCD_ADVERTISE_CLIENT_URLS` (prefix `ETCD`).
pub fn env_name(prefix: &str, key: &str) -> String {
    format!("{prefix}_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// A YAML scalar as the service would read it on its command line.
pub fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Coreos {
    pub fn errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, settings) in [
            ("etcd2", &self.etcd2),
            ("fleet", &self.fleet),
            ("flannel", &self.flannel),
            ("locksmith", &self.locksmith),
        ] {
            for (k, v) in settings.iter().flatten() {
                if scalar(v).is_none() {
                    errs.push(format!(
                        "coreos.{name}.{k}: expected a string, number or boolean"
                    ));
                }
            }
        }
        if let Some(s) = self
            .update
            .as_ref()
            .and_then(|u| u.reboot_strategy.as_ref())
        {
            if !REBOOT_STRATEGIES.contains(&s.as_str()) {
                errs.push(format!(
                    "coreos.update.reboot-strategy: {s:?} is not one of {}",
                    REBOOT_STRATEGIES.join(", ")
                ));
            }
        }
        for (i, u) in self.units.iter().enumerate() {
            let suffix = u.name.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
            if !UNIT_SUFFIXES.contains(&suffix) || u.name.contains('/') {
                errs.push(format!(
                    "coreos.units[{i}].name: {:?} is not a unit name (e.g. foo.service)",
                    u.name
                ));
            }
            if let Some(c) = &u.command {
                if !UNIT_COMMANDS.contains(&c.as_str()) {
                    errs.push(format!(
                        "coreos.units[{i}].command: {c:?} is not one of {}",
                        UNIT_COMMANDS.join(", ")
                    ));
                }
            }
            for (j, d) in u.drop_ins.iter().enumerate() {
                if !d.name.ends_with(".conf") || d.name.contains('/') {
                    errs.push(format!(
                        "coreos.units[{i}].drop-ins[{j}].name: {:?} must be a .conf file name",
                        d.name
                    ));
                }
            }
        }
        errs
    }

    pub fn warnings(&self) -> Vec<String> {
        self.other
            .keys()
            .map(|k| format!("unrecognized key \"coreos.{k}\""))
            .collect()
    }
}
