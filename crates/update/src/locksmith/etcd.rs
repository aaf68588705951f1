//! Just enough of etcd's v2 keys API for the semaphore: get with its index, create if absent,
//! compare-and-swap on the index.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {}", crate::http_error::chain(source))]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: not an etcd v2 answer: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
}

/// What a write ran into.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Someone else changed or created the key first (etcd 101/105): read again and retry.
    Conflict,
}

#[derive(Deserialize)]
struct Answer {
    node: Node,
}

#[derive(Deserialize)]
struct Node {
    value: Option<String>,
    #[serde(rename = "modifiedIndex")]
    modified_index: u64,
}

pub struct Client {
    endpoint: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(endpoint: &str) -> Client {
        Client {
            endpoint: endpoint.trim_end_matches('/').into(),
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}/v2/keys{key}", self.endpoint)
    }

    /// The value and its modifiedIndex, or `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Result<Option<(String, u64)>, Error> {
        let url = self.url(key);
        let http = |source| Error::Http {
            url: url.clone(),
            source,
        };
        let resp = self.http.get(&url).send().map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.text().map_err(http)?;
        match status {
            404 => Ok(None),
            200 => {
                let a: Answer = serde_json::from_str(&body).map_err(|source| Error::Json {
                    url: url.clone(),
                    source,
                })?;
                Ok(Some((
                    a.node.value.unwrap_or_default(),
                    a.node.modified_index,
                )))
            }
            _ => Err(Error::Status { url, status, body }),
        }
    }

    /// Writes `value` if the key is absent (`prev_index` None) or still at `prev_index`.
    pub fn put_if(&self, key: &str, value: &str, prev_index: Option<u64>) -> Result<Write, Error> {
        let url = self.url(key);
        let cond = match prev_index {
            Some(i) => ("prevIndex", i.to_string()),
            None => ("prevExist", "false".to_string()),
        };
        let http = |source| Error::Http {
            url: url.clone(),
            source,
        };
        let resp = self
            .http
            .put(&url)
            .query(&[cond])
            .form(&[("value", value)])
            .send()
            .map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.text().map_err(http)?;
        match status {
            200 | 201 => Ok(Write::Done),
            412 => Ok(Write::Conflict),
            // A concurrent create shows as 105 "Key already exists" with 412.
            _ => Err(Error::Status { url, status, body }),
        }
    }
}
