//! Helpers for the integration tests: real binaries on 127.0.0.1, killed when dropped.

#![allow(dead_code)] // each test binary uses its own part of this

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const APP_ID: &str = update::server::policy::COREOS_APP_ID;

/// A child process killed (and reaped) on drop, so no test leaves one behind.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Server {
    pub proc: Proc,
    pub url: String,
    pub data_dir: PathBuf,
    /// The CA the admin CLI trusts (an https server's).
    pub cacert: Option<PathBuf>,
}

/// Starts `ferro-update-server serve` on a free port of 127.0.0.1.
pub fn server(data_dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ferro-update-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("reading the server's address");
    let proc = Proc { child };
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .unwrap_or_else(|| panic!("server did not print its address: {line:?}"))
        .to_string();
    Server {
        proc,
        url,
        data_dir: data_dir.into(),
        cacert: None,
    }
}

impl Server {
    /// Runs an admin subcommand of the CLI against this server; returns stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
            .arg("--server")
            .arg(&self.url)
            .args(
                self.cacert
                    .iter()
                    .flat_map(|c| [OsStr::new("--cacert"), c.as_os_str()]),
            )
            .args(args)
            .output()
            .expect("running ferro-update-server");
        assert!(
            out.status.success(),
            "ferro-update-server {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin(&["status"])).unwrap()
    }
}

/// Deterministic bytes that do not compress to nothing.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 3 == 0 {
                0
            } else {
                x as u8
            }
        })
        .collect()
}

pub struct Keys {
    pub signing: PathBuf,
    pub trusted_dir: PathBuf,
}

pub fn keys(dir: &Path) -> Keys {
    let trusted_dir = dir.join("trusted");
    let (sk, _) = update::payload::keys::generate(&trusted_dir.join("dev")).unwrap();
    let signing = dir.join("dev.key");
    std::fs::rename(&sk, &signing).unwrap();
    Keys {
        signing,
        trusted_dir,
    }
}

/// The parts of a payload, as files, and the payload made of them.
pub struct Payload {
    pub dir: PathBuf,
    pub usr: Vec<u8>,
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
}

pub fn payload(dir: &Path, version: &str, key: &Path, usr_len: usize) -> Payload {
    let seed = version.bytes().map(u32::from).sum::<u32>() as u8;
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&src).unwrap();
    let p = Payload {
        dir: dir.join(format!("payload-{version}")),
        usr: bytes(usr_len, seed),
        kernel: bytes(70_000, seed.wrapping_add(1)),
        initrd: bytes(40_000, seed.wrapping_add(2)),
    };
    let files = [
        ("usr", &p.usr),
        ("kernel", &p.kernel),
        ("initrd", &p.initrd),
    ];
    for (name, data) in files {
        std::fs::write(src.join(name), data).unwrap();
    }
    let paths: Vec<(&str, PathBuf)> = files.iter().map(|(n, _)| (*n, src.join(n))).collect();
    let parts: Vec<(&str, &Path)> = paths.iter().map(|(n, p)| (*n, p.as_path())).collect();
    update::payload::create(
        &p.dir,
        update::payload::Release {
            version: version.into(),
            build_id: format!("build-{version}"),
            channel: "stable".into(),
            usr_root_hash: "ab".repeat(32),
            usr_data_blocks: (usr_len as u64).div_ceil(4096),
            usr_salt: "cd".repeat(32),
        },
        &parts,
        &update::payload::keys::load_signing(key).unwrap(),
    )
    .unwrap();
    p
}

/// An Omaha update check from `machine`, answered by the server at `url`.
pub fn omaha_check(
    url: &str,
    machine: &str,
    version: &str,
    group: &str,
) -> update::omaha::Response {
    let req = update::omaha::Request::new(vec![update::omaha::AppRequest {
        app_id: APP_ID.into(),
        version: version.into(),
        track: group.into(),
        machine_id: Some(machine.into()),
        update_check: Some(Default::default()),
        ..Default::default()
    }]);
    let body = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/update/"))
        .body(req.to_xml().unwrap())
        .send()
        .unwrap()
        .text()
        .unwrap();
    update::omaha::Response::parse(&body).unwrap()
}

pub mod daemon;
pub mod machine;
