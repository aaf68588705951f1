//! Applying a validated cloud-config to a root directory, writing the files coreos-cloudinit
//! writes (ssh keys through `~/.ssh/authorized_keys.d/`, as update-ssh-keys does) and using the
//! system's own tools (`useradd`, `usermod`) for accounts.

use crate::config::{CloudConfig, User, WriteFile};
use anyhow::{bail, Context, Result};
use base64::Engine;
use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name our keys go under in `authorized_keys.d`, as on CoreOS.
pub const KEYS_NAME: &str = "coreos-cloudinit";

pub struct Target {
    root: PathBuf,
}

/// An account as `/etc/passwd` in the target root has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub fn decode(content: &str, encoding: Option<&str>) -> Result<Vec<u8>> {
    let b64 = |s: &str| -> Result<Vec<u8>> {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .context("invalid base64")
    };
    let gunzip = |bytes: &[u8]| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context("invalid gzip")?;
        Ok(out)
    };
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(content.as_bytes().to_vec()),
        Some("b64" | "base64") => b64(content),
        Some("gz" | "gzip") => gunzip(content.as_bytes()),
        Some("gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64") => gunzip(&b64(content)?),
        Some(other) => bail!("unknown encoding {other:?}"),
    }
}

impl Target {
    pub fn new(root: &Path) -> Target {
        Target {
            root: root.to_path_buf(),
        }
    }

