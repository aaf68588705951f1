//! `cargo xtask <verb>`: the Ferrocore build system. One module per verb; shared plumbing in
//! `cmd` (running tools), `host` (Debian packages), `cache` (content-addressed artefacts).

mod bench;
mod build_image;
mod build_kernel;
mod build_rootfs;
mod cache;
mod ci;
mod cmd;
mod host;
mod keygen;
mod paths;
mod progress;
mod qemu;
mod test;
mod upload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, boot and test Ferrocore images")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Build the x86_64 kernel (cached by content hash).
    BuildKernel(build_kernel::BuildKernel),
    /// Build the Debian root filesystem that becomes /usr (cached by manifest hash).
    BuildRootfs(build_rootfs::BuildRootfs),
    /// Build kernel, rootfs, daemons and the disk image.
    BuildImage(build_image::BuildImage),
    /// Boot an image under QEMU with the serial console here and ssh on 127.0.0.1.
    Qemu(qemu::Qemu),
    /// Boot fresh copies of the image and check them from outside.
    Test(test::Test),
    /// Benchmarks against a peer measured in the same run: build, boot.
    Bench(bench::Bench),
    /// Make an ed25519 key pair for signing update payloads.
    Keygen(keygen::Keygen),
    /// Publish a built image in a cloud: `upload ec2` (AMI), `upload gce` (Compute image).
    Upload(upload::Upload),
    /// Everything CI runs: host packages, fmt, clippy, unit tests, image build, image tests.
    Ci(ci::Ci),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.verb {
        Verb::BuildKernel(v) => v.run().map(|_| ()),
        Verb::BuildRootfs(v) => v.run().map(|_| ()),
        Verb::BuildImage(v) => v.run().map(|_| ()),
        Verb::Qemu(v) => v.run(),
        Verb::Test(v) => v.run(),
        Verb::Ci(v) => v.run(),
        Verb::Bench(v) => v.run(),
        Verb::Keygen(v) => v.run(),
        Verb::Upload(v) => v.run(),
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
