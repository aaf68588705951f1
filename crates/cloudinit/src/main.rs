//! `coreos-cloudinit`: fetch user data, validate all of it, then apply it.

use anyhow::{bail, Result};
use clap::Parser;
use cloudinit::apply::Target;
use cloudinit::datasource::{self, Datasource};
use cloudinit::UserData;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "coreos-cloudinit",
    about = "Apply cloud-config user data (coreos-cloudinit compatible)"
)]
struct Cli {
    /// Check the user data and report problems with their location; apply nothing.
    #[arg(long)]
    validate: bool,
    /// Read user data from a file.
    #[arg(long)]
    from_file: Option<PathBuf>,
    /// Read user data from a mounted config drive (openstack/latest/user_data).
    #[arg(long)]
    from_configdrive: Option<PathBuf>,
    /// Download user data from a URL.
    #[arg(long)]
    from_url: Option<String>,
    /// Download user data from the URL in `cloud-config-url=` on the kernel command line.
    #[arg(long)]
    from_proc_cmdline: bool,
    /// Download user data from EC2's metadata service (IMDSv2), at this base URL.
    #[arg(long, num_args = 0..=1, default_missing_value = "http://169.254.169.254/")]
    from_ec2_metadata: Option<String>,
    /// Download user data from GCE's metadata server, at this base URL.
    #[arg(long, num_args = 0..=1, default_missing_value = "http://metadata.google.internal/")]
    from_gce_metadata: Option<String>,
    /// Apply the OEM partition's `cloud-config.yml` from this directory first, then the user's.
    #[arg(long, num_args = 0..=1, default_missing_value = "/usr/share/oem")]
    oem: Option<PathBuf>,
    /// Remove the marker a failed run left (after fixing the user data) and exit.
    #[arg(long)]
    clear_failure: bool,
    /// Attempts per network fetch (with exponential backoff) before giving up.
    #[arg(long, default_value_t = 6)]
    fetch_attempts: u32,
    /// Apply into this root directory instead of the running system.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = cli.root.clone();
    if cli.clear_failure {
        cloudinit::failure::clear(&root)?;
        eprintln!("coreos-cloudinit: failure marker cleared");
        return Ok(());
    }
    let validate = cli.validate;
    if !validate {
        if let Some(previous) = cloudinit::failure::read(&root) {
            bail!(
                "a previous run failed and was not retried: {}fix the user data, then run coreos-cloudinit --clear-failure",
                previous
            );
        }
    }
    let result = run(cli);
    if let (Err(e), false) = (&result, validate) {
        cloudinit::failure::record(&root, &format!("{e:#}"))?;
    }
    result
}

fn run(cli: Cli) -> Result<()> {
    let retry = cloudinit::fetch::Retry {
        attempts: cli.fetch_attempts.max(1),
        ..Default::default()
    };
    let mut sources: Vec<Box<dyn Datasource>> = Vec::new();
    if let Some(f) = cli.from_file {
        sources.push(Box::new(datasource::File(f)));
    }
    if let Some(d) = cli.from_configdrive {
        sources.push(Box::new(datasource::ConfigDrive(d)));
    }
    if let Some(url) = cli.from_url {
        sources.push(Box::new(datasource::Url {
            url,
            retry: retry.clone(),
        }));
    }
    if cli.from_proc_cmdline {
        sources.push(Box::new(datasource::ProcCmdline {
            cmdline: "/proc/cmdline".into(),
            retry: retry.clone(),
        }));
    }
    if let Some(base) = cli.from_ec2_metadata {
        sources.push(Box::new(datasource::Ec2 {
            base,
            retry: retry.clone(),
        }));
    }
    if let Some(base) = cli.from_gce_metadata {
        sources.push(Box::new(datasource::Gce { base, retry }));
    }
    let oem = cli
        .oem
        .map(|dir| datasource::File(dir.join("cloud-config.yml")))
        .filter(|f| f.0.exists());
    if sources.is_empty() && oem.is_none() {
        bail!("name a source: --from-file, --from-configdrive, --from-url, --from-proc-cmdline, --from-ec2-metadata, --from-gce-metadata or --oem");
    }
    // Everything is fetched and validated before anything is applied: the OEM's config, then
    // (as coreos-cloudinit) the first source that has user data.
    let mut plan = Vec::new();
    if let Some(f) = &oem {
        if let Some(text) = f.user_data()? {
            plan.push(load(f, &text, cli.validate)?);
        }
    }
    for source in &sources {
        match source.user_data()? {
            Some(text) => {
                plan.push(load(source.as_ref(), &text, cli.validate)?);
                break;
            }
            None => {
                eprintln!("coreos-cloudinit: {} has no user data", source.name());
                // A cloud's metadata (addresses, the key pair) applies without user data too.
                let metadata = source.metadata()?;
                if !metadata.is_empty() {
                    plan.push((source.name(), UserData::Empty, metadata));
                    break;
                }
            }
        }
    }
    if cli.validate {
        for (name, _, _) in &plan {
            eprintln!("coreos-cloudinit: {name} is valid");
        }
        return Ok(());
    }
    let target = Target::new(&cli.root);
    for (name, data, metadata) in plan {
        if target.environment(&metadata)? {
            eprintln!("coreos-cloudinit: wrote COREOS_*_IPV4 to /etc/environment");
        }
        if !metadata.ssh_public_keys.is_empty() {
            target.authorize_keys_as("core", "coreos-metadata", &metadata.ssh_public_keys)?;
            eprintln!(
                "coreos-cloudinit: {name}: authorized {} instance SSH key(s) for core",
                metadata.ssh_public_keys.len()
            );
        }
        match data {
            UserData::Empty => eprintln!("coreos-cloudinit: {name}: empty user data"),
            UserData::Script(s) => {
                let p = target.script(&s)?;
                eprintln!(
                    "coreos-cloudinit: {name}: ran user-data script {}",
                    p.display()
                );
            }
            UserData::CloudConfig(c) => {
                for line in target.apply(&c)? {
                    eprintln!("coreos-cloudinit: {line}");
                }
            }
        }
    }
    Ok(())
}

/// Substitutes the source's metadata into its user data and validates it; problems are
/// reported, errors end the run before anything is applied.
fn load(
    source: &dyn Datasource,
    text: &str,
    validate: bool,
) -> Result<(String, UserData, datasource::Metadata)> {
    let name = source.name();
    let metadata = source.metadata()?;
    let text = datasource::substitute(text, &metadata);
    match UserData::parse(&text) {
        Ok((data, report)) => {
            for w in &report.problems {
                report_line(validate, &name, w);
            }
            Ok((name, data, metadata))
        }
        Err(report) => {
            for p in &report.problems {
                report_line(validate, &name, p);
            }
            bail!(
                "{name}: {} error(s), nothing applied",
                report.errors().count()
            );
        }
    }
}

/// `--validate` prints problems on stdout as coreos-cloudinit does; a run logs them to the journal.
fn report_line(validate: bool, source: &str, p: &cloudinit::validate::Problem) {
    if validate {
        println!("{p}");
    } else {
        eprintln!("coreos-cloudinit: {source}: {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
