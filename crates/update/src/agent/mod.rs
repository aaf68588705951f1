//! The update agent (update_engine): configuration, the Omaha client cycle, downloads with
//! resume, the slot writer, the daemon's control socket, and the boot's health verdict (mark the slot good or
//! roll back).

pub mod boot_cfg;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod download;
pub mod engine;
pub mod esp;
pub mod hasher;
pub mod health;
pub mod ipc;
pub mod slot_writer;
pub mod status;
pub mod verdict;
