//! Running external tools: argv items only (never a shell string), and a failure names the
//! command and shows the tail of its output instead of a wall of log.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How many lines of a failed command's output we show.
const TAIL_LINES: usize = 40;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> anyhow::Error {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    match crate::host::package_for_tool(&prog) {
        Some(pkg) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!(
                "`{prog}` not found: install the Debian package `{pkg}` (apt-get install {pkg})"
            )
        }
        _ => anyhow::Error::new(e).context(format!("starting `{}`", describe(cmd))),
    }
}

/// Runs a command, capturing its output; returns stdout. On failure the error carries the tail.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(cmd, e))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            tail(&text)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command for its effect.
pub fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs a long command with its output going to `log`, showing `label` with a line count and the
/// latest line as progress (a line every 30 s when not on a terminal). On failure: the log's tail.
pub fn run_logged(cmd: &mut Command, log: &Path, label: &str) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut logf = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(cmd, e))?;
    // Merge stderr into the same stream through a thread.
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let bar = crate::progress::spinner(label);
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut count = 0u64;
    for line in rx {
        count += 1;
        writeln!(logf, "{line}")?;
        bar.set_message(format!(
            "{count} lines: {}",
            line.chars().take(80).collect::<String>()
        ));
        if bar.is_hidden() && last_print.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  {label}: {}s, {count} lines: {}",
                start.elapsed().as_secs(),
                line.chars().take(100).collect::<String>()
            );
            last_print = Instant::now();
        }
    }
    let status = child.wait()?;
    bar.finish_and_clear();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        bail!(
            "`{}` failed ({status}); full log: {}\n{}",
            describe(cmd),
            log.display(),
            tail(&text)
        );
    }
    eprintln!(
        "  {label}: done in {}s (log: {})",
        start.elapsed().as_secs(),
        log.display()
    );
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}
