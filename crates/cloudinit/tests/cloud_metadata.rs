//! The EC2 and GCE boards' OEM cloud-configs, and the binary reading user data from a local
//! metadata server that behaves as the clouds' do: IMDSv2 (a session token from a PUT, then
//! required on every GET) for EC2, `Metadata-Flavor: Google` for GCE.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn cloudinit(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coreos-cloudinit"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn board_oem(board: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../board")
        .join(board)
        .join("oem")
}

/// Answers GETs from `files`, requiring `header`; a PUT to `/latest/api/token` hands out the
/// token (IMDSv2) when `token` is set. Records each request line.
fn metadata_server(
    files: HashMap<&'static str, &'static str>,
    header: (&'static str, &'static str),
    token: Option<&'static str>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                headers.push(h.trim().to_ascii_lowercase());
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            seen.lock().unwrap().push(format!("{method} {path}"));
            let has =
                |k: &str, v: &str| headers.contains(&format!("{k}: {}", v.to_ascii_lowercase()));
            let (status, body) = match (method, token) {
                ("PUT", Some(t)) if path == "/latest/api/token" => {
                    if headers
                        .iter()
                        .any(|h| h.starts_with("x-aws-ec2-metadata-token-ttl-seconds:"))
                    {
                        (200, t.to_string())
                    } else {
                        (400, "missing TTL".into())
                    }
                }
                ("GET", _) if !has(header.0, header.1) => (401, "unauthorized".into()),
                ("GET", _) => match files.get(path) {
                    Some(b) => (200, b.to_string()),
                    None => (404, "not found".into()),
                },
                _ => (405, "no".into()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, log)
}

fn prepared_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "core:x:500:500::/home/core:/bin/bash\n",
    )
    .unwrap();
    root
}

#[test]
fn cloud_boards_oem_configs_are_valid_and_start_their_datasource() {
    for (board, unit, flag) in [
        ("ec2", "ec2-cloudinit.service", "--from-ec2-metadata="),
        ("gce", "gce-cloudinit.service", "--from-gce-metadata="),
    ] {
        let config = board_oem(board).join("cloud-config.yml");
        let root = prepared_root();
        let out = cloudinit(
            root.path(),
            &["--validate", "--from-file", config.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{board}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "{board}: no warnings"
        );

        let out = cloudinit(root.path(), &["--from-file", config.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{board}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unit_file = root.path().join("run/systemd/system").join(unit);
        let text = std::fs::read_to_string(&unit_file).unwrap();
        assert!(
            text.contains(&format!("ExecStart=/usr/bin/coreos-cloudinit {flag}")),
            "{text}"
        );
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains(&format!("start {unit}")), "{board}: {log}");
        assert!(root.path().join("etc/oem-release").exists(), "{board}");
    }
}

#[test]
fn ec2_metadata_imdsv2_user_data_applies() {
    let (base, log) = metadata_server(
        HashMap::from([
            ("/latest/user-data", "#cloud-config\nhostname: from-ec2\nwrite_files:\n  - path: /etc/addrs\n    content: \"$private_ipv4 $public_ipv4\"\n"),
            ("/latest/meta-data/local-ipv4", "10.0.0.5"),
            ("/latest/meta-data/public-ipv4", "203.0.113.9"),
            ("/latest/meta-data/public-keys/", "0=launch-key"),
            ("/latest/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAAC3launch launch-key\n"),
        ]),
        ("x-aws-ec2-metadata-token", "tok-123"),
        Some("tok-123"),
    );
    let root = prepared_root();
    let out = cloudinit(
        root.path(),
        &[
            &format!("--from-ec2-metadata={base}/"),
            "--fetch-attempts=2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.path();
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname"))
            .unwrap()
            .trim(),
        "from-ec2"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/addrs")).unwrap(),
        "10.0.0.5 203.0.113.9"
    );
    let env = std::fs::read_to_string(r.join("etc/environment")).unwrap();
    assert!(
        env.contains("COREOS_PRIVATE_IPV4=10.0.0.5")
            && env.contains("COREOS_PUBLIC_IPV4=203.0.113.9"),
        "{env}"
    );
    let keys = std::fs::read_to_string(r.join("home/core/.ssh/authorized_keys")).unwrap();
    assert!(
        keys.contains("ssh-ed25519 AAAAC3launch launch-key"),
        "{keys}"
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0], "PUT /latest/api/token", "{seen:?}");
    assert!(!seen
        .iter()
        .any(|l| l.starts_with("GET") && l.contains("401")));
}

#[test]
fn gce_metadata_user_data_applies() {
    let (base, _) = metadata_server(
        HashMap::from([
            (
                "/computeMetadata/v1/instance/attributes/user-data",
                "#cloud-config\nhostname: from-gce\n",
            ),
            (
                "/computeMetadata/v1/instance/network-interfaces/0/ip",
                "10.128.0.7",
            ),
            (
                "/computeMetadata/v1/instance/attributes/ssh-keys",
                "alice:ssh-ed25519 AAAAgce alice\ncore:ssh-rsa AAAAcore core\n",
            ),
        ]),
        ("metadata-flavor", "Google"),
        None,
    );
    let root = prepared_root();
    let out = cloudinit(
        root.path(),
        &[
            &format!("--from-gce-metadata={base}/"),
            "--fetch-attempts=2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.path();
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname"))
            .unwrap()
            .trim(),
        "from-gce"
    );
    let env = std::fs::read_to_string(r.join("etc/environment")).unwrap();
    assert!(env.contains("COREOS_PRIVATE_IPV4=10.128.0.7"), "{env}");
    let keys = std::fs::read_to_string(r.join("home/core/.ssh/authorized_keys"))
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        keys.contains("ssh-ed25519 AAAAgce alice") && keys.contains("ssh-rsa AAAAcore core"),
        "{keys}"
    );
}

/// No user data: the instance's key pair and addresses still apply (CoreOS did the same).
#[test]
fn ec2_key_pair_applies_without_user_data() {
    let (base, _) = metadata_server(
        HashMap::from([
            ("/latest/meta-data/local-ipv4", "10.0.0.6"),
            ("/latest/meta-data/public-keys/", "0=k"),
            (
                "/latest/meta-data/public-keys/0/openssh-key",
                "ssh-rsa AAAAB3only k",
            ),
        ]),
        ("x-aws-ec2-metadata-token", "t"),
        Some("t"),
    );
    let root = prepared_root();
    let out = cloudinit(
        root.path(),
        &[
            &format!("--from-ec2-metadata={base}/"),
            "--fetch-attempts=2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = root.path();
    let keys = std::fs::read_to_string(r.join("home/core/.ssh/authorized_keys")).unwrap();
    assert!(keys.contains("ssh-rsa AAAAB3only k"), "{keys}");
    assert!(std::fs::read_to_string(r.join("etc/environment"))
        .unwrap()
        .contains("COREOS_PRIVATE_IPV4=10.0.0.6"));
}
