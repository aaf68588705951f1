//! coreos-cloudinit, rebuilt: user data (`#cloud-config` or a `#!` script) from a datasource,
//! validated as a whole before anything is applied, then applied to a root directory (`/` on a
//! machine, a scratch directory in tests).

pub mod apply;
pub mod config;
pub mod coreos;
pub mod datasource;
pub mod failure;
pub mod fetch;
pub mod schema;
pub mod services;
pub mod systemd_bus;
#[cfg(test)]
mod test_server;
pub mod units;
pub mod userdata;
pub mod validate;
pub mod yaml;

pub use config::CloudConfig;
pub use userdata::UserData;
