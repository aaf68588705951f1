//! The `coreos:` section as typed data: service settings (`etcd2`, `fleet`, `flannel`,
//! `locksmith`), `update`, `oem` and `units`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A service's settings by canonical key (`advertise_client_urls`); the schema says which
/// environment variable each becomes and in which order coreos-cloudinit writes them.
pub type Settings = BTreeMap<String, serde_yaml_ng::Value>;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Coreos {
    pub etcd2: Option<Settings>,
    pub fleet: Option<Settings>,
    pub flannel: Option<Settings>,
    pub locksmith: Option<Settings>,
    pub update: Option<Update>,
    pub oem: Option<Oem>,
    pub units: Vec<Unit>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Update {
    pub reboot_strategy: Option<String>,
    pub group: Option<String>,
    pub server: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Oem {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version_id: Option<String>,
    pub home_url: Option<String>,
    pub bug_report_url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Unit {
    pub name: String,
    pub content: Option<String>,
    pub command: Option<String>,
    pub enable: bool,
    pub runtime: bool,
    pub mask: bool,
    pub drop_ins: Vec<DropIn>,
    /// Generated for a section (`update:` restarts locksmithd): skip the command when the unit is
    /// not installed instead of failing the whole run.
    #[serde(skip)]
    pub only_if_installed: bool,
}

impl Unit {
    /// systemd-networkd's files live apart from the system's units, as in coreos-cloudinit.
    pub fn is_network(&self) -> bool {
        matches!(
            self.name.rsplit_once('.').map(|(_, s)| s),
            Some("network" | "netdev" | "link")
        )
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DropIn {
    pub name: String,
    pub content: String,
}

/// A setting's value as the service reads it from its environment (Go's `%v`), or `None` for a
/// zero value, which coreos-cloudinit leaves out.
pub fn env_value(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(true) => Some("true".into()),
        Value::Number(n) if n.as_f64() != Some(0.0) => Some(match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.as_f64().map(|f| f.to_string()).unwrap_or_default(),
        }),
        _ => None,
    }
}
