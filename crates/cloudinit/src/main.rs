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
    /// Apply into this root directory instead of the running system.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let source: Box<dyn Datasource> = match (cli.from_file, cli.from_configdrive) {
        (Some(f), None) => Box::new(datasource::File(f)),
        (None, Some(d)) => Box::new(datasource::ConfigDrive(d)),
        _ => bail!("name exactly one source: --from-file or --from-configdrive"),
    };
    let Some(text) = source.user_data()? else {
        eprintln!("coreos-cloudinit: {} has no user data", source.name());
        return Ok(());
    };
    let (data, report) = match UserData::parse(&text) {
        Ok(r) => r,
        Err(e) => bail!("{}: invalid user data, nothing applied: {e}", source.name()),
    };
    for w in &report.warnings {
        eprintln!("coreos-cloudinit: warning: {w}");
    }
    for e in &report.errors {
        eprintln!("coreos-cloudinit: error: {e}");
    }
    if !report.errors.is_empty() {
        bail!(
            "{}: {} error(s), nothing applied",
            source.name(),
            report.errors.len()
        );
    }
    if cli.validate {
        eprintln!("coreos-cloudinit: {} is valid", source.name());
        return Ok(());
    }
    let target = Target::new(&cli.root);
    match data {
        UserData::Empty => eprintln!("coreos-cloudinit: empty user data"),
        UserData::Script(s) => {
            let p = target.script(&s)?;
            eprintln!("coreos-cloudinit: ran user-data script {}", p.display());
        }
        UserData::CloudConfig(c) => {
            for line in target.apply(&c)? {
                eprintln!("coreos-cloudinit: {line}");
            }
        }
    }
    Ok(())
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
