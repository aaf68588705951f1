//! `cargo xtask build-kernel`: an x86_64 bzImage from Debian's linux-source-6.1, `make tinyconfig`
//! plus `kernel-config/*.config`, everything built in. Cached by the hash of source + fragments.

use crate::{cache, cmd, host, paths};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";
/// Bump when the recipe below changes in a way the inputs do not show.
const RECIPE: &str = "kernel-v1";

#[derive(clap::Args, Default)]
pub struct BuildKernel {
    /// Kernel source: a tarball or an unpacked tree (default: Debian's linux-source-6.1).
    #[arg(long)]
    pub source: Option<PathBuf>,
}

/// What a kernel build produces.
pub struct Kernel {
    pub bzimage: PathBuf,
    /// Cache key: changes whenever the kernel does.
    pub key: String,
}

impl BuildKernel {
    pub fn run(self) -> Result<Kernel> {
        host::ensure(&[host::KERNEL])?;
        let source = self.source.unwrap_or_else(|| DEFAULT_SOURCE.into());
        let fragments = fragments()?;
        eprintln!("kernel: hashing {}", source.display());
        let mut key = cache::Key::new(RECIPE);
        if source.is_dir() {
            key.add_tree(&source)?;
        } else {
            key.add_file(&source)?;
        }
        for f in &fragments {
            key.add_file(f)?;
        }
        let key = key.finish();
        let dir = cache::get_or_build("kernel", &key, |out| build(&source, &fragments, &key, out))?;
        let kernel = Kernel {
            bzimage: dir.join("bzImage"),
            key,
        };
        println!("kernel: {}", kernel.bzimage.display());
        Ok(kernel)
    }
}

fn fragments() -> Result<Vec<PathBuf>> {
    let dir = paths::root().join("kernel-config");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    v.retain(|p| p.extension().is_some_and(|e| e == "config"));
    v.sort();
    Ok(v)
}

fn build(source: &Path, fragments: &[PathBuf], key: &str, out: &Path) -> Result<()> {
    let work = paths::target().join("kernel");
    let src = if source.is_dir() {
        source.to_path_buf()
    } else {
        unpack(source, &work)?
    };
    // The build tree is keyed too, so an interrupted build resumes where it stopped.
    let obj = work.join(format!("build-{key}"));
    std::fs::create_dir_all(&obj)?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&src)
            .arg(format!("O={}", obj.display()))
            .arg("ARCH=x86_64");
        c.args(args);
        c
    };
    cmd::run(&mut make(&["tinyconfig"]))?;
    cmd::run(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(&obj)
            .arg(obj.join(".config"))
            .args(fragments),
    )?;
    cmd::run(&mut make(&["olddefconfig"]))?;
    let final_config = std::fs::read_to_string(obj.join(".config"))?;
    let mut wanted = BTreeMap::new();
    for f in fragments {
        wanted.extend(parse_config(&std::fs::read_to_string(f)?));
    }
    check_options(&wanted, &parse_config(&final_config))?;
    check_docker(&obj.join(".config"), &work)?;

    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cmd::run_logged(
        &mut make(&[&format!("-j{jobs}"), "bzImage"]),
        &work.join("build.log"),
        "kernel: make bzImage",
    )?;
    std::fs::copy(obj.join("arch/x86/boot/bzImage"), out.join("bzImage"))?;
    std::fs::copy(obj.join(".config"), out.join("config"))?;
    Ok(())
}

/// Unpacks a source tarball once per content (a stamp marks a complete unpack).
fn unpack(tarball: &Path, work: &Path) -> Result<PathBuf> {
    let digest = cache::hash_file(tarball)?;
    let dir = work.join(format!("src-{}", &digest[..16]));
    let stamp = dir.join(".ferrocore-unpacked");
    if stamp.exists() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "kernel: unpacking {} into {}",
        tarball.display(),
        dir.display()
    );
    cmd::run(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&dir)
            .arg("--strip-components=1"),
    )?;
    std::fs::write(&stamp, digest)?;
    Ok(dir)
}

/// `CONFIG_X=v` and `# CONFIG_X is not set` lines, as name → value ("n" for not set).
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                map.insert(name.to_string(), "n".to_string());
            }
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                map.insert(name.to_string(), value.to_string());
            }
        }
    }
    map
}

