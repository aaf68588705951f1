//! The cloud-config schema as data: every key coreos-cloudinit knows, its type, the checks on its
//! value, and for service sections the environment variable it becomes (in coreos-cloudinit's
//! struct order, which is the order of the lines it writes). Keys are spelled with underscores;
//! user data may use hyphens instead.

use crate::validate::{Present, Report};

pub enum Kind {
    /// A scalar, taken as text (numbers and booleans too, as coreos-cloudinit does).
    Str,
    Bool,
    Int,
    /// An integer or a decimal number.
    Float,
    List(&'static Kind),
    Struct(&'static Struct),
    /// Known to coreos-cloudinit but not done by this agent: a warning, not an error.
    Unsupported(&'static str),
}

pub struct Struct {
    pub fields: &'static [Field],
    /// Checks across fields (a required key, content that must decode with its encoding).
    pub check: Option<fn(&Present, &mut Report)>,
}

/// A check on one scalar's text: `Err` says what is allowed.
pub type ScalarCheck = fn(&str) -> Result<(), String>;

pub struct Field {
    pub key: &'static str,
    pub kind: Kind,
    /// A check on a scalar's text; the error says what is allowed.
    pub valid: Option<ScalarCheck>,
    /// For service sections: the environment variable this key becomes.
    pub env: &'static str,
}

const fn f(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        valid: None,
        env: "",
    }
}

const fn v(key: &'static str, kind: Kind, valid: fn(&str) -> Result<(), String>) -> Field {
    Field {
        key,
        kind,
        valid: Some(valid),
        env: "",
    }
}

const fn env(key: &'static str, kind: Kind, env: &'static str) -> Field {
    Field {
        key,
        kind,
        valid: None,
        env,
    }
}

impl Struct {
    pub fn field(&self, key: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.key == key)
    }
}

// SAFETY of 'static: all schema tables are constants.
impl Field {
    pub fn struct_kind(&self) -> Option<&'static Struct> {
        match self.kind {
            Kind::Struct(s) => Some(s),
            _ => None,
        }
    }
}

use Kind::{Bool, Float, Int, List, Str, Unsupported};

pub static CLOUD_CONFIG: Struct = Struct {
    fields: &[
        f("ssh_authorized_keys", List(&Str)),
        f("coreos", Kind::Struct(&COREOS)),
        f("write_files", List(&Kind::Struct(&FILE))),
        v("hostname", Str, valid_hostname),
        f("users", List(&Kind::Struct(&USER))),
        v("manage_etc_hosts", Str, |s| one_of(s, &["localhost"])),
    ],
    check: None,
};

pub static COREOS: Struct = Struct {
    fields: &[
        f(
            "etcd",
            Unsupported("etcd (v1) is not shipped; use coreos.etcd2"),
        ),
        f("etcd2", Kind::Struct(&ETCD2)),
        f("flannel", Kind::Struct(&FLANNEL)),
        f("fleet", Kind::Struct(&FLEET)),
        f("locksmith", Kind::Struct(&LOCKSMITH)),
        f("oem", Kind::Struct(&OEM)),
        f("update", Kind::Struct(&UPDATE)),
        f("units", List(&Kind::Struct(&UNIT))),
    ],
    check: None,
};

pub static USER: Struct = Struct {
    fields: &[
        f("name", Str),
        f("passwd", Str),
        f("ssh_authorized_keys", List(&Str)),
        f(
            "coreos_ssh_import_github",
            Unsupported("importing keys from GitHub is not done by this agent"),
        ),
        f(
            "coreos_ssh_import_github_users",
            Unsupported("importing keys from GitHub is not done by this agent"),
        ),
        f(
            "coreos_ssh_import_url",
            Unsupported("importing keys from a URL is not done by this agent"),
        ),
        f("gecos", Str),
        f("homedir", Str),
        f("no_create_home", Bool),
        f("primary_group", Str),
        f("groups", List(&Str)),
        f("no_user_group", Bool),
        f("system", Bool),
        f("no_log_init", Bool),
        f("shell", Str),
    ],
    check: Some(crate::validate::check_user),
};

