//! The differential script runner: the same directives against two servers, answers normalised.
//!
//! Directives, one per line (`#` starts a comment):
//! - `GET|PUT|POST|DELETE|HEAD|PATCH <path?query> [form body]`: an HTTP request.
//! - `SHAPE <method> <path>`: a request whose JSON is compared by shape only (counters, IDs).
//! - `WATCH <name> <path?query>`: a request left running in the background; `AWAIT <name>` collects it.
//! - `REPEAT <n> <directive>`: run a directive n times without comparing its answers.
//! - `STREAM <name> <n> <path?query>`: a streaming watch collected (by `AWAIT`) after n events.
//! - `SLEEP <ms>`; `ETCDCTL2 <args>` / `ETCDCTL3 <args>`: Debian's etcdctl with that API version
//!   (`"quoted args"`, `<<< stdin` with `\n`, `{lease}` = the last granted lease);
//!   `ETCDCTL3FOR <ms> <args>` stops the command once it has printed something and then
//!   nothing for ms (for `watch`; a fixed wall time flaked when etcdctl was slow to start).
//! - `{idx:N}` in a line becomes the server's start index + N.

use std::collections::HashMap;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use super::json::{normalise_body, rebase_numbers, J};
use super::Server;

/// The longest a stopped-when-quiet command (`ETCDCTL3FOR`) may run without printing anything.
const QUIET_CAP: Duration = Duration::from_secs(15);

/// Runs a command that does not end by itself (a watch) until it has printed something and
/// then been quiet for `quiet`, or until `QUIET_CAP` without output; then kills it.
fn run_until_quiet(mut child: std::process::Child, quiet: Duration) -> std::process::Output {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Instant;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let wait = if out.is_empty() {
            QUIET_CAP.saturating_sub(start.elapsed())
        } else {
            quiet
        };
        match rx.recv_timeout(wait) {
            Ok(chunk) => out.extend(chunk),
            // Quiet long enough, or the command ended.
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let mut done = child.wait_with_output().unwrap();
    let _ = reader.join();
    while let Ok(chunk) = rx.try_recv() {
        out.extend(chunk);
    }
    done.stdout = out;
    done
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The v2 index once the server has settled (etcd writes its membership at start).
pub fn settled_index(url: &str) -> u64 {
    let c = client();
    let read = || -> u64 {
        let r = c.get(format!("{url}/v2/keys/")).send().unwrap();
        r.headers()["x-etcd-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut last = read();
    let mut same = 0;
    while same < 3 {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    last
}

fn http(method: &str, url: &str, body: Option<String>) -> String {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(m, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b);
    }
    match req.send() {
        Ok(r) => {
            let status = r.status().as_u16();
            let idx = r
                .headers()
                .get("x-etcd-index")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| "-".into());
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = r.text().unwrap_or_else(|e| format!("<body error {e}>"));
            format!("{status} idx={idx} {ctype}\n{body}")
        }
        Err(e) => format!("<request failed: {e}>"),
    }
}

/// Splits arguments on spaces, keeping "double-quoted" ones whole.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn stream_lines(url: &str, n: usize) -> String {
    use std::io::BufRead;
    let r = match client().get(url).send() {
        Ok(r) => r,
        Err(e) => return format!("<request failed: {e}>"),
    };
    let head = format!(
        "{} idx={} {}\n",
        r.status().as_u16(),
        r.headers()
            .get("x-etcd-index")
            .map_or("-", |v| v.to_str().unwrap()),
        r.headers()
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap()),
    );
    let mut reader = std::io::BufReader::new(r);
    let mut body = String::new();
    for _ in 0..n {
        if reader.read_line(&mut body).unwrap_or(0) == 0 {
            break;
        }
    }
    head + &body
}

pub struct Runner<'a> {
    pub server: &'a Server,
    pub base: u64,
    member_id: String,
    /// The last lease ID etcdctl granted (`{lease}` in later lines).
    lease: String,
    watches: HashMap<String, JoinHandle<String>>,
}

fn shape(j: &mut J) {
    match j {
        J::Num(n) => *n = 0.into(),
        J::Str(s) => *s = "<s>".into(),
        J::Arr(v) => v.iter_mut().for_each(shape),
        J::Obj(v) => v.iter_mut().for_each(|(_, x)| shape(x)),
        _ => {}
    }
}

