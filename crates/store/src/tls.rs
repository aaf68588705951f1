//! etcd's TLS flags for the client and the peer side; the files, checks and listener are the
//! `tls` crate's.

pub use tls::{Flags, Names, TlsError, TlsListener};

pub const CLIENT: Names = Names {
    side: "client",
    cert: "--cert-file",
    key: "--key-file",
    ca: "--trusted-ca-file",
    auth: "--client-cert-auth",
};

pub const PEER: Names = Names {
    side: "peer",
    cert: "--peer-cert-file",
    key: "--peer-key-file",
    ca: "--peer-trusted-ca-file",
    auth: "--peer-client-cert-auth",
};
