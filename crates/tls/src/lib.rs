//! TLS for our servers and their clients, set up from flags as etcd's `--cert-file`,
//! `--key-file`, `--trusted-ca-file` and `--client-cert-auth` (ferro-store's client and peer
//! listeners and its peer client; ferro-update-server).
//!
//! Every file is read and checked once, at startup and before anything listens, so that a wrong
//! path or a key that does not match its certificate stops the member with the flag and the path
//! named, instead of failing each handshake later.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The flag names of one side (e.g. etcd's client or peer side), for the errors.
#[derive(Debug)]
pub struct Names {
    pub side: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
    pub ca: &'static str,
    pub auth: &'static str,
}

/// One side's TLS flags as given.
#[derive(Debug, Clone)]
pub struct Flags {
    pub names: &'static Names,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: cannot read it", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{flag} {}: not valid PEM", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{flag} {}: no certificate in it", path.display())]
    NoCert { flag: &'static str, path: PathBuf },
    #[error("{flag} {}: no private key in it", path.display())]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("{flag} {}: unusable", path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{key_flag} {} does not match the certificate in {cert_flag} {}", key.display(), cert.display())]
    Mismatch {
        cert_flag: &'static str,
        cert: PathBuf,
        key_flag: &'static str,
        key: PathBuf,
    },
    #[error("{flag} {}: cannot verify client certificates with it", path.display())]
    Verifier {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{cert_flag} {} / {key_flag} {}: the peer client refused them", cert.display(), key.display())]
    ClientIdentity {
        cert_flag: &'static str,
        cert: PathBuf,
        key_flag: &'static str,
        key: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("setting up TLS")]
    Rustls(#[source] rustls::Error),
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.into(),
        source,
    })
}

/// Every certificate in a PEM file; none is an error (a CA file without certs trusts nobody).
fn certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            flag,
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            flag,
            path: path.into(),
        });
    }
    Ok(certs)
}

