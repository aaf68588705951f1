//! Service-account credentials: the JSON key file Google issues (`GOOGLE_APPLICATION_CREDENTIALS`),
//! a JWT signed with its RSA key (RS256) exchanged for an access token at `token_uri`
//! (RFC 7523, as Google's OAuth 2.0 server-to-server flow).

use super::Error;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub const SCOPES: &str =
    "https://www.googleapis.com/auth/devstorage.read_write https://www.googleapis.com/auth/compute";

#[derive(Deserialize, Clone)]
pub struct ServiceAccount {
    #[serde(rename = "type")]
    pub kind: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

impl ServiceAccount {
    pub fn from_file(path: &Path) -> Result<ServiceAccount, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        let sa: ServiceAccount = serde_json::from_str(&text).map_err(|e| Error::Api {
            what: format!("reading {}", path.display()),
            message: format!("not a service-account key file: {e}"),
        })?;
        if sa.kind != "service_account" {
            return Err(Error::Api {
                what: format!("reading {}", path.display()),
                message: format!(
                    "the key is of type `{}`; a service account key (`service_account`) is needed",
                    sa.kind
                ),
            });
        }
        Ok(sa)
    }

    /// The signed assertion for `aud` (the token endpoint).
    pub fn assertion(&self, aud: &str, scopes: &str) -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = Claims {
            iss: self.client_email.clone(),
            scope: scopes.into(),
            aud: aud.into(),
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.as_bytes()).map_err(|e| {
                Error::Api {
                    what: format!("the private key of {}", self.client_email),
                    message: e.to_string(),
                }
            })?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| Error::Api {
            what: format!("signing a token request for {}", self.client_email),
            message: e.to_string(),
        })
    }

    /// An access token from `token_url` (default: the key's `token_uri`).
    pub fn access_token(&self, token_url: Option<&str>, scopes: &str) -> Result<String, Error> {
        let url = token_url.unwrap_or(&self.token_uri);
        let assertion = self.assertion(url, scopes)?;
        let resp = super::http_client()?
            .post(url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .map_err(|e| Error::Api {
                what: format!("asking {url} for an access token"),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(Error::Auth {
                what: format!("asking {url} for an access token"),
                account: self.client_email.clone(),
                message: super::error_message(status, &body),
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|e| Error::Api {
            what: format!("reading the token from {url}"),
            message: e.to_string(),
        })?;
        Ok(answer.access_token)
    }
}
