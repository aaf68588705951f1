mod build_kernel;
mod build_rootfs;
mod cache;
mod cmd;
mod host;
mod paths;
mod progress;
use clap::{Parser, Subcommand};
#[derive(Parser)]
struct Cli { #[command(subcommand)] verb: Verb }
#[derive(Subcommand)]
enum Verb { BuildKernel(build_kernel::BuildKernel), BuildRootfs(build_rootfs::BuildRootfs) }
fn main() -> anyhow::Result<()> {
    match Cli::parse().verb { Verb::BuildKernel(v) => v.run().map(|_| ()), Verb::BuildRootfs(v) => v.run().map(|_| ()) }
}