pub static FILE: Struct = Struct {
    fields: &[
        v("encoding", Str, |s| {
            one_of(
                s,
                &[
                    "base64",
                    "b64",
                    "gz",
                    "gzip",
                    "gz+base64",
                    "gzip+base64",
                    "gz+b64",
                    "gzip+b64",
                ],
            )
        }),
        f("content", Str),
        f("owner", Str),
        f("path", Str),
        v("permissions", Str, valid_permissions),
    ],
    check: Some(crate::validate::check_file),
};

pub static UNIT: Struct = Struct {
    fields: &[
        v("name", Str, valid_unit_name),
        f("mask", Bool),
        f("enable", Bool),
        f("runtime", Bool),
        f("content", Str),
        v("command", Str, |s| one_of(s, UNIT_COMMANDS)),
        f("drop_ins", List(&Kind::Struct(&DROP_IN))),
    ],
    check: Some(crate::validate::check_unit),
};

pub static DROP_IN: Struct = Struct {
    fields: &[v("name", Str, valid_drop_in_name), f("content", Str)],
    check: Some(crate::validate::check_named),
};

pub static UPDATE: Struct = Struct {
    fields: &[
        v("reboot_strategy", Str, |s| one_of(s, REBOOT_STRATEGIES)),
        f("group", Str),
        f("server", Str),
    ],
    check: None,
};

pub static OEM: Struct = Struct {
    fields: &[
        f("id", Str),
        f("name", Str),
        f("version_id", Str),
        f("home_url", Str),
        f("bug_report_url", Str),
    ],
    check: None,
};

pub static ETCD2: Struct = Struct {
    fields: &[
        env("advertise_client_urls", Str, "ETCD_ADVERTISE_CLIENT_URLS"),
        env("ca_file", Str, "ETCD_CA_FILE"),
        env("cert_file", Str, "ETCD_CERT_FILE"),
        env("client_cert_auth", Bool, "ETCD_CLIENT_CERT_AUTH"),
        env("cors", Str, "ETCD_CORS"),
        env("data_dir", Str, "ETCD_DATA_DIR"),
        env("debug", Bool, "ETCD_DEBUG"),
        env("discovery", Str, "ETCD_DISCOVERY"),
        env("discovery_fallback", Str, "ETCD_DISCOVERY_FALLBACK"),
        env("discovery_srv", Str, "ETCD_DISCOVERY_SRV"),
        env("discovery_proxy", Str, "ETCD_DISCOVERY_PROXY"),
        env("election_timeout", Int, "ETCD_ELECTION_TIMEOUT"),
        env("enable_pprof", Bool, "ETCD_ENABLE_PPROF"),
        env("force_new_cluster", Bool, "ETCD_FORCE_NEW_CLUSTER"),
        env("heartbeat_interval", Int, "ETCD_HEARTBEAT_INTERVAL"),
        env(
            "initial_advertise_peer_urls",
            Str,
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        ),
        env("initial_cluster", Str, "ETCD_INITIAL_CLUSTER"),
        env("initial_cluster_state", Str, "ETCD_INITIAL_CLUSTER_STATE"),
        env("initial_cluster_token", Str, "ETCD_INITIAL_CLUSTER_TOKEN"),
        env("key_file", Str, "ETCD_KEY_FILE"),
        env("listen_client_urls", Str, "ETCD_LISTEN_CLIENT_URLS"),
        env("listen_peer_urls", Str, "ETCD_LISTEN_PEER_URLS"),
        env("log_package_levels", Str, "ETCD_LOG_PACKAGE_LEVELS"),
        env("max_snapshots", Int, "ETCD_MAX_SNAPSHOTS"),
        env("max_wals", Int, "ETCD_MAX_WALS"),
        env("name", Str, "ETCD_NAME"),
        env("peer_ca_file", Str, "ETCD_PEER_CA_FILE"),
        env("peer_cert_file", Str, "ETCD_PEER_CERT_FILE"),
        env("peer_key_file", Str, "ETCD_PEER_KEY_FILE"),
        env("peer_client_cert_auth", Bool, "ETCD_PEER_CLIENT_CERT_AUTH"),
        env("peer_trusted_ca_file", Str, "ETCD_PEER_TRUSTED_CA_FILE"),
        Field {
            valid: Some(|s| one_of(s, &["on", "off", "readonly"])),
            ..env("proxy", Str, "ETCD_PROXY")
        },
        env("proxy_dial_timeout", Int, "ETCD_PROXY_DIAL_TIMEOUT"),
        env("proxy_failure_wait", Int, "ETCD_PROXY_FAILURE_WAIT"),
        env("proxy_read_timeout", Int, "ETCD_PROXY_READ_TIMEOUT"),
        env("proxy_refresh_interval", Int, "ETCD_PROXY_REFRESH_INTERVAL"),
        env("proxy_write_timeout", Int, "ETCD_PROXY_WRITE_TIMEOUT"),
        env("snapshot_count", Int, "ETCD_SNAPSHOT_COUNT"),
        env("strict_reconfig_check", Bool, "ETCD_STRICT_RECONFIG_CHECK"),
        env("trusted_ca_file", Str, "ETCD_TRUSTED_CA_FILE"),
        env("wal_dir", Str, "ETCD_WAL_DIR"),
    ],
    check: None,
};

