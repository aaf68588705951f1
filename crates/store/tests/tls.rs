//! TLS with etcd 3.4's flags, checked with real clients (Debian's `etcdctl`, `curl`) against
//! ferro-store and, as the oracle, real etcd started with the same flags: the same commands must
//! work or fail the same way. Certificates are made here with Debian's `openssl`: a CA with a
//! server and a client certificate, and a second, untrusted CA with its own client certificate.
//! Last, a 3-member ferro-store cluster over peer TLS with peer client-cert auth.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, require_tool};

/// Two CAs, `a` (trusted) and `b` (not), each with a server and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let openssl = require_tool("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        for ca in ["a", "b"] {
            let d = dir.path().join(ca);
            std::fs::create_dir(&d).unwrap();
            // Servers (and peers, which present theirs as clients) need both usages and SANs
            // for every name the tests dial; the extensions also make them X.509 v3.
            std::fs::write(
                d.join("server.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
                 extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            std::fs::write(
                d.join("client.ext"),
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
            let mut steps = vec![format!(
                "req -x509 {ec} -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=test-ca-{ca} \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            )];
            for n in ["server", "client"] {
                steps.push(format!(
                    "req {ec} -keyout {n}-key.pem -out {n}.csr -subj /CN={n}-{ca}"
                ));
                steps.push(format!(
                    "x509 -req -in {n}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
                     -out {n}.pem -days 2 -extfile {n}.ext"
                ));
            }
            for s in steps {
                let out = Command::new(&openssl)
                    .args(s.split_whitespace())
                    .current_dir(&d)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "openssl {s}: {out:?}");
            }
        }
        Pki { dir }
    }

    /// `a/ca.pem` and the like, as a string for flags.
    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// The server certificate flags of one side (`""` or `"peer-"`).
    fn cert_flags(&self, side: &str) -> Vec<String> {
        vec![
            format!("--{side}cert-file={}", self.p("a/server.pem")),
            format!("--{side}key-file={}", self.p("a/server-key.pem")),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ours,
    Etcd,
}

impl Kind {
    fn bin(self) -> PathBuf {
        match self {
            Kind::Ours => PathBuf::from(env!("CARGO_BIN_EXE_ferro-store")),
            Kind::Etcd => require_tool("etcd", "etcd-server"),
        }
    }
}

/// One single-member server; killed on drop.
struct Proc {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags every single member gets, for client URL `url` and peer URL `peer`.
fn base_flags(kind: Kind, url: &str, peer: &str, data: &Path) -> Vec<String> {
    let mut f = vec![
        "--name=node1".into(),
        "--enable-v2".into(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=node1={peer}"),
    ];
    match kind {
        Kind::Etcd => f.extend(["--logger=zap".into(), "--log-level=error".into()]),
        Kind::Ours => f.push("--log-level=info".into()),
    }
    f
}

fn spawn(
    kind: Kind,
    scheme: &str,
    peer_scheme: &str,
    extra: &[String],
    env: &[(&str, String)],
) -> (Child, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{scheme}://127.0.0.1:{}", free_port());
    let peer = format!("{peer_scheme}://127.0.0.1:{}", free_port());
    let mut args = base_flags(kind, &url, &peer, &dir.path().join("data"));
    args.extend(extra.iter().cloned());
    let log = dir.path().join("log");
    let child = Command::new(kind.bin())
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, url, log, dir)
}

impl Proc {
    /// Starts `kind` with TLS flags `extra` (and environment `env`) on a `scheme` client URL,
    /// and waits until a curl with the trusted CA and a client certificate gets an answer.
    fn start(
        kind: Kind,
        pki: &Pki,
        scheme: &str,
        extra: &[String],
        env: &[(&str, String)],
    ) -> Proc {
        for _ in 0..5 {
            let (mut child, url, log, dir) = spawn(kind, scheme, "http", extra, env);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if curl(&format!("{url}/v2/keys/"), &pki.client_tls("a", "a"), &[]).ok {
                    return Proc {
                        child,
                        url,
                        log,
                        _dir: dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        text.to_lowercase().contains("address already in use"),
                        "{kind:?} exited early with {status}: {text}"
                    );
                    break; // A free port was taken meanwhile: again on others.
                }
                assert!(
                    Instant::now() < deadline,
                    "{kind:?} did not answer on {url} within 30 s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{kind:?}: no free ports after 5 attempts");
    }

    /// The address of the client port, without the scheme.
    fn addr(&self) -> &str {
        self.url.split_once("://").unwrap().1
    }
}

impl Pki {
    /// curl/etcdctl TLS options: trust CA `ca`'s certificate; present the client certificate of
    /// CA `client` unless it is empty.
    fn client_tls(&self, ca: &str, client: &str) -> Tls {
        Tls {
            ca: (!ca.is_empty()).then(|| self.p(&format!("{ca}/ca.pem"))),
            cert: (!client.is_empty()).then(|| {
                (
                    self.p(&format!("{client}/client.pem")),
                    self.p(&format!("{client}/client-key.pem")),
                )
            }),
        }
    }
}

struct Tls {
    ca: Option<String>,
    cert: Option<(String, String)>,
}

/// A command's outcome: whether it succeeded, and what it printed (stdout) if so. `err` (its
/// stderr) is for the failure messages only: outcomes compare on `ok` and `out`.
#[derive(Debug, Clone, Default)]
struct Outcome {
    ok: bool,
    out: String,
    err: String,
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Outcome) -> bool {
        (self.ok, &self.out) == (other.ok, &other.out)
    }
}

fn run(mut cmd: Command) -> Outcome {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    Outcome {
        ok: out.status.success(),
        out: if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            String::new()
        },
        err: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// `curl -f` (an HTTP error status fails too) with `args` after the TLS options.
fn curl(url: &str, tls: &Tls, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(require_tool("curl", "curl"));
    cmd.args(["-sSf", "--max-time", "5"]);
    if let Some(ca) = &tls.ca {
        cmd.args(["--cacert", ca]);
    }
    if let Some((cert, key)) = &tls.cert {
        cmd.args(["--cert", cert, "--key", key]);
    }
    cmd.args(args).arg(url);
    run(cmd)
}

/// Debian's etcdctl, v3 API, against one endpoint.
fn etcdctl(url: &str, tls: &Tls, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(require_tool("etcdctl", "etcd-client"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .args(["--dial-timeout=2s", "--command-timeout=4s"]);
    if let Some(ca) = &tls.ca {
        cmd.arg(format!("--cacert={ca}"));
    }
    if let Some((cert, key)) = &tls.cert {
        cmd.arg(format!("--cert={cert}"))
            .arg(format!("--key={key}"));
    }
    cmd.args(args);
    run(cmd)
}

/// The `node.value` of a v2 GET answer, so that etcd's and our indexes need not agree.
fn v2_value(o: Outcome) -> Outcome {
    let out = serde_json::from_str::<serde_json::Value>(&o.out)
        .ok()
        .and_then(|v| v["node"]["value"].as_str().map(String::from))
        .unwrap_or_default();
    Outcome { out, ..o }
}

/// A step of a scenario: its name, what it did, and what it must do.
struct Step {
    name: &'static str,
    got: Outcome,
    want: Outcome,
}

fn ok(out: &str) -> Outcome {
    Outcome {
        ok: true,
        out: out.into(),
        err: String::new(),
    }
}

fn fails() -> Outcome {
    Outcome::default()
}

/// Runs `scenario` against ferro-store and real etcd started alike; each step must give what it
/// wants on both (so the same outcome on both).
fn differential(
    pki: &Pki,
    scheme: &str,
    flags: &[String],
    env: &[(&str, String)],
    scenario: impl Fn(&Proc) -> Vec<Step>,
) {
    let mut failures = Vec::new();
    for kind in [Kind::Etcd, Kind::Ours] {
        let server = Proc::start(kind, pki, scheme, flags, env);
        for s in scenario(&server) {
            if s.got != s.want {
                failures.push(format!(
                    "{kind:?}: {}: got {:?} (stderr: {}), want {:?}",
                    s.name, s.got, s.got.err, s.want
                ));
            }
        }
        if kind == Kind::Ours && !failures.is_empty() {
            eprintln!(
                "ferro-store's log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn server_tls_answers_v2_and_v3_to_clients_trusting_its_ca_only() {
    let pki = Pki::new();
    let flags = pki.cert_flags("");
    differential(&pki, "https", &flags, &[], |s| {
        let url = &s.url;
        let right = pki.client_tls("a", "");
        let wrong = pki.client_tls("b", "");
        let none = pki.client_tls("", "");
        let key = format!("{url}/v2/keys/tls-v2");
        vec![
            Step {
                name: "etcdctl put, right CA",
                got: etcdctl(url, &right, &["put", "k", "v"]),
                want: ok("OK"),
            },
            Step {
                name: "etcdctl get, right CA",
                got: etcdctl(url, &right, &["get", "k"]),
                want: ok("k\nv"),
            },
            Step {
                name: "etcdctl get over localhost, right CA",
                got: etcdctl(
                    &format!("https://localhost:{}", s.addr().split(':').nth(1).unwrap()),
                    &right,
                    &["get", "k", "--print-value-only"],
                ),
                want: ok("v"),
            },
            Step {
                name: "etcdctl get, wrong CA",
                got: etcdctl(url, &wrong, &["get", "k"]),
                want: fails(),
            },
            Step {
                name: "etcdctl get, plain http to the TLS port",
                got: etcdctl(&format!("http://{}", s.addr()), &none, &["get", "k"]),
                want: fails(),
            },
            Step {
                name: "curl v2 put, right CA",
                got: curl(&key, &right, &["-XPUT", "-d", "value=hello"]).map_ok(),
                want: ok(""),
            },
            Step {
                name: "curl v2 get, right CA",
                got: v2_value(curl(&key, &right, &[])),
                want: ok("hello"),
            },
            Step {
                // curl negotiates h2 by ALPN; HTTP/1.1 over TLS must work as well.
                name: "curl v2 get over HTTP/1.1, right CA",
                got: v2_value(curl(&key, &right, &["--http1.1"])),
                want: ok("hello"),
            },
            Step {
                name: "curl v2 get, wrong CA",
                got: curl(&key, &wrong, &[]),
                want: fails(),
            },
            Step {
                name: "curl v2 get, system CAs only",
                got: curl(&key, &none, &[]),
                want: fails(),
            },
            Step {
                name: "curl v2 get, plain http to the TLS port",
                got: curl(&format!("http://{}/v2/keys/tls-v2", s.addr()), &none, &[]),
                want: fails(),
            },
            Step {
                name: "/v2/members lists the https client URL",
                got: client_urls(curl(&format!("{url}/v2/members"), &right, &[])),
                want: ok(url),
            },
            Step {
                name: "etcdctl member list shows the https client URL",
                got: etcdctl(url, &right, &["member", "list", "-w", "simple"])
                    .map_out(|o| o.split(", ").nth(4).unwrap_or_default().trim().to_string()),
                want: ok(url),
            },
        ]
    });
}

impl Outcome {
    /// Success alone (the body differs between etcd and us: indexes).
    fn map_ok(self) -> Outcome {
        Outcome {
            out: String::new(),
            ..self
        }
    }

    fn map_out(self, f: impl Fn(&str) -> String) -> Outcome {
        let out = if self.ok { f(&self.out) } else { String::new() };
        Outcome { out, ..self }
    }
}

/// The client URLs `/v2/members` lists, comma-separated.
fn client_urls(o: Outcome) -> Outcome {
    o.map_out(|body| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["members"][0]["clientURLs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    })
}

/// The client-cert-auth outcomes: no certificate and one from another CA are refused, one from
/// the trusted CA works, over v3 and v2.
fn client_cert_scenario(pki: &Pki, s: &Proc) -> Vec<Step> {
    let url = &s.url;
    let key = format!("{url}/v2/keys/mtls");
    vec![
        Step {
            name: "etcdctl put without a client cert",
            got: etcdctl(url, &pki.client_tls("a", ""), &["put", "k", "v"]),
            want: fails(),
        },
        Step {
            name: "etcdctl put with a client cert of the untrusted CA",
            got: etcdctl(url, &pki.client_tls("a", "b"), &["put", "k", "v"]),
            want: fails(),
        },
        Step {
            name: "etcdctl put with a client cert of the trusted CA",
            got: etcdctl(url, &pki.client_tls("a", "a"), &["put", "k", "v"]),
            want: ok("OK"),
        },
        Step {
            name: "etcdctl get with a client cert of the trusted CA",
            got: etcdctl(url, &pki.client_tls("a", "a"), &["get", "k"]),
            want: ok("k\nv"),
        },
        Step {
            name: "curl v2 put without a client cert",
            got: curl(&key, &pki.client_tls("a", ""), &["-XPUT", "-d", "value=x"]),
            want: fails(),
        },
        Step {
            name: "curl v2 put with a client cert of the untrusted CA",
            got: curl(&key, &pki.client_tls("a", "b"), &["-XPUT", "-d", "value=x"]),
            want: fails(),
        },
        Step {
            name: "curl v2 put with a client cert of the trusted CA",
            got: curl(&key, &pki.client_tls("a", "a"), &["-XPUT", "-d", "value=m"]).map_ok(),
            want: ok(""),
        },
        Step {
            name: "curl v2 get with a client cert of the trusted CA",
            got: v2_value(curl(&key, &pki.client_tls("a", "a"), &[])),
            want: ok("m"),
        },
    ]
}

#[test]
fn client_cert_auth_takes_only_certs_of_the_trusted_ca() {
    let pki = Pki::new();
    let mut flags = pki.cert_flags("");
    flags.push("--client-cert-auth".into());
    flags.push(format!("--trusted-ca-file={}", pki.p("a/ca.pem")));
    differential(&pki, "https", &flags, &[], |s| {
        client_cert_scenario(&pki, s)
    });
}

/// etcd 3.4 requires client certificates once `--trusted-ca-file` is given, even without
/// `--client-cert-auth`.
#[test]
fn a_trusted_ca_file_alone_requires_client_certs_as_in_etcd() {
    let pki = Pki::new();
    let mut flags = pki.cert_flags("");
    flags.push(format!("--trusted-ca-file={}", pki.p("a/ca.pem")));
    differential(&pki, "https", &flags, &[], |s| {
        client_cert_scenario(&pki, s)
    });
}

#[test]
fn etcd_environment_variables_configure_tls() {
    let pki = Pki::new();
    let env = [
        ("ETCD_CERT_FILE", pki.p("a/server.pem")),
        ("ETCD_KEY_FILE", pki.p("a/server-key.pem")),
        ("ETCD_CLIENT_CERT_AUTH", "true".to_string()),
        ("ETCD_TRUSTED_CA_FILE", pki.p("a/ca.pem")),
    ];
    differential(&pki, "https", &[], &env, |s| client_cert_scenario(&pki, s));
}

/// An `http://` listen URL serves plain HTTP although a certificate is given (etcd warns).
#[test]
fn an_http_listen_url_with_a_cert_serves_plain_http() {
    let pki = Pki::new();
    let mut flags = pki.cert_flags("");
    flags.push("--client-cert-auth".into());
    flags.push(format!("--trusted-ca-file={}", pki.p("a/ca.pem")));
    differential(&pki, "http", &flags, &[], |s| {
        let none = pki.client_tls("", "");
        vec![
            Step {
                name: "etcdctl put over plain http, no cert",
                got: etcdctl(&s.url, &none, &["put", "k", "plain"]),
                want: ok("OK"),
            },
            Step {
                name: "curl v2 get over plain http, no cert",
                got: curl(&format!("{}/v2/keys/", s.url), &none, &[]).map_ok(),
                want: ok(""),
            },
            Step {
                name: "curl https to the plain port",
                got: curl(
                    &format!("https://{}/v2/keys/", s.addr()),
                    &pki.client_tls("a", "a"),
                    &[],
                ),
                want: fails(),
            },
        ]
    });
}

/// Starts `kind` with `extra` and expects it to exit non-zero before serving; its log.
fn refused(kind: Kind, scheme: &str, peer_scheme: &str, extra: &[String]) -> String {
    let (mut child, url, log, _dir) = spawn(kind, scheme, peer_scheme, extra, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{kind:?} with {extra:?} kept running on {url}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "{kind:?} with {extra:?} exited 0: {text}"
    );
    text
}

#[test]
fn bad_tls_config_stops_the_member_at_startup_naming_flag_and_path() {
    let pki = Pki::new();
    let empty_ca = pki.p("empty-ca.pem");
    std::fs::write(&empty_ca, "").unwrap();
    let missing = pki.p("a/no-such-key.pem");
    let cert = format!("--cert-file={}", pki.p("a/server.pem"));
    let key = format!("--key-file={}", pki.p("a/server-key.pem"));
    // (what, flags, words our error must contain, whether etcd refuses to start too).
    let cases: Vec<(&str, Vec<String>, Vec<String>, bool)> = vec![
        (
            "an https URL without a cert",
            vec![],
            vec!["TLS key/cert (--cert-file, --key-file) must be provided".into()],
            true,
        ),
        (
            "a missing key file",
            vec![cert.clone(), format!("--key-file={missing}")],
            vec!["--key-file".into(), missing.clone()],
            true,
        ),
        (
            "a key that does not match the cert",
            vec![
                cert.clone(),
                format!("--key-file={}", pki.p("a/client-key.pem")),
            ],
            vec!["does not match".into(), pki.p("a/client-key.pem")],
            true,
        ),
        (
            "a cert file that is a key",
            vec![
                format!("--cert-file={}", pki.p("a/server-key.pem")),
                key.clone(),
            ],
            vec!["--cert-file".into(), pki.p("a/server-key.pem")],
            true,
        ),
        (
            "a CA file without certs",
            vec![
                cert.clone(),
                key.clone(),
                "--client-cert-auth".into(),
                format!("--trusted-ca-file={empty_ca}"),
            ],
            vec!["--trusted-ca-file".into(), empty_ca.clone()],
            // etcd starts and then fails every handshake; we refuse at startup.
            false,
        ),
    ];
    for (what, flags, words, etcd_refuses) in &cases {
        // etcd refuses these too (some only once it starts serving, but it exits all the same).
        if *etcd_refuses {
            refused(Kind::Etcd, "https", "http", flags);
        }
        let log = refused(Kind::Ours, "https", "http", flags);
        for w in words {
            assert!(log.contains(w.as_str()), "{what}: no {w:?} in: {log}");
        }
        assert!(
            !log.contains("serving client requests"),
            "{what}: listened before refusing: {log}"
        );
    }
    // The peer side: an https peer URL without a peer cert.
    refused(Kind::Etcd, "http", "https", &[]);
    let log = refused(Kind::Ours, "http", "https", &[]);
    assert!(log.contains("--peer-cert-file, --peer-key-file"), "{log}");
}

/// Three ferro-store members whose peer port is TLS with peer client-cert auth: they elect a
/// leader, replicate a write, list their https URLs; the peer port refuses anyone without a
/// certificate of the peer CA.
#[test]
fn three_members_over_peer_tls_elect_and_replicate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|(_, p)| format!("https://127.0.0.1:{p}"))
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("https://127.0.0.1:{c}"))
        .collect();
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}={p}"))
        .collect();
    let mut children = Vec::new();
    for i in 0..3 {
        let mut args = vec![
            format!("--name=m{i}"),
            "--enable-v2".into(),
            format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
            format!("--listen-client-urls={}", urls[i]),
            format!("--advertise-client-urls={}", urls[i]),
            format!("--listen-peer-urls={}", peers[i]),
            format!("--initial-advertise-peer-urls={}", peers[i]),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--heartbeat-interval=50".into(),
            "--election-timeout=400".into(),
            "--peer-client-cert-auth".into(),
            format!("--peer-trusted-ca-file={}", pki.p("a/ca.pem")),
        ];
        args.extend(pki.cert_flags(""));
        args.extend(pki.cert_flags("peer-"));
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
        children.push(Killed(
            Command::new(env!("CARGO_BIN_EXE_ferro-store"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
    }
    let logs = || {
        (0..3)
            .map(|i| std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).unwrap())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let tls = pki.client_tls("a", "");
    let eventually = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A quorum read answers only once the members reached each other over peer TLS.
    for u in &urls {
        eventually("quorum reads on every member", &|| {
            curl(&format!("{u}/v2/keys/?quorum=true"), &tls, &[]).ok
        });
    }
    eventually("a leader", &|| {
        urls.iter().any(|u| {
            let o = curl(&format!("{u}/v2/stats/self"), &tls, &[]);
            serde_json::from_str::<serde_json::Value>(&o.out)
                .is_ok_and(|v| v["state"] == "StateLeader")
        })
    });
    let leader = urls
        .iter()
        .position(|u| {
            let o = curl(&format!("{u}/v2/stats/self"), &tls, &[]);
            o.out.contains("StateLeader")
        })
        .expect("a leader");
    let follower = (leader + 1) % 3;
    // Written through a follower (forwarded to the leader over peer TLS), read on all.
    let put = etcdctl(&urls[follower], &tls, &["put", "replicated", "over-tls"]);
    assert_eq!(put, ok("OK"), "{}", logs());
    for u in &urls {
        let got = etcdctl(u, &tls, &["get", "replicated", "--print-value-only"]);
        assert_eq!(got, ok("over-tls"), "on {u}");
    }
    // Every member lists every https peer and client URL, unchanged.
    for u in &urls {
        eventually("three published members", &|| {
            let o = curl(&format!("{u}/v2/members"), &tls, &[]);
            urls.iter().all(|c| o.out.contains(c.as_str()))
        });
        let o = curl(&format!("{u}/v2/members"), &tls, &[]);
        for p in &peers {
            assert!(o.out.contains(p.as_str()), "{p} not in {}", o.out);
        }
        let list = etcdctl(u, &tls, &["member", "list"]);
        assert!(list.ok, "member list on {u}");
        for (p, c) in peers.iter().zip(&urls) {
            assert!(
                list.out.contains(p.as_str()) && list.out.contains(c.as_str()),
                "{p} / {c} not in {}",
                list.out
            );
        }
    }
    // The peer port: TLS with the peer CA, and only for peers with a certificate of it. Over
    // HTTP/1.1, as the peer client speaks: this handler answers without reading the body, and
    // over h2 hyper then resets the stream, which curl 7.88 sometimes reports as an error (92).
    let peer_call = |url: &str, tls: &Tls| {
        curl(
            &format!("{url}/raft/cluster-id"),
            tls,
            &[
                "--http1.1",
                "-XPOST",
                "-H",
                "content-type: application/json",
                "-d",
                "null",
            ],
        )
    };
    let with_cert = peer_call(&peers[0], &pki.client_tls("a", "a"));
    assert!(
        with_cert.ok && with_cert.out.parse::<u64>().is_ok(),
        "{with_cert:?}"
    );
    assert_eq!(peer_call(&peers[0], &pki.client_tls("a", "")), fails());
    assert_eq!(peer_call(&peers[0], &pki.client_tls("a", "b")), fails());
    assert_eq!(peer_call(&peers[0], &pki.client_tls("b", "a")), fails());
    let plain = peers[0].replace("https://", "http://");
    assert_eq!(peer_call(&plain, &pki.client_tls("", "")), fails());
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
