//! etcd's v2 error codes (`errorCode`, `message`, `cause`, `index`) and their HTTP statuses.

use serde::Serialize;

/// A v2 store or request error, serialised exactly as etcd writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} ({cause}) [{index}]")]
pub struct V2Error {
    #[serde(rename = "errorCode")]
    pub code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cause: String,
    pub index: u64,
}

pub const KEY_NOT_FOUND: u32 = 100;
pub const TEST_FAILED: u32 = 101;
pub const NOT_FILE: u32 = 102;
pub const NOT_DIR: u32 = 104;
pub const NODE_EXIST: u32 = 105;
pub const ROOT_READ_ONLY: u32 = 107;
pub const DIR_NOT_EMPTY: u32 = 108;
pub const UNAUTHORIZED: u32 = 110;
pub const VALUE_REQUIRED: u32 = 200;
pub const PREV_VALUE_REQUIRED: u32 = 201;
pub const TTL_NAN: u32 = 202;
pub const INDEX_NAN: u32 = 203;
pub const INVALID_FIELD: u32 = 209;
pub const INVALID_FORM: u32 = 210;
pub const REFRESH_VALUE: u32 = 211;
pub const REFRESH_TTL_REQUIRED: u32 = 212;
pub const RAFT_INTERNAL: u32 = 300;
pub const LEADER_ELECT: u32 = 301;
pub const WATCHER_CLEARED: u32 = 400;
pub const EVENT_INDEX_CLEARED: u32 = 401;

fn message(code: u32) -> &'static str {
    match code {
        KEY_NOT_FOUND => "Key not found",
        TEST_FAILED => "Compare failed",
        NOT_FILE => "Not a file",
        NOT_DIR => "Not a directory",
        NODE_EXIST => "Key already exists",
        ROOT_READ_ONLY => "Root is read only",
        DIR_NOT_EMPTY => "Directory not empty",
        UNAUTHORIZED => "The request requires user authentication",
        VALUE_REQUIRED => "Value is Required in POST form",
        PREV_VALUE_REQUIRED => "PrevValue is Required in POST form",
        TTL_NAN => "The given TTL in POST form is not a number",
        INDEX_NAN => "The given index in POST form is not a number",
        INVALID_FIELD => "Invalid field",
        INVALID_FORM => "Invalid POST form",
        REFRESH_VALUE => "Value provided on refresh",
        REFRESH_TTL_REQUIRED => "A TTL must be provided on refresh",
        RAFT_INTERNAL => "Raft Internal Error",
        LEADER_ELECT => "During Leader Election",
        WATCHER_CLEARED => "watcher is cleared due to etcd recovery",
        EVENT_INDEX_CLEARED => "The event in requested index is outdated and cleared",
        _ => "Unknown error",
    }
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: u64) -> Self {
        V2Error {
            code,
            message: message(code),
            cause: cause.into(),
            index,
        }
    }

    /// The HTTP status etcd answers with for this code (400 unless listed).
    pub fn status(&self) -> u16 {
        match self.code {
            KEY_NOT_FOUND => 404,
            NOT_FILE | DIR_NOT_EMPTY => 403,
            UNAUTHORIZED => 401,
            TEST_FAILED | NODE_EXIST => 412,
            RAFT_INTERNAL | LEADER_ELECT => 500,
            _ => 400,
        }
    }
}
