//! The cloud-config as typed data. It is deserialized from the canonical form that validation
//! produces (see [`crate::validate`]), so keys here are coreos-cloudinit's underscored names and
//! every value already has the type the schema asks for.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub users: Vec<User>,
    pub write_files: Vec<WriteFile>,
    /// `localhost`: `/etc/hosts` maps the host name to 127.0.0.1.
    pub manage_etc_hosts: Option<String>,
    pub coreos: Option<crate::coreos::Coreos>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct User {
    pub name: String,
    pub gecos: Option<String>,
    /// A crypt(3) hash, as in /etc/shadow.
    pub passwd: Option<String>,
    pub homedir: Option<String>,
    pub no_create_home: bool,
    pub primary_group: Option<String>,
    pub groups: Vec<String>,
    pub no_user_group: bool,
    pub system: bool,
    pub no_log_init: bool,
    pub shell: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    /// Octal digits as written (`0644`, `'0644'` or `644`); validation has checked them.
    pub permissions: Option<String>,
    /// `user`, `user:group`; default root.
    pub owner: Option<String>,
    /// `b64`/`base64`, `gzip`/`gz`, `gz+b64`/`gzip+base64`…
    pub encoding: Option<String>,
}

impl WriteFile {
    /// The mode, the digits read as octal; coreos-cloudinit's default is 0644.
    pub fn mode(&self) -> u32 {
        self.permissions
            .as_deref()
            .and_then(|p| u32::from_str_radix(p, 8).ok())
            .filter(|m| *m <= 0o7777)
            .unwrap_or(0o644)
    }
}
