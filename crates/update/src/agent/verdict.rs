//! The end of every boot (`ferro-health run`, from `ferrocore-mark-successful.service` once
//! multi-user.target is reached): run the health checks, then keep or give up the booted slot.
//!
//! - healthy, slot on trial → mark it successful (GPT bits + grubenv) and report the update done;
//! - unhealthy, slot on trial, the other slot known good → roll back: the booted slot never boots
//!   again, the other boots next; the failure is recorded in
//!   `/var/lib/update_engine/rollback.json`, reported to the server now if it answers (else by
//!   update_engine after the reboot), and the machine reboots;
//! - unhealthy on a slot that is already known good (or with nothing to go back to) → nothing
//!   changes on disk; the failure is logged and the unit fails.

use super::engine::{Agent, STATE_DIR};
use super::health::{self, CheckResult};
use gptprio::{Slot, SlotState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ROLLBACK_FILE: &str = "rollback.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A slot on trial passed: mark it successful.
    MarkSuccessful,
    /// Known good already and still healthy: nothing to write.
    AlreadyGood,
    /// A slot on trial failed and the other slot is known good: go back to it.
    RollBack { to: Slot },
    /// Unhealthy, but there is no better slot to boot (the booted one is known good, or the
    /// other is not): keep it, report the failure.
    KeepUnhealthy,
}

/// The rule, from the booted slot's state, the other slot's and the health checks' outcome.
pub fn decide(booted: Slot, booted_st: SlotState, other_st: SlotState, healthy: bool) -> Verdict {
    match (healthy, booted_st.successful) {
        (true, false) => Verdict::MarkSuccessful,
        (true, true) => Verdict::AlreadyGood,
        (false, true) => Verdict::KeepUnhealthy,
        (false, false) => match gptprio::roll_back(booted_st, other_st) {
            Some(_) => Verdict::RollBack { to: booted.other() },
            None => Verdict::KeepUnhealthy,
        },
    }
}

/// What a rollback leaves for the next boot's update_engine to report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rollback {
    /// The version that failed (the one booted when the checks ran).
    pub version: String,
    pub from_slot: String,
    pub to_slot: String,
    /// Failed checks, each with its output.
    pub reason: String,
    pub checks: Vec<CheckResult>,
    /// Whether the server got the RolledBack event before the reboot.
    pub reported: bool,
}

impl Rollback {
    pub fn path(root: &Path) -> PathBuf {
        root.join(STATE_DIR).join(ROLLBACK_FILE)
    }

    pub fn load(root: &Path) -> Option<Rollback> {
        let text = std::fs::read_to_string(Rollback::path(root)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let path = Rollback::path(root);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&f, self).map_err(std::io::Error::other)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Slot(#[from] gptprio::Error),
    #[error(transparent)]
    Agent(#[from] super::engine::Error),
    #[error("recording the rollback in {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub slot: Slot,
    pub checks: Vec<CheckResult>,
}

impl Outcome {
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Runs the checks and acts on the verdict. `checks` are the results so far (e.g. systemd's
/// failed units); the health.d checks are added. The caller reboots after a rollback.
pub fn run(
    agent: &Agent,
    mut checks: Vec<CheckResult>,
    timeout: std::time::Duration,
) -> Result<Outcome, Error> {
    checks.extend(health::run_all(&health::discover(&agent.root), timeout));
    let healthy = checks.iter().all(|c| c.passed);
    let slot = agent.booted_slot()?;
    let mut disk = gptprio::Disk::open(&agent.disk, true)?;
    let (booted_st, other_st) = (disk.slot(slot)?, disk.slot(slot.other())?);
    let verdict = decide(slot, booted_st, other_st, healthy);
    tracing::info!(%slot, ?booted_st, ?other_st, healthy, ?verdict, "boot verdict");
    match verdict {
        Verdict::AlreadyGood => {}
        Verdict::MarkSuccessful => {
            disk.mark_successful(slot)?;
            disk.write()?;
            // The update is done once the slot is good: tell the server now.
            agent.report_boot_outcome()?;
        }
        Verdict::KeepUnhealthy => {
            tracing::error!(
                "{slot} is unhealthy but there is no known-good slot to go back to: keeping it\n{}",
                health::summary(&checks)
            );
        }
        Verdict::RollBack { to } => {
            let mut record = Rollback {
                version: agent.running_version()?,
                from_slot: slot.label().into(),
                to_slot: to.label().into(),
                reason: health::summary(&checks),
                checks: checks.clone(),
                reported: false,
            };
            // Recorded before the slot bits change, so the next boot always knows why.
            let save = |r: &Rollback| {
                r.save(&agent.root).map_err(|source| Error::Record {
                    path: Rollback::path(&agent.root),
                    source,
                })
            };
            save(&record)?;
            disk.roll_back(slot)?;
            disk.write()?;
            tracing::error!(
                "rolled back from {slot} ({}) to {to}: {}",
                record.version,
                record.reason
            );
            if agent.report_rollback(&record) {
                record.reported = true;
                save(&record)?;
            }
        }
    }
    Ok(Outcome {
        verdict,
        slot,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(priority: u8, tries: u8, successful: bool) -> SlotState {
        SlotState {
            priority,
            tries,
            successful,
        }
    }

    #[test]
    fn verdicts() {
        let good = st(1, 0, true);
        let trial = st(2, 0, false);
        assert_eq!(decide(Slot::B, trial, good, true), Verdict::MarkSuccessful);
        assert_eq!(
            decide(Slot::B, trial, good, false),
            Verdict::RollBack { to: Slot::A }
        );
        assert_eq!(
            decide(Slot::A, trial, good, false),
            Verdict::RollBack { to: Slot::B }
        );
        assert_eq!(
            decide(Slot::A, good, SlotState::default(), true),
            Verdict::AlreadyGood
        );
        // A known-good slot is never given up for a failed check.
        assert_eq!(
            decide(Slot::A, good, st(2, 0, true), false),
            Verdict::KeepUnhealthy
        );
        // Nothing known good to go back to.
        assert_eq!(
            decide(Slot::B, trial, SlotState::default(), false),
            Verdict::KeepUnhealthy
        );
    }
}