/// Every option a fragment asks for must hold in the final config: Kconfig drops options
/// silently when a dependency is off.
pub fn check_options(
    wanted: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Result<()> {
    let mut bad = Vec::new();
    for (name, want) in wanted {
        let have = got.get(name).map(String::as_str).unwrap_or("n");
        if have != want {
            bad.push(format!("  {name}: asked for {want}, got {have}"));
        }
    }
    if !bad.is_empty() {
        bail!(
            "the kernel dropped options asked for in kernel-config/ (a dependency is off?):\n{}",
            bad.join("\n")
        );
    }
    Ok(())
}

/// Runs Docker's own `contrib/check-config.sh` (from Debian's docker.io package) on the config
/// and fails if anything in its "Generally Necessary" section is missing.
fn check_docker(config: &Path, work: &Path) -> Result<()> {
    let script = docker_check_script(work)?;
    let out = Command::new("bash")
        .arg(&script)
        .arg(config)
        .output()
        .context("running docker's check-config.sh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let missing = docker_missing(&text);
    if !missing.is_empty() {
        bail!(
            "docker's check-config.sh: generally necessary options missing: {}",
            missing.join(", ")
        );
    }
    eprintln!("kernel: docker check-config.sh: every generally necessary option is enabled");
    Ok(())
}

/// Names the script marks missing between "Generally Necessary:" and "Optional Features:"
/// (host-only lines such as the cgroup mount are not about the config and are skipped).
fn docker_missing(report: &str) -> Vec<String> {
    let mut in_section = false;
    let mut missing = Vec::new();
    for line in report.lines() {
        // The script colours its output; strip ANSI escapes.
        let plain: String = strip_ansi(line);
        if plain.starts_with("Generally Necessary") {
            in_section = true;
            continue;
        }
        if plain.starts_with("Optional Features") {
            break;
        }
        if in_section
            && plain.contains("missing")
            && !plain.contains("cgroup hierarchy")
            && !plain.contains("apparmor")
        {
            if let Some(name) = plain.trim_start_matches(['-', ' ']).split(':').next() {
                missing.push(name.trim().to_string());
            }
        }
    }
    missing
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn docker_check_script(work: &Path) -> Result<PathBuf> {
    let installed = PathBuf::from("/usr/share/docker.io/contrib/check-config.sh");
    if installed.exists() {
        return Ok(installed);
    }
    let dir = work.join("docker-deb");
    let script = dir.join("usr/share/docker.io/contrib/check-config.sh");
    if script.exists() {
        return Ok(script);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("kernel: fetching docker.io's check-config.sh (apt-get download docker.io)");
    let download = || {
        cmd::run(
            Command::new("apt-get")
                .args(["download", "docker.io"])
                .current_dir(&dir),
        )
    };
    if download().is_err() {
        // A machine whose package lists were never fetched: fetch them once and retry.
        cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
        download()?;
    }
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download docker.io left no .deb")?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_option_is_named() {
        let wanted = parse_config("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n");
        let got = parse_config("CONFIG_A=y\n# CONFIG_B is not set\n");
        let err = check_options(&wanted, &got).unwrap_err().to_string();
        assert!(err.contains("CONFIG_B: asked for y, got n"), "{err}");
        assert!(!err.contains("CONFIG_A"));
        assert!(!err.contains("CONFIG_C"));
    }

    #[test]
    fn fragments_parse_and_are_all_builtin() {
        for f in fragments().unwrap() {
            let text = std::fs::read_to_string(&f).unwrap();
            for (name, value) in parse_config(&text) {
                assert!(
                    value != "m",
                    "{}: {name}=m, but we build no modules",
                    f.display()
                );
            }
        }
    }

    #[test]
    fn docker_report_parsing() {
        let report = "Generally Necessary:\n- cgroup hierarchy: nonexistent??\n- \u{1b}[1mCONFIG_VETH\u{1b}[0m: \u{1b}[31mmissing\u{1b}[0m\n- CONFIG_BRIDGE: enabled\nOptional Features:\n- CONFIG_X: missing\n";
        assert_eq!(docker_missing(report), vec!["CONFIG_VETH".to_string()]);
    }
}
