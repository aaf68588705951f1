//! `cargo xtask bench [build] [boot] [update] [store]`: figures next to a peer measured in the same
//! run on the same machine (these machines are noisy: read the ratios, not the absolute times).

mod boot;
mod build;
mod peer;
mod store;
mod update;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Bench {
    /// Which benchmarks: build, boot, update, store (default: build and boot).
    which: Vec<String>,
}

/// One row of the printed table.
pub struct Row {
    pub what: String,
    pub ours: String,
    pub peer: String,
    pub ratio: Option<f64>,
}

impl Row {
    pub fn new(what: &str, ours: String, peer: String, ratio: Option<f64>) -> Row {
        Row {
            what: what.into(),
            ours,
            peer,
            ratio,
        }
    }
}

pub fn secs(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

impl Bench {
    pub fn run(self) -> Result<()> {
        let which = if self.which.is_empty() {
            vec!["build".into(), "boot".into()]
        } else {
            self.which
        };
        let mut rows = Vec::new();
        for w in &which {
            match w.as_str() {
                "build" => rows.extend(build::run()?),
                "boot" => rows.extend(boot::run()?),
                "update" => rows.extend(update::run()?),
                "store" => rows.extend(store::run()?),
                other => bail!("unknown benchmark `{other}` (build, boot, update)"),
            }
        }
        print_table(&rows);
        Ok(())
    }
}

fn print_table(rows: &[Row]) {
    let w0 = rows.iter().map(|r| r.what.len()).max().unwrap_or(0).max(9);
    let w1 = rows.iter().map(|r| r.ours.len()).max().unwrap_or(0).max(9);
    let w2 = rows.iter().map(|r| r.peer.len()).max().unwrap_or(0).max(4);
    println!(
        "| {:w0$} | {:w1$} | {:w2$} | ours/peer |",
        "benchmark", "Ferrocore", "peer"
    );
    println!(
        "|{}|{}|{}|-----------|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for r in rows {
        let ratio = r
            .ratio
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "".into());
        println!(
            "| {:w0$} | {:w1$} | {:w2$} | {ratio:>9} |",
            r.what, r.ours, r.peer
        );
    }
}