    /// The running system, not a directory being prepared.
    fn live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        let passwd =
            std::fs::read_to_string(self.path("/etc/passwd")).context("reading /etc/passwd")?;
        Ok(passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] == name).then(|| Account {
                uid: f[2].parse().unwrap_or(0),
                gid: f[3].parse().unwrap_or(0),
                home: PathBuf::from(f[5]),
            })
        }))
    }

    /// Applies everything in coreos-cloudinit's order: hostname, accounts, the `core` user's
    /// keys, files (`write_files`, then those `coreos:` and `manage_etc_hosts` generate), units.
    /// Returns what was done, one line each, for the journal.
    pub fn apply(&self, cfg: &CloudConfig) -> Result<Vec<String>> {
        if self.live() {
            self.apply_with(cfg, &crate::systemd_bus::SystemdBus::connect()?)
        } else {
            let rec = crate::units::Recorder::default();
            let mut done = self.apply_with(cfg, &rec)?;
            done.extend(
                rec.0
                    .into_inner()
                    .into_iter()
                    .map(|a| format!("would run: systemctl {a}")),
            );
            Ok(done)
        }
    }

    /// Applies everything, talking to systemd through `systemd`.
    pub fn apply_with(
        &self,
        cfg: &CloudConfig,
        systemd: &dyn crate::units::Systemd,
    ) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if let Some(h) = &cfg.hostname {
            self.hostname(h).context("hostname")?;
            done.push(format!("hostname {h}"));
        }
        for u in &cfg.users {
            self.user(u).with_context(|| format!("users: {}", u.name))?;
            done.push(format!("user {}", u.name));
        }
        if !cfg.ssh_authorized_keys.is_empty() {
            self.authorize_keys("core", &cfg.ssh_authorized_keys)
                .context("ssh_authorized_keys")?;
            done.push(format!(
                "{} ssh key(s) for core",
                cfg.ssh_authorized_keys.len()
            ));
        }
        for f in &cfg.write_files {
            self.write_file(f)
                .with_context(|| format!("write_files: {}", f.path))?;
            done.push(format!("wrote {}", f.path));
        }
        let mut generated = Vec::new();
        if let Some(c) = &cfg.coreos {
            generated.extend(crate::services::files(&self.root, c));
        }
        if cfg.manage_etc_hosts.as_deref() == Some("localhost") {
            let name = match &cfg.hostname {
                Some(h) => h.clone(),
                None => self.current_hostname()?,
            };
            generated.push(("/etc/hosts".into(), format!("127.0.0.1 {name}\n")));
        }
        for (path, text) in generated {
            crate::units::write(&self.root, &path, &text)?;
            done.push(format!("wrote {path}"));
        }
        if let Some(c) = &cfg.coreos {
            let units: Vec<_> = c
                .units
                .iter()
                .cloned()
                .chain(crate::services::units(c))
                .collect();
            done.extend(
                crate::units::process(&self.root, &units, systemd).context("coreos.units")?,
            );
        }
        Ok(done)
    }

    fn current_hostname(&self) -> Result<String> {
        let from = if self.live() {
            PathBuf::from("/proc/sys/kernel/hostname")
        } else {
            self.path("/etc/hostname")
        };
        Ok(std::fs::read_to_string(&from)
            .with_context(|| format!("reading the host name from {}", from.display()))?
            .trim()
            .to_string())
    }

    /// Writes `~user/.ssh/authorized_keys.d/coreos-cloudinit` and regenerates
    /// `~user/.ssh/authorized_keys` from every file in that directory, as update-ssh-keys does.
    pub fn authorize_keys(&self, user: &str, keys: &[String]) -> Result<()> {
        self.authorize_keys_as(user, KEYS_NAME, keys)
    }

    /// The same under another name in `authorized_keys.d` (the cloud's key pair, kept apart
    /// from the user data's keys so neither replaces the other).
    pub fn authorize_keys_as(&self, user: &str, name: &str, keys: &[String]) -> Result<()> {
        let acct = self
            .account(user)?
            .with_context(|| format!("no user {user} in /etc/passwd"))?;
        let ssh = self.path(&acct.home.to_string_lossy()).join(".ssh");
        let dir = ssh.join("authorized_keys.d");
        std::fs::create_dir_all(&dir)?;
        let mut text: String = keys.iter().map(|k| format!("{}\n", k.trim())).collect();
        std::fs::write(dir.join(name), &text)?;
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        parts.sort();
        text.clear();
        for p in parts {
            text.push_str(&format!(
                "# {}\n",
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            text.push_str(&std::fs::read_to_string(&p)?);
        }
        let all = ssh.join("authorized_keys");
        let tmp = ssh.join(".authorized_keys.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &all)?;
        let home = self.path(&acct.home.to_string_lossy());
        for p in [
            home.as_path(),
            ssh.as_path(),
            dir.as_path(),
            &dir.join(name),
            &all,
        ] {
            chown(p, Some(acct.uid), Some(acct.gid))?;
        }
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    pub fn write_file(&self, f: &WriteFile) -> Result<()> {
        let bytes = decode(&f.content, f.encoding.as_deref())?;
        let dest = self.path(&f.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = dest.with_extension("cloudinit-tmp");
        std::fs::write(&tmp, bytes)?;
        let mode = f.mode();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(owner) = &f.owner {
            let (user, group) = owner.split_once(':').unwrap_or((owner, ""));
            let acct = self
                .account(user)?
                .with_context(|| format!("owner: no user {user}"))?;
            let gid = if group.is_empty() {
                acct.gid
            } else {
                self.group(group)?
                    .with_context(|| format!("owner: no group {group}"))?
            };
            chown(&tmp, Some(acct.uid), Some(gid))?;
        }
        std::fs::rename(&tmp, &dest)?;
        Ok(())
    }

    fn group(&self, name: &str) -> Result<Option<u32>> {
        let text = std::fs::read_to_string(self.path("/etc/group"))?;
        Ok(text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name)
                .then(|| f[2].parse().ok())
                .flatten()
        }))
    }

    /// `/etc/environment` gets `COREOS_PUBLIC_IPV4`/`COREOS_PRIVATE_IPV4` (other lines kept).
    pub fn environment(&self, md: &crate::datasource::Metadata) -> Result<bool> {
        let vars: Vec<(&str, &String)> = [
            ("COREOS_PUBLIC_IPV4", &md.public_ipv4),
            ("COREOS_PRIVATE_IPV4", &md.private_ipv4),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        if vars.is_empty() {
            return Ok(false);
        }
        let path = self.path("/etc/environment");
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = existing
            .lines()
            .filter(|l| !vars.iter().any(|(k, _)| l.starts_with(&format!("{k}="))))
            .map(str::to_string)
            .collect();
        lines.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        std::fs::write(&path, lines.join("\n") + "\n")?;
        Ok(true)
    }

    pub fn hostname(&self, name: &str) -> Result<()> {
        std::fs::write(self.path("/etc/hostname"), format!("{name}\n"))?;
        if self.live() {
            run(Command::new("hostname").arg(name))?;
        }
        Ok(())
    }

    /// Creates an account with `useradd` and coreos-cloudinit's flags, or for an existing one
    /// sets the password and adds the groups; then its ssh keys.
    pub fn user(&self, u: &User) -> Result<()> {
        let tool = |name: &str| {
            let mut c = Command::new(name);
            if !self.live() {
                c.arg("--root").arg(&self.root);
            }
            c
        };
        if self.account(&u.name)?.is_none() {
            let mut c = tool("useradd");
            c.args(["--password", u.passwd.as_deref().unwrap_or("*")]);
            if let Some(g) = &u.gecos {
                c.args(["--comment", g]);
            }
            if let Some(h) = &u.homedir {
                c.args(["--home-dir", h]);
            }
            c.arg(if u.no_create_home {
                "--no-create-home"
            } else {
                "--create-home"
            });
            if let Some(g) = &u.primary_group {
                c.args(["--gid", g]);
            }
            if !u.groups.is_empty() {
                c.args(["--groups", &u.groups.join(",")]);
            }
            if u.no_user_group {
                c.arg("--no-user-group");
            }
            if u.system {
                c.arg("--system");
            }
            if u.no_log_init {
                c.arg("--no-log-init");
            }
            if let Some(s) = &u.shell {
                c.args(["--shell", s]);
            }
            run(c.arg(&u.name))?;
        } else {
            if let Some(p) = &u.passwd {
                run(tool("usermod").args(["--password", p]).arg(&u.name))?;
            }
            if !u.groups.is_empty() {
                run(tool("usermod")
                    .args(["--append", "--groups", &u.groups.join(",")])
                    .arg(&u.name))?;
            }
        }
        if !u.ssh_authorized_keys.is_empty() {
            self.authorize_keys(&u.name, &u.ssh_authorized_keys)?;
        }
        Ok(())
    }

    /// Runs a `#!` user-data script (kept under /var/lib/coreos-cloudinit/scripts); in a target
    /// root that is not the running system it is only written.
    pub fn script(&self, text: &str) -> Result<PathBuf> {
        let dir = self.path("/var/lib/coreos-cloudinit/scripts");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("user-data");
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        if self.live() {
            run(&mut Command::new(&path))?;
        }
        Ok(path)
    }
}

fn run(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserData;
    use std::os::unix::fs::MetadataExt;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:Core:/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\ncore:x:500:\ndocker:x:999:core\n",
        )
        .unwrap();
        d
    }

    fn config(text: &str) -> CloudConfig {
        match UserData::parse(text).unwrap().0 {
            UserData::CloudConfig(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn core_keys_go_where_update_ssh_keys_puts_them() {
        let r = root();
        std::fs::create_dir_all(r.path().join("home/core/.ssh/authorized_keys.d")).unwrap();
        std::fs::write(
            r.path().join("home/core/.ssh/authorized_keys.d/other"),
            "ssh-rsa OTHER x\n",
        )
        .unwrap();
        let t = Target::new(r.path());
        t.apply(&config("#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA one\n  - ssh-ed25519 BBBB two\n")).unwrap();
        let ssh = r.path().join("home/core/.ssh");
        assert_eq!(
            std::fs::read_to_string(ssh.join("authorized_keys.d/coreos-cloudinit")).unwrap(),
            "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n"
        );
        let all = std::fs::read_to_string(ssh.join("authorized_keys")).unwrap();
        assert!(
            all.contains("ssh-rsa OTHER x") && all.contains("ssh-ed25519 BBBB two"),
            "{all}"
        );
        let m = std::fs::metadata(ssh.join("authorized_keys")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (500, 500, 0o600));
        assert_eq!(std::fs::metadata(&ssh).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn write_files_modes_owners_encodings() {
        let r = root();
        let t = Target::new(r.path());
        t.apply(&config(
            "#cloud-config\nwrite_files:\n  - path: /etc/motd.d/hello\n    permissions: '0600'\n    owner: core:docker\n    content: hi\n  - path: /opt/b64\n    encoding: b64\n    content: aGVsbG8=\n",
        ))
        .unwrap();
        let p = r.path().join("etc/motd.d/hello");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (500, 999, 0o600));
        assert_eq!(std::fs::read(r.path().join("opt/b64")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(r.path().join("opt/b64")).unwrap().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn gzip_encodings_decode() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped").unwrap();
        let bytes = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode(&b64, Some("gz+b64")).unwrap(), b"zipped");
        assert!(decode("x", Some("rot13")).is_err());
    }

    #[test]
    fn environment_gets_coreos_ips() {
        let r = root();
        std::fs::write(
            r.path().join("etc/environment"),
            "PATH=/usr/bin\nCOREOS_PUBLIC_IPV4=old\n",
        )
        .unwrap();
        let md = crate::datasource::Metadata {
            private_ipv4: Some("10.0.0.5".into()),
            public_ipv4: Some("203.0.113.9".into()),
            ..Default::default()
        };
        assert!(Target::new(r.path()).environment(&md).unwrap());
        assert_eq!(
            std::fs::read_to_string(r.path().join("etc/environment")).unwrap(),
            "PATH=/usr/bin\nCOREOS_PUBLIC_IPV4=203.0.113.9\nCOREOS_PRIVATE_IPV4=10.0.0.5\n"
        );
        assert!(!Target::new(r.path())
            .environment(&Default::default())
            .unwrap());
    }

    #[test]
    fn hostname_is_written() {
        let r = root();
        Target::new(r.path())
            .apply(&config("#cloud-config\nhostname: node-1\n"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(r.path().join("etc/hostname")).unwrap(),
            "node-1\n"
        );
    }

    #[test]
    fn keys_for_a_missing_user_fail_clearly() {
        let r = root();
        let err = Target::new(r.path())
            .authorize_keys("nobody", &["k".into()])
            .unwrap_err();
        assert!(err.to_string().contains("no user nobody"), "{err}");
    }
}
