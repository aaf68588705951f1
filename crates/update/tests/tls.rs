//! `ferro-update-server serve --cert-file --key-file`: Omaha, payloads and the admin API over
//! HTTPS; update_engine trusts the server through the system's CAs (`SSL_CERT_FILE` here) and
//! refuses a server it cannot verify, writing nothing. Certificates are made by Debian's openssl.

mod common;
use common::daemon::*;
use common::machine::machine;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a server certificate it signed for 127.0.0.1, and a second CA that signed nothing.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let run = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("running openssl (Debian package openssl)");
        assert!(out.status.success(), "openssl {args}: {out:?}");
    };
    // webpki wants X.509 v3 with the address as a subject alternative name.
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "req -x509 {ec} -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=update-ca"
    ));
    run(&format!(
        "req -x509 {ec} -keyout other-key.pem -out other-ca.pem -days 2 -subj /CN=other-ca"
    ));
    run(&format!(
        "req {ec} -keyout key.pem -out csr.pem -subj /CN=127.0.0.1"
    ));
    run("x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf");
    Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

fn https_server(dir: &Path, pki: &Pki) -> Server {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut srv = server(&dir.join("data"), &["--cert-file", cert, "--key-file", key]);
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    srv.cacert = Some(pki.ca.clone());
    srv
}

#[test]
fn updates_over_https_from_a_server_signed_by_a_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 1_500_000);
    let srv = https_server(dir.path(), &pki);
    // The admin CLI over HTTPS, trusting the CA with --cacert.
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let d = daemon_with_env(&m, dir.path(), "ue", &[("SSL_CERT_FILE", &pki.ca)]);
    let (ok, out) = client(&d, &["-update"]);
    assert!(ok, "{out}");
    assert!(out.contains("installed 2.0.0"), "{out}");
    m.assert_updated(&p);
    // The payload came over https: the server saw the check and the download's events.
    let id = machine_id(&m);
    let state = srv.state();
    let i = &state["instances"][&id];
    assert_eq!(i["version"], "1.0.0", "{state}");
}

#[test]
fn a_server_the_agent_cannot_verify_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let k = keys(dir.path());
    let p = payload(dir.path(), "2.0.0", &k.signing, 300_000);
    let srv = https_server(dir.path(), &pki);
    srv.admin(&["publish", p.dir.to_str().unwrap(), "--channel", "stable"]);
    let m = machine(dir.path(), "1.0.0", &k.trusted_dir);
    m.set_server(&srv.url);
    let before = std::fs::read(&m.disk).unwrap();
    // The agent trusts another CA only.
    let d = daemon_with_env(&m, dir.path(), "ue", &[("SSL_CERT_FILE", &pki.other_ca)]);
    let (ok, out) = client(&d, &["-update"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&srv.url) && out.to_lowercase().contains("certificate"),
        "the error names the server and the certificate: {out}"
    );
    assert!(
        std::fs::read(&m.disk).unwrap() == before,
        "the disk image changed"
    );
    // It never reached the server's Omaha handler.
    assert!(
        srv.state()["instances"]
            .as_object()
            .is_none_or(|o| o.is_empty()),
        "{}",
        srv.state()
    );
    // The admin CLI without the CA is refused too, naming the server.
    let out = Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
        .args(["--server", &srv.url, "status"])
        .env("SSL_CERT_FILE", &pki.other_ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&srv.url), "{err}");
}

#[test]
fn bad_certificate_files_stop_the_server_naming_the_flag_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let serve = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .output()
            .unwrap()
    };
    // A key that is not the certificate's.
    let out = serve(&pki.cert, &dir.path().join("ca-key.pem"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
    assert!(
        err.contains("--key-file") && err.contains("ca-key.pem") && err.contains("does not match"),
        "{err}"
    );
    // A missing certificate file.
    let out = serve(&dir.path().join("nope.pem"), &pki.key);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
    assert!(
        err.contains("--cert-file") && err.contains("nope.pem"),
        "{err}"
    );
    // Half a pair is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_ferro-update-server"))
        .args(["serve", "--data-dir", "/nonexistent", "--cert-file"])
        .arg(&pki.cert)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--key-file"), "{err}");
}
