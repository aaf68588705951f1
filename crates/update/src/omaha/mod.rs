//! Omaha protocol v3, as CoreUpdate/Nebraska and update_engine speak it: one XML `request` per
//! POST to `/v1/update/`, one `response` back. Only what update_engine sends and reads is modelled;
//! unknown attributes and elements are ignored when parsing, so real clients' extras pass.
//!
//! CoreOS quirks kept here: the `track` attribute carries the GROUP from update.conf, the
//! package's sha256 travels as `hash_sha256` (hex, Nebraska) and as the postinstall action's
//! `sha256` (base64, update_engine).

pub mod codes;

pub use codes::{EventResult, EventType};
use serde::{Deserialize, Serialize};

pub const PROTOCOL: &str = "3.0";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Omaha XML does not parse: {0}")]
    Parse(#[from] quick_xml::DeError),
    #[error("Omaha XML does not serialise: {0}")]
    Write(#[from] quick_xml::SeError),
    #[error("Omaha protocol {0:?} is not supported (only 3.0)")]
    Protocol(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "request")]
pub struct Request {
    #[serde(rename = "@protocol")]
    pub protocol: String,
    #[serde(rename = "@version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(
        rename = "@updaterversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub updater_version: Option<String>,
    #[serde(
        rename = "@installsource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub install_source: Option<String>,
    #[serde(
        rename = "@ismachine",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    #[serde(rename = "app", default)]
    pub apps: Vec<AppRequest>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Os {
    #[serde(rename = "@platform", default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(rename = "@version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(rename = "@sp", default, skip_serializing_if = "Option::is_none")]
    pub sp: Option<String>,
    #[serde(rename = "@arch", default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppRequest {
    #[serde(rename = "@appid")]
    pub app_id: String,
    #[serde(rename = "@version", default)]
    pub version: String,
    /// The group (update.conf's GROUP); by default a group is named after its channel.
    #[serde(rename = "@track", default)]
    pub track: String,
    #[serde(
        rename = "@machineid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub machine_id: Option<String>,
    #[serde(rename = "@bootid", default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(rename = "@oem", default, skip_serializing_if = "Option::is_none")]
    pub oem: Option<String>,
    #[serde(rename = "@board", default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingRequest>,
    #[serde(
        rename = "updatecheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_check: Option<UpdateCheckRequest>,
    #[serde(rename = "event", default)]
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingRequest {
    #[serde(rename = "@active", default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(rename = "@r", default, skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateCheckRequest {
    #[serde(
        rename = "@targetversionprefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_version_prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "@eventtype")]
    pub event_type: u32,
    #[serde(rename = "@eventresult")]
    pub event_result: u32,
    #[serde(
        rename = "@previousversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_version: Option<String>,
    #[serde(
        rename = "@errorcode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<String>,
}

impl Event {
    pub fn new(t: EventType, r: EventResult) -> Event {
        Event {
            event_type: t as u32,
            event_result: r as u32,
            previous_version: None,
            error_code: None,
        }
    }
    pub fn kind(&self) -> Option<EventType> {
        EventType::from_code(self.event_type)
    }
    pub fn result(&self) -> Option<EventResult> {
        EventResult::from_code(self.event_result)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename = "response")]
pub struct Response {
    #[serde(rename = "@protocol")]
    pub protocol: String,
    #[serde(rename = "@server", default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(rename = "daystart", default, skip_serializing_if = "Option::is_none")]
    pub day_start: Option<DayStart>,
    #[serde(rename = "app", default)]
    pub apps: Vec<AppResponse>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DayStart {
    #[serde(rename = "@elapsed_seconds")]
    pub elapsed_seconds: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppResponse {
    #[serde(rename = "@appid")]
    pub app_id: String,
    /// "ok", or an error such as "error-unknownApplication".
    #[serde(rename = "@status")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<StatusOnly>,
    #[serde(
        rename = "updatecheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_check: Option<UpdateCheckResponse>,
    #[serde(rename = "event", default)]
    pub events: Vec<StatusOnly>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusOnly {
    #[serde(rename = "@status")]
    pub status: String,
}

impl StatusOnly {
    pub fn ok() -> Self {
        StatusOnly {
            status: "ok".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateCheckResponse {
    /// "ok" (an update follows) or "noupdate" (or "error-…").
    #[serde(rename = "@status")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Urls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Urls {
    #[serde(rename = "url", default)]
    pub urls: Vec<Url>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Url {
    /// A base URL; a package's address is codebase + package name.
    #[serde(rename = "@codebase")]
    pub codebase: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "@version")]
    pub version: String,
    pub packages: Packages,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Actions>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Packages {
    #[serde(rename = "package", default)]
    pub packages: Vec<Package>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Package {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@size")]
    pub size: u64,
    /// update_engine's: base64 sha1 (kept when parsing, not produced by us).
    #[serde(rename = "@hash", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(
        rename = "@hash_sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hash_sha256: Option<String>,
    #[serde(rename = "@required", default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Actions {
    #[serde(rename = "action", default)]
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    #[serde(rename = "@event")]
    pub event: String,
    #[serde(rename = "@sha256", default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(
        rename = "@ChromeOSVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chromeos_version: Option<String>,
    #[serde(
        rename = "@needsadmin",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub needs_admin: Option<String>,
    #[serde(rename = "@IsDelta", default, skip_serializing_if = "Option::is_none")]
    pub is_delta: Option<String>,
}

impl UpdateCheckResponse {
    pub fn no_update() -> Self {
        UpdateCheckResponse {
            status: "noupdate".into(),
            ..Default::default()
        }
    }
}

impl Request {
    pub fn new(apps: Vec<AppRequest>) -> Request {
        Request {
            protocol: PROTOCOL.into(),
            version: Some(concat!("ferrocore-update_engine-", env!("CARGO_PKG_VERSION")).into()),
            updater_version: Some(
                concat!("ferrocore-update_engine-", env!("CARGO_PKG_VERSION")).into(),
            ),
            install_source: None,
            is_machine: Some("1".into()),
            os: Some(Os {
                platform: Some("Ferrocore".into()),
                version: None,
                sp: None,
                arch: Some(std::env::consts::ARCH.into()),
            }),
            apps,
        }
    }

    pub fn parse(xml: &str) -> Result<Request, Error> {
        let r: Request = quick_xml::de::from_str(xml)?;
        check_protocol(&r.protocol)?;
        Ok(r)
    }

    pub fn to_xml(&self) -> Result<String, Error> {
        Ok(format!("{XML_DECL}{}", quick_xml::se::to_string(self)?))
    }
}

impl Response {
    pub fn new(apps: Vec<AppResponse>) -> Response {
        Response {
            protocol: PROTOCOL.into(),
            server: Some("ferro-update-server".into()),
            day_start: None,
            apps,
        }
    }

    pub fn parse(xml: &str) -> Result<Response, Error> {
        let r: Response = quick_xml::de::from_str(xml)?;
        check_protocol(&r.protocol)?;
        Ok(r)
    }

    pub fn to_xml(&self) -> Result<String, Error> {
        Ok(format!("{XML_DECL}{}", quick_xml::se::to_string(self)?))
    }
}

fn check_protocol(p: &str) -> Result<(), Error> {
    if p == PROTOCOL {
        Ok(())
    } else {
        Err(Error::Protocol(p.into()))
    }
}

#[cfg(test)]
mod tests;
