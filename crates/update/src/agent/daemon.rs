//! The `update_engine` daemon: a worker thread runs update checks (a delay after start, then
//! about hourly with ±10% jitter, and whenever a client asks) and offline installs one at a time;
//! the control socket answers status at once and hands work to the worker.

use super::config::UpdateConf;
use super::engine::{Agent, Outcome};
use super::ipc::{Reply, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Schedule {
    pub initial_delay: Duration,
    pub interval: Duration,
}

enum Work {
    Check(Option<mpsc::Sender<Reply>>),
    Apply(std::path::PathBuf, bool, mpsc::Sender<Reply>),
}

/// `interval` ± 10%, so a fleet does not check in lockstep.
pub fn jittered(interval: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    let r = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX); // 0..1
    interval.mul_f64(0.9 + 0.2 * r)
}

fn reply(agent: &Agent, r: Result<Outcome, super::engine::Error>) -> Reply {
    let (result, error) = match r {
        Ok(Outcome::NoUpdate) => (Some("no update".to_string()), None),
        Ok(Outcome::Installed { version }) => (Some(format!("installed {version}")), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Reply {
        status: agent.status(),
        result,
        error,
    }
}

/// As on CoreOS, update_engine never reboots: locksmithd does, by REBOOT_STRATEGY.
fn after_install(agent: &Agent, r: &Result<Outcome, super::engine::Error>) {
    if let Ok(Outcome::Installed { version }) = r {
        let strategy = UpdateConf::load(&agent.root)
            .map(|c| c.reboot_strategy.as_str())
            .unwrap_or("unreadable");
        tracing::info!(
            "{version} installed; the reboot is locksmithd's (REBOOT_STRATEGY={strategy})"
        );
    }
}

fn worker(agent: Arc<Agent>, schedule: Schedule, rx: mpsc::Receiver<Work>) {
    let mut next = Instant::now() + schedule.initial_delay;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let work = match rx.recv_timeout(wait) {
            Ok(w) => w,
            Err(mpsc::RecvTimeoutError::Timeout) => Work::Check(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match work {
            Work::Check(tx) => {
                // An outcome that had to wait (the slot marked good later in the boot, or the
                // server unreachable at start) goes out before the next check.
                if let Err(e) = agent.report_boot_outcome() {
                    tracing::warn!("reporting the last update's outcome: {e}");
                }
                let r = agent.check();
                if let Err(e) = &r {
                    tracing::warn!("update check: {e}");
                }
                after_install(&agent, &r);
                next = Instant::now() + jittered(schedule.interval);
                if let Some(tx) = tx {
                    let _ = tx.send(reply(&agent, r));
                }
            }
            Work::Apply(dir, allow_downgrade, tx) => {
                let r = agent.apply_offline(&dir, allow_downgrade);
                after_install(&agent, &r);
                let _ = tx.send(reply(&agent, r));
            }
        }
    }
}

fn handle(agent: &Agent, work: &mpsc::Sender<Work>, stream: UnixStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let out = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            status: agent.status(),
            result: None,
            error: Some(format!("not a request: {e}")),
        },
        Ok(Request::Status) => Reply {
            status: agent.status(),
            result: None,
            error: None,
        },
        Ok(Request::Check { wait: false }) => {
            let _ = work.send(Work::Check(None));
            Reply {
                status: agent.status(),
                result: Some("check started".into()),
                error: None,
            }
        }
        Ok(Request::Check { wait: true }) => {
            let (tx, rx) = mpsc::channel();
            let _ = work.send(Work::Check(Some(tx)));
            rx.recv().unwrap_or_else(|_| gone(agent))
        }
        Ok(Request::Apply {
            dir,
            allow_downgrade,
        }) => {
            let (tx, rx) = mpsc::channel();
            let _ = work.send(Work::Apply(dir, allow_downgrade, tx));
            rx.recv().unwrap_or_else(|_| gone(agent))
        }
    };
    let mut text = serde_json::to_string(&out).expect("reply serialises");
    text.push('\n');
    (&stream).write_all(text.as_bytes())
}

fn gone(agent: &Agent) -> Reply {
    Reply {
        status: agent.status(),
        result: None,
        error: Some("the update worker stopped".into()),
    }
}

/// Serves the control socket forever.
pub fn run(agent: Agent, schedule: Schedule, listener: UnixListener) {
    if let Err(e) = agent.report_boot_outcome() {
        tracing::warn!("reporting the last update's outcome: {e}");
    }
    let agent = Arc::new(agent);
    let (tx, rx) = mpsc::channel();
    let a = agent.clone();
    std::thread::spawn(move || worker(a, schedule, rx));
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let (a, tx) = (agent.clone(), tx.clone());
                std::thread::spawn(move || {
                    if let Err(e) = handle(&a, &tx, s) {
                        tracing::warn!("control socket: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("control socket: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let hour = Duration::from_secs(3600);
        let got: Vec<Duration> = (0..200).map(|_| jittered(hour)).collect();
        assert!(got
            .iter()
            .all(|d| *d >= hour.mul_f64(0.9) && *d <= hour.mul_f64(1.1)));
        let (min, max) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        assert!(*max - *min > Duration::from_secs(300), "{min:?}..{max:?}");
    }
}
