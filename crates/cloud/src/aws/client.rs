//! SigV4-signed requests to AWS services (signing by `aws-sigv4`), retried with exponential
//! backoff on throttling, server errors and dropped connections; errors name the service, the
//! operation and, for rejected credentials, the access key id (never the secret).

use super::config::Settings;
use crate::backoff::Backoff;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Error codes AWS uses for "slow down".
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
];

/// Error codes that mean the credentials (or the signature made with them) were refused.
const AUTH: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidSignatureException",
    "IncompleteSignature",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "InvalidToken",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `what` is the service and operation: `ec2 RegisterImage`.
    #[error("{what}: AWS refused the credentials for access key {key_id} (from {source_name}): {code}: {message}")]
    Auth {
        what: String,
        key_id: String,
        source_name: String,
        code: String,
        message: String,
    },
    #[error("{what} failed ({status}): {code}: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: giving up after {attempts} attempts: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: String,
    },
    #[error("{what}: {message}")]
    Unexpected { what: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn unexpected(service: &str, operation: &str, message: impl Into<String>) -> Error {
        Error::Unexpected {
            what: format!("{service} {operation}"),
            message: message.into(),
        }
    }
}

impl Error {
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Auth { code, .. } | Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What a request sends.
pub enum Body {
    Bytes(Vec<u8>),
    /// A whole file, streamed and not hashed (S3's `UNSIGNED-PAYLOAD`).
    File(PathBuf),
}

pub struct Request {
    /// Signing name and endpoint prefix: `ec2`, `ebs`, `s3`.
    pub service: &'static str,
    /// For messages: `RegisterImage`, `PutSnapshotBlock`, …
    pub operation: &'static str,
    /// Another region than the client's (CopyImage goes to the destination region).
    pub region: Option<String>,
    /// Another host than `<service>.<region>.amazonaws.com` (S3 virtual-hosted buckets); an
    /// endpoint override still wins.
    pub host: Option<String>,
    pub method: http::Method,
    /// Already percent-encoded path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    pub fn new(
        service: &'static str,
        operation: &'static str,
        method: http::Method,
        path: String,
    ) -> Request {
        Request {
            service,
            operation,
            region: None,
            host: None,
            method,
            path,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }
    pub fn in_region(mut self, region: &str) -> Request {
        self.region = Some(region.to_string());
        self
    }
}

pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub settings: Settings,
    pub backoff: Backoff,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, Error> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::Unexpected {
                what: "http client".to_string(),
                message: e.to_string(),
            })?;
        Ok(Client {
            settings,
            backoff: Backoff::default(),
            http,
        })
    }

    pub fn region(&self) -> &str {
        &self.settings.region
    }

    /// `https://<service>.<region>.amazonaws.com`, or the override for every service.
    pub fn endpoint(&self, service: &str, region: &str) -> String {
        match &self.settings.endpoint_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{service}.{region}.amazonaws.com"),
        }
    }

    /// Sends the request, retrying what is worth retrying; a non-2xx answer becomes an error.
    pub fn send(&self, req: &Request) -> Result<Response, Error> {
        let mut last = String::new();
        for attempt in 1..=self.backoff.attempts {
            let retry_reason = match self.send_once(req) {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => {
                    let (code, message) = error_code(&resp);
                    if AUTH.contains(&code.as_str()) {
                        return Err(Error::Auth {
                            what: format!("{} {}", req.service, req.operation),
                            key_id: self.settings.credentials.access_key_id.clone(),
                            source_name: self.settings.credentials.source.clone(),
                            code,
                            message,
                        });
                    }
                    let retryable = THROTTLING.contains(&code.as_str())
                        || matches!(resp.status, 429 | 500 | 502 | 503 | 504);
                    if !retryable {
                        return Err(Error::Api {
                            what: format!("{} {}", req.service, req.operation),
                            status: resp.status,
                            code,
                            message,
                        });
                    }
                    format!("{} {code}: {message}", resp.status)
                }
                Err(SendError::Transport(e)) => e,
                Err(SendError::Fatal(e)) => return Err(e),
            };
            last = retry_reason;
            if attempt < self.backoff.attempts {
                let delay = self.backoff.delay(attempt);
                tracing::warn!(
                    "{} {}: {last}; retrying in {delay:?} (attempt {attempt}/{})",
                    req.service,
                    req.operation,
                    self.backoff.attempts
                );
                std::thread::sleep(delay);
            }
        }
        Err(Error::GaveUp {
            what: format!("{} {}", req.service, req.operation),
            attempts: self.backoff.attempts,
            last,
        })
    }

    fn send_once(&self, req: &Request) -> Result<Response, SendError> {
        let region = req.region.as_deref().unwrap_or(&self.settings.region);
        let base = match (&self.settings.endpoint_url, &req.host) {
            (None, Some(host)) => format!("https://{host}"),
            _ => self.endpoint(req.service, region),
        };
        let url = format!("{base}{}", req.path);
        let fatal = |message: String| {
            SendError::Fatal(Error::Unexpected {
                what: format!("signing {} {}", req.service, req.operation),
                message,
            })
        };
        let creds = &self.settings.credentials;
        let identity = aws_credential_types::Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            creds.session_token.clone(),
            None,
            "ferrocore",
        )
        .into();
        let mut settings = SigningSettings::default();
        if req.service == "s3" {
            // S3 signs the path as sent and wants the payload hash in a header.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(req.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| fatal(e.to_string()))?
            .into();
        let (body, length) = match &req.body {
            Body::Bytes(b) => (SignableBody::Bytes(b), b.len() as u64),
            Body::File(p) => (
                SignableBody::UnsignedPayload,
                std::fs::metadata(p)
                    .map_err(|source| {
                        SendError::Fatal(Error::Io {
                            context: format!("reading {}", p.display()),
                            source,
                        })
                    })?
                    .len(),
            ),
        };
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signable = SignableRequest::new(
            req.method.as_str(),
            url.as_str(),
            headers.iter().copied(),
            body,
        )
        .map_err(|e| fatal(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| fatal(e.to_string()))?
            .into_parts();
        let mut builder = self.http.request(req.method.clone(), &url);
        for (k, v) in req.headers.iter() {
            builder = builder.header(k, v);
        }
        for (k, v) in instructions.headers() {
            builder = builder.header(k, v);
        }
        builder = match &req.body {
            Body::Bytes(b) => builder.body(b.clone()),
            Body::File(p) => {
                let f = std::fs::File::open(p).map_err(|source| {
                    SendError::Fatal(Error::Io {
                        context: format!("opening {}", p.display()),
                        source,
                    })
                })?;
                builder.body(reqwest::blocking::Body::sized(f, length))
            }
        };
        let resp = builder
            .send()
            .map_err(|e| SendError::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .map_err(|e| SendError::Transport(error_chain(&e)))?
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

enum SendError {
    /// The connection failed or dropped: worth another attempt.
    Transport(String),
    Fatal(Error),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The error code and message from an error answer: EC2/S3 XML (`<Code>`, `<Message>`), JSON
/// (`__type`/`code`, `message`/`Message`) or the `x-amzn-ErrorType` header.
pub fn error_code(resp: &Response) -> (String, String) {
    let text = resp.text();
    let header_code = resp
        .header("x-amzn-errortype")
        .map(|t| t.split(':').next().unwrap_or(t).to_string());
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| v.get(*n).and_then(|x| x.as_str()).map(str::to_string))
        };
        let code = field(&["__type", "code", "Code", "Reason"])
            .map(|c| c.rsplit('#').next().unwrap_or(&c).to_string())
            .or(header_code.clone())
            .unwrap_or_else(|| format!("HTTP{}", resp.status));
        let message = field(&["message", "Message"]).unwrap_or_default();
        return (code, message);
    }
    if let Ok(x) = crate::xml::Element::parse(&text) {
        if let Some(code) = x.find_text("Code") {
            return (code, x.find_text("Message").unwrap_or_default());
        }
    }
    let code = header_code.unwrap_or_else(|| format!("HTTP{}", resp.status));
    let message: String = text.chars().take(300).collect();
    (code, message)
}