fn key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            flag,
            path: path.into(),
        },
        source => TlsError::Pem {
            flag,
            path: path.into(),
            source,
        },
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring, as reqwest's rustls: one crypto library in the binary.
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Flags {
    /// Whether this side has a certificate to serve TLS with.
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Whether TLS listeners on this side verify client certificates. etcd 3.4 requires them
    /// once a trusted CA file is given, with or without `--client-cert-auth`.
    pub fn verifies_clients(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    /// The certificate chain and key, checked to belong together.
    fn cert_and_key(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let (Some(cert), Some(key_path)) = (&self.cert_file, &self.key_file) else {
            // Half a pair: the caller decides (ferro-store refuses it for https URLs only, as etcd).
            return Ok(None);
        };
        let chain = certs(self.names.cert, cert)?;
        let key = key(self.names.key, key_path)?;
        match CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()) {
            Ok(_) => Ok(Some((chain, key))),
            Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
                cert_flag: self.names.cert,
                cert: cert.clone(),
                key_flag: self.names.key,
                key: key_path.clone(),
            }),
            Err(source @ rustls::Error::InvalidCertificate(_)) => Err(TlsError::Invalid {
                flag: self.names.cert,
                path: cert.clone(),
                source,
            }),
            Err(source) => Err(TlsError::Invalid {
                flag: self.names.key,
                path: key_path.clone(),
                source,
            }),
        }
    }

    /// The server side: `None` without a certificate (plain HTTP).
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let Some((chain, key)) = self.cert_and_key()? else {
            return Ok(None);
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?;
        let builder = match &self.trusted_ca_file {
            Some(ca) if self.verifies_clients() => {
                let mut roots = RootCertStore::empty();
                for c in certs(self.names.ca, ca)? {
                    roots.add(c).map_err(|source| TlsError::Invalid {
                        flag: self.names.ca,
                        path: ca.clone(),
                        source,
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|source| TlsError::Verifier {
                            flag: self.names.ca,
                            path: ca.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            // Callers refuse --client-cert-auth without a CA file.
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Invalid {
                flag: self.names.cert,
                path: self.cert_file.clone().unwrap_or_default(),
                source,
            })?;
        // gRPC clients (etcdctl) insist on negotiating h2; curl and v2 clients may speak 1.1.
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }

    /// A client's TLS, as etcd's peer transport: the CA (if given) as the only root,
    /// the certificate as client identity (ferro-store: only for `https://` peer URLs).
    pub fn client(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        if let Some(ca) = &self.trusted_ca_file {
            builder = builder.tls_built_in_root_certs(false);
            for c in certs(self.names.ca, ca)? {
                let c = reqwest::Certificate::from_der(&c).map_err(|_| TlsError::NoCert {
                    flag: self.names.ca,
                    path: ca.clone(),
                })?;
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some((chain, key)) = self.cert_and_key()? {
            // reqwest takes the identity as PEM: the key, then the chain.
            let mut pem = key_pem(&key);
            for c in &chain {
                pem.extend(pem_block("CERTIFICATE", c));
            }
            let (cert, key) = (
                self.cert_file.clone().unwrap_or_default(),
                self.key_file.clone().unwrap_or_default(),
            );
            let id =
                reqwest::Identity::from_pem(&pem).map_err(|source| TlsError::ClientIdentity {
                    cert_flag: self.names.cert,
                    cert,
                    key_flag: self.names.key,
                    key,
                    source,
                })?;
            builder = builder.identity(id);
        }
        Ok(builder)
    }
}

fn key_pem(key: &PrivateKeyDer<'_>) -> Vec<u8> {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem_block(label, key.secret_der())
}

fn pem_block(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// A TLS listener for `axum::serve`: TCP connections are accepted and their handshakes run in
/// tasks of their own, so that one slow or silent client does not hold up the others; finished
/// handshakes come out of `accept`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    /// Starts accepting on `tcp` (must be called inside the runtime).
    pub fn new(tcp: TcpListener, cfg: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(cfg);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // As axum's own TcpListener: out of fds and the like pass; wait a bit.
                        tracing::debug!(error = %e, "accepting a TLS connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Without TCP_NODELAY, a gRPC answer written as headers + data waits for the
                // client's delayed ACK, as Go's net package never does.
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        // etcd logs these as "rejected connection from ..." at info.
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "rejected TLS connection")
                        }
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends once this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    const CLIENT: Names = Names {
        side: "client",
        cert: "--cert-file",
        key: "--key-file",
        ca: "--trusted-ca-file",
        auth: "--client-cert-auth",
    };

    /// A CA and a certificate it signed, made by Debian's openssl, plus a second key.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            let run = |args: &str| {
                let out = Command::new("openssl")
                    .args(args.split_whitespace())
                    .current_dir(dir.path())
                    .output()
                    .expect("running openssl (Debian package openssl)");
                assert!(out.status.success(), "openssl {args}: {out:?}");
            };
            // An extension makes the certificate X.509 v3: webpki refuses v1.
            std::fs::write(dir.path().join("ext.cnf"), "basicConstraints=CA:FALSE\n").unwrap();
            let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
            run(&format!(
                "req -x509 {ec} -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=unit-ca"
            ));
            run(&format!(
                "req {ec} -keyout key.pem -out csr.pem -subj /CN=unit"
            ));
            run("x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf");
            Files { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn flags(&self, cert: &str, key: &str, ca: Option<&str>) -> Flags {
            Flags {
                names: &CLIENT,
                cert_file: Some(self.path(cert)),
                key_file: Some(self.path(key)),
                trusted_ca_file: ca.map(|c| self.path(c)),
                client_cert_auth: ca.is_some(),
            }
        }
    }

    #[test]
    fn good_files_make_a_server_and_a_client_config() {
        let f = Files::new();
        let cfg = f.flags("cert.pem", "key.pem", Some("ca.pem"));
        let server = cfg.server_config().unwrap().unwrap();
        assert_eq!(
            server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        cfg.client(reqwest::Client::builder())
            .unwrap()
            .build()
            .unwrap();
        let plain = Flags {
            cert_file: None,
            key_file: None,
            ..cfg
        };
        assert!(plain.server_config().unwrap().is_none());
    }

    #[test]
    fn a_missing_key_file_names_the_flag_and_the_path() {
        let f = Files::new();
        let e = f
            .flags("cert.pem", "no-such-key.pem", None)
            .server_config()
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    flag: "--key-file",
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("--key-file ")
                && msg.contains(&f.path("no-such-key.pem").display().to_string()),
            "{msg}"
        );
        let e = f
            .flags("nope.pem", "key.pem", None)
            .server_config()
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    flag: "--cert-file",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_cert_is_refused() {
        let f = Files::new();
        // ca-key.pem is a valid key, but the CA's, not the certificate's.
        let e = f
            .flags("cert.pem", "ca-key.pem", None)
            .server_config()
            .unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("--key-file") && msg.contains("ca-key.pem") && msg.contains("cert.pem"),
            "{msg}"
        );
    }

    #[test]
    fn files_without_certs_or_keys_are_refused() {
        let f = Files::new();
        // A CA file with no certificate in it (a key) trusts nobody: refused, naming it.
        let e = f
            .flags("cert.pem", "key.pem", Some("key.pem"))
            .server_config()
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::NoCert {
                    flag: "--trusted-ca-file",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("key.pem"));
        std::fs::write(f.path("empty.pem"), "").unwrap();
        let e = f
            .flags("cert.pem", "key.pem", Some("empty.pem"))
            .client(reqwest::Client::builder())
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::NoCert {
                    flag: "--trusted-ca-file",
                    ..
                }
            ),
            "{e}"
        );
        let e = f
            .flags("cert.pem", "cert.pem", None)
            .server_config()
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::NoKey {
                    flag: "--key-file",
                    ..
                }
            ),
            "{e}"
        );
        let e = f
            .flags("key.pem", "key.pem", None)
            .server_config()
            .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::NoCert {
                    flag: "--cert-file",
                    ..
                }
            ),
            "{e}"
        );
    }
}
