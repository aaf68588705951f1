//! Google Cloud: a service account's access token (a signed JWT exchanged at the token endpoint),
//! a resumable Cloud Storage upload, and Compute `images.insert`.

pub mod auth;
pub mod compute;
pub mod publish;
pub mod storage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {message}")]
    Api { what: String, message: String },
    #[error("{what}: Google refused the credentials of {account}: {message}")]
    Auth {
        what: String,
        account: String,
        message: String,
    },
    #[error("{what}: giving up after {attempts} attempts: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Google's JSON error body (`{"error": {"code", "message"}}`), or the start of whatever came.
pub(crate) fn error_message(status: u16, body: &str) -> String {
    let parsed: Option<String> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(
                match (e.get("message").and_then(|m| m.as_str()), e.as_str()) {
                    (Some(m), _) => m.to_string(),
                    // OAuth's {"error": "invalid_grant", "error_description": "…"}
                    (None, Some(code)) => match v.get("error_description").and_then(|d| d.as_str())
                    {
                        Some(d) => format!("{code}: {d}"),
                        None => code.to_string(),
                    },
                    (None, None) => e.to_string(),
                },
            )
        });
    let message = parsed.unwrap_or_else(|| body.chars().take(300).collect());
    format!("HTTP {status}: {message}")
}

pub(crate) fn http_client() -> Result<reqwest::blocking::Client, Error> {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| Error::Api {
            what: "building the HTTP client".into(),
            message: e.to_string(),
        })
}
