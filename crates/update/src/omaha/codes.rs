//! Event codes of Omaha v3 as update_engine reports them (`eventtype`, `eventresult`).

/// The subset of Omaha event types update_engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EventType {
    Unknown = 0,
    DownloadComplete = 1,
    InstallComplete = 2,
    UpdateComplete = 3,
    UpdateDownloadStarted = 13,
    UpdateDownloadFinished = 14,
    /// Ferrocore: the new slot failed its health checks or never booted; the old one runs.
    RolledBack = 800,
}

impl EventType {
    pub fn from_code(c: u32) -> Option<EventType> {
        use EventType::*;
        [
            Unknown,
            DownloadComplete,
            InstallComplete,
            UpdateComplete,
            UpdateDownloadStarted,
            UpdateDownloadFinished,
            RolledBack,
        ]
        .into_iter()
        .find(|t| *t as u32 == c)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EventResult {
    Error = 0,
    Success = 1,
    SuccessReboot = 2,
    Cancelled = 4,
    ErrorInstallerOther = 6,
    NoUpdate = 7,
    UpdateDeferred = 9,
}

impl EventResult {
    pub fn from_code(c: u32) -> Option<EventResult> {
        use EventResult::*;
        [
            Error,
            Success,
            SuccessReboot,
            Cancelled,
            ErrorInstallerOther,
            NoUpdate,
            UpdateDeferred,
        ]
        .into_iter()
        .find(|r| *r as u32 == c)
    }

    pub fn is_error(self) -> bool {
        matches!(self, EventResult::Error | EventResult::ErrorInstallerOther)
    }
}
