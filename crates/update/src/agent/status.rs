//! What `update_engine_client -status` prints, in CoreOS's format.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Operation {
    #[default]
    Idle,
    CheckingForUpdate,
    UpdateAvailable,
    Downloading,
    Verifying,
    Finalizing,
    UpdatedNeedReboot,
    ReportingErrorEvent,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Idle => "UPDATE_STATUS_IDLE",
            Operation::CheckingForUpdate => "UPDATE_STATUS_CHECKING_FOR_UPDATE",
            Operation::UpdateAvailable => "UPDATE_STATUS_UPDATE_AVAILABLE",
            Operation::Downloading => "UPDATE_STATUS_DOWNLOADING",
            Operation::Verifying => "UPDATE_STATUS_VERIFYING",
            Operation::Finalizing => "UPDATE_STATUS_FINALIZING",
            Operation::UpdatedNeedReboot => "UPDATE_STATUS_UPDATED_NEED_REBOOT",
            Operation::ReportingErrorEvent => "UPDATE_STATUS_REPORTING_ERROR_EVENT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Status {
    /// Unix seconds of the last update check (0: never).
    pub last_checked_time: u64,
    /// 0.0–1.0 within the current operation.
    pub progress: f64,
    pub current_op: Operation,
    pub new_version: Option<String>,
    pub new_size: u64,
    /// The last failure, whole error chain (not printed by `-status`, which CoreOS does not).
    pub last_error: Option<String>,
}

impl Status {
    /// CoreOS's five lines.
    pub fn to_text(&self) -> String {
        format!(
            "LAST_CHECKED_TIME={}\nPROGRESS={:.6}\nCURRENT_OP={}\nNEW_VERSION={}\nNEW_SIZE={}\n",
            self.last_checked_time,
            self.progress,
            self.current_op.as_str(),
            self.new_version.as_deref().unwrap_or("0.0.0.0"),
            self.new_size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coreos_format() {
        let s = Status::default();
        assert_eq!(
            s.to_text(),
            "LAST_CHECKED_TIME=0\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_IDLE\nNEW_VERSION=0.0.0.0\nNEW_SIZE=0\n"
        );
        let s = Status {
            last_checked_time: 1486394212,
            progress: 0.5,
            current_op: Operation::Downloading,
            new_version: Some("2.0.0".into()),
            new_size: 42,
            last_error: None,
        };
        assert!(s.to_text().contains("PROGRESS=0.500000\nCURRENT_OP=UPDATE_STATUS_DOWNLOADING\nNEW_VERSION=2.0.0\nNEW_SIZE=42\n"));
    }
}
