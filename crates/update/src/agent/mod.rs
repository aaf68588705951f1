//! The update agent (update_engine): configuration, the Omaha client cycle, downloads with
//! resume, the slot writer, and the daemon's control socket.

pub mod boot_cfg;
pub mod config;
pub mod daemon;
pub mod download;
pub mod engine;
pub mod esp;
pub mod hasher;
pub mod ipc;
pub mod slot_writer;
pub mod status;
