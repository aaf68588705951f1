//! HTTP fetches for datasources: retried with exponential backoff on connection errors and
//! server errors, never on "not found" (no user data is an answer, not a failure).

use anyhow::{bail, Context, Result};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_delay: Duration::from_millis(500),
        }
    }
}

/// A request to make, possibly more than once.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub headers: Vec<(&'a str, String)>,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a str) -> Self {
        Request {
            method: reqwest::Method::GET,
            url,
            headers: Vec::new(),
        }
    }
    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}

/// The body, or `None` on 404; retries the rest and gives up with a message naming the URL.
pub fn fetch(req: &Request, retry: &Retry) -> Result<Option<String>> {
    let client = client()?;
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        let mut r = client.request(req.method.clone(), req.url);
        for (k, v) in &req.headers {
            r = r.header(*k, v);
        }
        match r.send() {
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
            Ok(resp) if resp.status().is_success() => {
                return resp
                    .text()
                    .map(Some)
                    .with_context(|| format!("reading {}", req.url))
            }
            Ok(resp) if resp.status().is_client_error() => {
                bail!("{} answered {}", req.url, resp.status())
            }
            Ok(resp) => last = format!("answered {}", resp.status()),
            Err(e) => last = format!("{e}"),
        }
        if attempt < retry.attempts {
            eprintln!(
                "coreos-cloudinit: {} {last}; retrying in {:?}",
                req.url, delay
            );
            std::thread::sleep(delay);
            delay *= 2;
        }
    }
    bail!(
        "giving up on {} after {} attempts: {last}",
        req.url,
        retry.attempts
    )
}
