//! FleetLock (Zincati/Airlock's protocol): `POST /v1/pre-reboot` takes a reboot slot for the node,
//! `POST /v1/steady-state` gives it back; both with header `fleet-lock-protocol: true` and body
//! `{"client_params":{"node_uuid":…,"group":…}}`. 200 means done; anything else refuses.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {}", crate::http_error::chain(source))]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: refused ({status}): {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

pub struct FleetLock {
    base: String,
    group: String,
    http: reqwest::blocking::Client,
}

impl FleetLock {
    pub fn new(base: &str, group: &str) -> FleetLock {
        FleetLock {
            base: base.trim_end_matches('/').into(),
            group: group.into(),
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    fn post(&self, path: &str, node: &str) -> Result<(), Error> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::json!({
            "client_params": { "node_uuid": node, "group": self.group }
        });
        let http = |source| Error::Http {
            url: url.clone(),
            source,
        };
        let resp = self
            .http
            .post(&url)
            .header("fleet-lock-protocol", "true")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(http)?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body = resp.text().unwrap_or_default();
        Err(Error::Refused {
            url,
            status,
            body: body.trim().into(),
        })
    }

    pub fn pre_reboot(&self, node: &str) -> Result<(), Error> {
        self.post("/v1/pre-reboot", node)
    }

    pub fn steady_state(&self, node: &str) -> Result<(), Error> {
        self.post("/v1/steady-state", node)
    }
}