pub static FLEET: Struct = Struct {
    fields: &[
        env("agent_ttl", Str, "FLEET_AGENT_TTL"),
        env("authorized_keys_file", Str, "FLEET_AUTHORIZED_KEYS_FILE"),
        env("disable_engine", Bool, "FLEET_DISABLE_ENGINE"),
        env(
            "engine_reconcile_interval",
            Float,
            "FLEET_ENGINE_RECONCILE_INTERVAL",
        ),
        env("etcd_cafile", Str, "FLEET_ETCD_CAFILE"),
        env("etcd_certfile", Str, "FLEET_ETCD_CERTFILE"),
        env("etcd_keyfile", Str, "FLEET_ETCD_KEYFILE"),
        env("etcd_key_prefix", Str, "FLEET_ETCD_KEY_PREFIX"),
        env("etcd_request_timeout", Float, "FLEET_ETCD_REQUEST_TIMEOUT"),
        env("etcd_servers", Str, "FLEET_ETCD_SERVERS"),
        env("etcd_username", Str, "FLEET_ETCD_USERNAME"),
        env("etcd_password", Str, "FLEET_ETCD_PASSWORD"),
        env("metadata", Str, "FLEET_METADATA"),
        env("public_ip", Str, "FLEET_PUBLIC_IP"),
        env("token_limit", Int, "FLEET_TOKEN_LIMIT"),
        env("verbosity", Int, "FLEET_VERBOSITY"),
        env("verify_units", Bool, "FLEET_VERIFY_UNITS"),
    ],
    check: None,
};

pub static FLANNEL: Struct = Struct {
    fields: &[
        env("etcd_endpoints", Str, "FLANNELD_ETCD_ENDPOINTS"),
        env("etcd_cafile", Str, "FLANNELD_ETCD_CAFILE"),
        env("etcd_certfile", Str, "FLANNELD_ETCD_CERTFILE"),
        env("etcd_keyfile", Str, "FLANNELD_ETCD_KEYFILE"),
        env("etcd_prefix", Str, "FLANNELD_ETCD_PREFIX"),
        env("etcd_username", Str, "FLANNELD_ETCD_USERNAME"),
        env("etcd_password", Str, "FLANNELD_ETCD_PASSWORD"),
        env("ip_masq", Str, "FLANNELD_IP_MASQ"),
        env("subnet_file", Str, "FLANNELD_SUBNET_FILE"),
        env("interface", Str, "FLANNELD_IFACE"),
        env("public_ip", Str, "FLANNELD_PUBLIC_IP"),
    ],
    check: None,
};

pub static LOCKSMITH: Struct = Struct {
    fields: &[
        env("endpoint", Str, "LOCKSMITHD_ENDPOINT"),
        env("etcd_cafile", Str, "LOCKSMITHD_ETCD_CAFILE"),
        env("etcd_certfile", Str, "LOCKSMITHD_ETCD_CERTFILE"),
        env("etcd_keyfile", Str, "LOCKSMITHD_ETCD_KEYFILE"),
        env("etcd_username", Str, "LOCKSMITHD_ETCD_USERNAME"),
        env("etcd_password", Str, "LOCKSMITHD_ETCD_PASSWORD"),
        env("group", Str, "LOCKSMITHD_GROUP"),
        Field {
            valid: Some(valid_window_start),
            ..env("window_start", Str, "LOCKSMITHD_REBOOT_WINDOW_START")
        },
        Field {
            valid: Some(valid_duration),
            ..env("window_length", Str, "LOCKSMITHD_REBOOT_WINDOW_LENGTH")
        },
    ],
    check: None,
};

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
    "slice",
    "scope",
    // systemd-networkd's files, which coreos-cloudinit writes under /etc/systemd/network.
    "network",
    "netdev",
    "link",
];