impl<'a> Runner<'a> {
    pub fn new(server: &'a Server) -> Self {
        let base = settled_index(&server.url);
        let members: serde_json::Value = client()
            .get(format!("{}/v2/members", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let member_id = members["members"][0]["id"].as_str().unwrap().to_string();
        Runner {
            server,
            base,
            member_id,
            lease: String::new(),
            watches: HashMap::new(),
        }
    }

    fn subst(&self, line: &str) -> String {
        let mut out = line.to_string();
        while let Some(start) = out.find("{idx:") {
            let end = start + out[start..].find('}').expect("unclosed {idx:N}");
            let n: u64 = out[start + 5..end].parse().expect("{idx:N} takes a number");
            out.replace_range(start..=end, &(self.base + n).to_string());
        }
        out
    }

    fn normalise(&self, raw: &str) -> String {
        let text = raw
            .replace(&self.server.url, "<url>")
            .replace(&self.server.peer_url, "<peer>");
        let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
        let head = match head.split_once(" idx=") {
            Some((status, rest)) => {
                let (idx, ctype) = rest.split_once(' ').unwrap_or((rest, ""));
                let idx = idx
                    .parse::<u64>()
                    .map_or(idx.to_string(), |n| n.saturating_sub(self.base).to_string());
                format!("{status} idx={idx} {ctype}")
            }
            None => head.to_string(),
        };
        format!("{head}\n{}", normalise_body(body, self.base))
    }

    /// Runs etcdctl; `<<< text` after the arguments is its stdin (`\n` for newlines);
    /// with `wait_ms`, a command that does not end by itself (watch) is stopped after that long.
    fn etcdctl(&mut self, api: &str, args: &str, wait_ms: Option<u64>) -> String {
        use std::io::Write;
        let bin = super::require_tool("etcdctl", "etcd-client");
        let (args, stdin) = match args.split_once(" <<< ") {
            Some((a, i)) => (a, Some(i.replace("\\n", "\n"))),
            None => (args, None),
        };
        let args = args.replace("{lease}", &self.lease);
        let mut cmd = Command::new(bin);
        cmd.env("ETCDCTL_API", api).env_remove("ETCDCTL_ENDPOINTS");
        if api == "2" {
            cmd.args(["--no-sync", "--endpoints", &self.server.url]);
        } else {
            cmd.args(["--endpoints", &self.server.url]);
        }
        cmd.args(split_args(&args))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = match wait_ms {
            Some(ms) => run_until_quiet(child, Duration::from_millis(ms)),
            None => child.wait_with_output().unwrap(),
        };
        let code = if wait_ms.is_some() {
            "killed".to_string()
        } else {
            out.status.code().unwrap_or(-1).to_string()
        };
        let text = format!(
            "exit={code}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut text = text
            .replace(&self.server.url, "<url>")
            .replace(&self.server.peer_url, "<peer>")
            .replace(&self.member_id, "<id>");
        if let Some(rest) = text.split("lease ").nth(1) {
            if let Some((id, _)) = rest.split_once(" granted") {
                self.lease = id.to_string();
            }
        }
        if !self.lease.is_empty() {
            text = text.replace(&self.lease, "<lease>");
        }
        text.lines()
            .map(|l| {
                if l.starts_with('{') {
                    normalise_body(l, if api == "2" { self.base } else { 0 })
                        .trim_end()
                        .to_string()
                } else if let Some((head, _)) = l.split_once(" took = ") {
                    format!("{head} took = <time>")
                } else if api == "3" {
                    l.to_string()
                } else if l.contains("Index: ") {
                    rebase_numbers(l, self.base)
                } else if let (Some(a), true) = (l.rfind('['), l.ends_with(']')) {
                    // Only indices are rebased: `[N]` after v2 errors.
                    format!("{}{}", &l[..a], rebase_numbers(&l[a..], self.base))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs one directive; returns the normalised answer (None for directives without one).
    pub fn run(&mut self, line: &str) -> Option<String> {
        let line = self.subst(line);
        let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match verb {
            "SLEEP" => {
                std::thread::sleep(Duration::from_millis(rest.trim().parse().unwrap()));
                None
            }
            "WATCH" => {
                let (name, path) = rest.split_once(' ').unwrap();
                let url = format!("{}{}", self.server.url, path.trim());
                self.watches.insert(
                    name.to_string(),
                    std::thread::spawn(move || http("GET", &url, None)),
                );
                // Give the watch time to register before the next write.
                std::thread::sleep(Duration::from_millis(150));
                None
            }
            "STREAM" => {
                // `STREAM <name> <lines> <path>`: a streaming watch, collected after that many events.
                let mut parts = rest.splitn(3, ' ');
                let (name, n, path) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let n: usize = n.parse().unwrap();
                let url = format!("{}{}", self.server.url, path.trim());
                self.watches.insert(
                    name.to_string(),
                    std::thread::spawn(move || stream_lines(&url, n)),
                );
                std::thread::sleep(Duration::from_millis(150));
                None
            }
            "AWAIT" => {
                let h = self
                    .watches
                    .remove(rest.trim())
                    .expect("AWAIT of an unknown watch");
                Some(self.normalise(&h.join().unwrap()))
            }
            "REPEAT" => {
                // `REPEAT n <directive>`: answers are not compared, only the final state is.
                let (n, directive) = rest.split_once(' ').unwrap();
                for _ in 0..n.parse::<usize>().unwrap() {
                    self.run(directive);
                }
                None
            }
            "ETCDCTL2" => Some(self.etcdctl("2", rest, None)),
            "ETCDCTL3" => Some(self.etcdctl("3", rest, None)),
            "ETCDCTL3FOR" => {
                // `ETCDCTL3FOR <ms> <args>`: a command that runs until stopped (watch).
                let (ms, args) = rest.split_once(' ').unwrap();
                Some(self.etcdctl("3", args, Some(ms.parse().unwrap())))
            }
            "SHAPE" => {
                let (method, path) = rest.split_once(' ').unwrap();
                let raw = http(method, &format!("{}{}", self.server.url, path.trim()), None);
                let (head, body) = raw.split_once('\n').unwrap_or((&raw, ""));
                let head = head.split(" idx=").next().unwrap_or("");
                let body = match serde_json::from_str::<J>(body.trim()) {
                    Ok(mut j) => {
                        shape(&mut j);
                        let mut s = String::new();
                        j.render(&mut s);
                        s
                    }
                    Err(_) => body.to_string(),
                };
                Some(format!("{head}\n{body}"))
            }
            method => {
                let (path, body) = match rest.split_once(' ') {
                    Some((p, b)) => (p, Some(b.trim().to_string())),
                    None => (rest, None),
                };
                let raw = http(method, &format!("{}{}", self.server.url, path), body);
                Some(self.normalise(&raw))
            }
        }
    }
}
