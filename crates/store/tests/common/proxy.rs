//! A fault-injecting TCP proxy for the peer links of a cluster on loopback.
//!
//! A member has one peer URL, and every other member dials that same URL: a proxy in front of
//! each member's peer listener sees the traffic *to* it, but not from whom. On loopback every
//! connection comes from 127.0.0.1, so the proxy asks the kernel: the client end of an accepted
//! connection is a socket in `/proc/net/tcp` (by its port), and its inode is an open file of
//! exactly one member process (`/proc/PID/fd`). That gives every connection its link
//! (from → to), and a partition is a set of cut links, each direction on its own:
//! - a new connection over a cut link is accepted and closed at once (a refused peer);
//! - an open connection stalls: bytes read from a cut direction are held, not forwarded, until
//!   the link heals (then they arrive late, as after a healed network).
//!
//! A connection whose client end is in no member process is closed at once and counted: its
//! client closed it before the proxy looked (a cancelled RPC; seen now and then under load), so
//! nobody waits for it, and forwarding what it sent could carry a message across a cut.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    /// (from, to): bytes from member `from` to member `to` are not forwarded.
    cut: Mutex<HashSet<(usize, usize)>>,
    /// Each member's process, to tell who opened a connection.
    pids: Mutex<Vec<Option<u32>>>,
    stop: AtomicBool,
    /// Connections closed at once because their link was cut.
    refused: AtomicUsize,
    /// Chunks held back on open connections while their link was cut.
    stalled: AtomicUsize,
    /// Connections forwarded, and those closed because their client was in no member.
    forwarded: AtomicUsize,
    unknown: AtomicUsize,
}

impl Shared {
    fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.lock().unwrap().contains(&(from, to))
    }
}

/// How much a partition did: evidence that the proxy really cut something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub refused: usize,
    pub stalled: usize,
    pub forwarded: usize,
    pub unknown: usize,
}

/// One proxy per member: member `i` advertises `127.0.0.1:port(i)`, which forwards to its real
/// peer listener.
pub struct PeerNet {
    shared: Arc<Shared>,
    ports: Vec<u16>,
}

impl PeerNet {
    /// Listens for every member (proxy ports are bound now, so they cannot be taken later);
    /// `upstream[i]` is member `i`'s real peer port.
    pub fn start(upstream: &[u16]) -> PeerNet {
        let shared = Arc::new(Shared {
            pids: Mutex::new(vec![None; upstream.len()]),
            ..Default::default()
        });
        let mut ports = Vec::new();
        for (to, &up) in upstream.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            ports.push(listener.local_addr().unwrap().port());
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, to, up, shared));
        }
        PeerNet { shared, ports }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Member `i` now runs as process `pid` (None: not running).
    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        self.shared.pids.lock().unwrap()[i] = pid;
    }

    /// Cuts member `i` off from every other member, both ways.
    pub fn isolate(&self, i: usize) {
        let n = self.ports.len();
        let mut cut = self.shared.cut.lock().unwrap();
        for j in (0..n).filter(|&j| j != i) {
            cut.insert((i, j));
            cut.insert((j, i));
        }
    }

    /// Cuts one direction only: what `from` sends to `to` is lost.
    pub fn cut_one_way(&self, from: usize, to: usize) {
        self.shared.cut.lock().unwrap().insert((from, to));
    }

    /// Every link works again; stalled connections resume.
    pub fn heal(&self) {
        self.shared.cut.lock().unwrap().clear();
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            refused: s.refused.load(Ordering::Relaxed),
            stalled: s.stalled.load(Ordering::Relaxed),
            forwarded: s.forwarded.load(Ordering::Relaxed),
            unknown: s.unknown.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.heal();
        // Wake the acceptors up so that they see `stop`.
        for &p in &self.ports {
            let _ = TcpStream::connect(("127.0.0.1", p));
        }
    }
}

fn accept_loop(listener: TcpListener, to: usize, upstream: u16, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || serve(conn, to, upstream, shared));
    }
}

fn serve(client: TcpStream, to: usize, upstream: u16, shared: Arc<Shared>) {
    let (Ok(client_addr), Ok(proxy_addr)) = (client.peer_addr(), client.local_addr()) else {
        return;
    };
    let from = member_of(&shared, client_addr, proxy_addr);
    let Some(from) = from else {
        shared.unknown.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    if shared.is_cut(from, to) || shared.is_cut(to, from) {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    pump_both(client, upstream, from, to, shared)
}

fn pump_both(client: TcpStream, upstream: u16, from: usize, to: usize, s: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return; // The member is down: the client sees the connection close.
    };
    s.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let s_up = s.clone();
    let up = std::thread::spawn(move || pump(client, server, (from, to), s_up));
    pump(s2, c2, (to, from), s);
    let _ = up.join();
}

/// Copies `src` to `dst`; while `link` is cut, what was read is held back.
fn pump(mut src: TcpStream, mut dst: TcpStream, link: (usize, usize), s: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (from, to) = link;
        if s.is_cut(from, to) {
            s.stalled.fetch_add(1, Ordering::Relaxed);
            while s.is_cut(from, to) && !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
    let _ = src.shutdown(Shutdown::Read);
}

/// Which member's process holds the client end of a connection from `client` to `server`.
fn member_of(s: &Shared, client: SocketAddr, server: SocketAddr) -> Option<usize> {
    // The client's socket is in the table once its connect() completed; retry a little anyway.
    for _ in 0..20 {
        if let Some(inode) = socket_inode(client, server) {
            let link = format!("socket:[{inode}]");
            let pids = s.pids.lock().unwrap().clone();
            let found = pids.iter().position(|pid| {
                pid.is_some_and(|pid| {
                    std::fs::read_dir(format!("/proc/{pid}/fd"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|l| l.as_os_str() == link.as_str())
                        })
                })
            });
            if found.is_some() {
                return found;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The inode of the TCP socket bound to `local` and connected to `remote` (IPv4 only).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )),
        SocketAddr::V6(_) => None,
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}
