//! `ferro-update-server`: an Omaha v3 update server in the manner of CoreUpdate/Nebraska.
//!
//! ```text
//! POST /v1/update/                   Omaha update checks and event reports
//! GET  /v1/payload/{version}/{file}  payload files, with HTTP Range
//! GET  /metrics                      Prometheus text
//! GET  /                             a small page: channels, groups, instances
//! GET  /api/state                    admin: everything, as JSON
//! POST /api/publish                  admin: {"dir": "/path/to/payload", "channel": "stable"}
//! POST /api/promote                  admin: {"version": "1.2.0", "channel": "beta"}
//! POST /api/groups/{name}            admin: {"channel"?, "rollout_percent"?, "paused"?}
//! POST /v1/pre-reboot                FleetLock: take a reboot slot (header fleet-lock-protocol)
//! POST /v1/steady-state              FleetLock: give it back
//! ```

pub mod http;
pub mod metrics;
pub mod policy;
pub mod range;
pub mod state;