fn one_of(s: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(format!("must be one of {}", allowed.join(", ")))
    }
}

fn valid_hostname(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("must be a host name: dot-separated labels of letters, digits and '-', each at most 63 characters".into())
    }
}

/// `^0?[0-7]{3,4}$`, as coreos-cloudinit checks it.
fn valid_permissions(s: &str) -> Result<(), String> {
    let digits = s.strip_prefix('0').filter(|d| d.len() >= 3).unwrap_or(s);
    if (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        Ok(())
    } else {
        Err("must be an octal mode such as '0644' (quote it)".into())
    }
}

fn valid_unit_name(s: &str) -> Result<(), String> {
    match s.rsplit_once('.') {
        Some((stem, suffix))
            if !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix) && !s.contains('/') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "must be a unit file name ending in .{}",
            UNIT_SUFFIXES.join(", .")
        )),
    }
}

fn valid_drop_in_name(s: &str) -> Result<(), String> {
    if s.len() > ".conf".len() && s.ends_with(".conf") && !s.contains('/') {
        Ok(())
    } else {
        Err("must be a file name ending in .conf".into())
    }
}

/// `^((?i:sun|mon|tue|wed|thu|fri|sat|sun) )?0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$`
fn valid_window_start(s: &str) -> Result<(), String> {
    let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let time = match s.split_once(' ') {
        Some((day, time)) if days.contains(&day.to_ascii_lowercase().as_str()) => time,
        Some(_) => "",
        None => s,
    };
    let number = |t: &str, max: u32| {
        let t = t.trim_start_matches('0');
        t.len() <= 2
            && t.bytes().all(|b| b.is_ascii_digit())
            && t.parse::<u32>().unwrap_or(0) <= max
    };
    match time.split_once(':') {
        Some((h, m)) if !h.is_empty() && !m.is_empty() && number(h, 23) && number(m, 59) => Ok(()),
        _ => Err("must be a time such as \"04:00\" or \"Thu 04:00\"".into()),
    }
}

/// A Go duration: `^[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+$`, e.g. `1h30m`.
fn valid_duration(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut chars = rest.chars().peekable();
    let mut groups = 0;
    while chars.peek().is_some() {
        while chars.next_if(|c| c.is_ascii_digit() || *c == '.').is_some() {}
        let mut unit = 0;
        while chars.next_if(|c| c.is_ascii_lowercase()).is_some() {
            unit += 1;
        }
        if unit == 0 {
            return Err("must be a duration such as \"1h30m\"".into());
        }
        groups += 1;
    }
    if groups == 0 || rest.matches('.').count() > groups {
        return Err("must be a duration such as \"1h30m\"".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_checks() {
        assert!(valid_permissions("0644").is_ok());
        assert!(valid_permissions("644").is_ok());
        assert!(valid_permissions("01777").is_ok());
        assert!(valid_permissions("0999").is_err());
        assert!(valid_permissions("64").is_err());
        assert!(valid_window_start("Thu 04:00").is_ok());
        assert!(valid_window_start("4:5").is_ok());
        assert!(valid_window_start("24:00").is_err());
        assert!(valid_window_start("Someday 04:00").is_err());
        assert!(valid_duration("1h30m").is_ok());
        assert!(valid_duration("90m").is_ok());
        assert!(valid_duration("1.5h").is_ok());
        assert!(valid_duration("10").is_err());
        assert!(valid_unit_name("hello.service").is_ok());
        assert!(valid_unit_name("10-eth0.network").is_ok());
        assert!(valid_unit_name("hello").is_err());
        assert!(valid_unit_name(".service").is_err());
        assert!(valid_hostname("node-1.example.com").is_ok());
        assert!(valid_hostname("bad_host").is_err());
        assert!(valid_hostname("-x").is_err());
    }
}
