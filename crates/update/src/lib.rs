//! Ferrocore updates: the signed payload, the Omaha protocol between agent and server, the update
//! server, and the update agent that writes the inactive USR slot.

pub mod agent;
mod http_error;
pub mod locksmith;
pub mod omaha;
pub mod payload;
pub mod server;
pub mod testdisk;
pub mod version;
