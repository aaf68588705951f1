//! The binary as a user runs it: an invalid config applies nothing and leaves a marker; the next
//! run refuses until the marker is cleared; then a good config applies.

use std::path::Path;
use std::process::{Command, Output};

fn cloudinit(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coreos-cloudinit"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn failure_is_loud_persistent_and_not_silently_retried() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(
        r.join("etc/passwd"),
        "core:x:500:500::/home/core:/bin/bash\n",
    )
    .unwrap();
    let bad = r.join("bad.yml");
    std::fs::write(
        &bad,
        "#cloud-config\nhostname: ok\nwrite_files:\n  - path: relative/file\n",
    )
    .unwrap();
    let good = r.join("good.yml");
    std::fs::write(&good, "#cloud-config\nhostname: good-host\n").unwrap();

    let validate = cloudinit(r, &["--validate", "--from-file", bad.to_str().unwrap()]);
    assert_eq!(validate.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&validate.stdout),
        "line 4, column 11: error: invalid value \"relative/file\" for \"write_files[0].path\": must be an absolute path\n"
    );
    assert!(
        !r.join("var/lib/coreos-cloudinit/failed").exists(),
        "--validate leaves no marker"
    );

    let out = cloudinit(r, &["--from-file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        !r.join("etc/hostname").exists(),
        "an invalid config applies nothing"
    );
    assert!(
        std::fs::read_to_string(r.join("etc/motd.d/coreos-cloudinit"))
            .unwrap()
            .contains("FAILED")
    );

    let again = cloudinit(r, &["--from-file", good.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("previous run failed"));
    assert!(!r.join("etc/hostname").exists());

    assert!(cloudinit(r, &["--clear-failure"]).status.success());
    let ok = cloudinit(r, &["--from-file", good.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "good-host\n"
    );
}

#[test]
fn validate_exit_status_is_error_vs_warnings() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let warn = r.join("warn.yml");
    std::fs::write(&warn, "#cloud-config\nhostnme: typo\n").unwrap();
    let out = cloudinit(r, &["--validate", "--from-file", warn.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 2, column 1: warning: unrecognized key \"hostnme\"\n"
    );
    let syntax = r.join("syntax.yml");
    std::fs::write(&syntax, "#cloud-config\nusers: [\n").unwrap();
    let out = cloudinit(r, &["--validate", "--from-file", syntax.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("line 3, column 1: error: YAML syntax")
    );
}

#[test]
fn first_source_with_user_data_wins() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    let drive = r.join("drive");
    std::fs::create_dir_all(&drive).unwrap();
    let file = r.join("user.yml");
    std::fs::write(&file, "#cloud-config\nhostname: from-file\n").unwrap();
    let out = cloudinit(
        r,
        &[
            "--from-configdrive",
            drive.to_str().unwrap(),
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "from-file\n"
    );
}

#[test]
fn oem_config_applies_first_and_nothing_applies_when_either_is_invalid() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(
        r.join("etc/passwd"),
        "core:x:500:500::/home/core:/bin/bash\n",
    )
    .unwrap();
    let oem = r.join("oem");
    std::fs::create_dir_all(&oem).unwrap();
    std::fs::write(
        oem.join("cloud-config.yml"),
        "#cloud-config\nhostname: oem-host\nwrite_files:\n  - path: /etc/oem-file\n    content: from the OEM\n",
    )
    .unwrap();
    let bad = r.join("bad.yml");
    std::fs::write(
        &bad,
        "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: later\n",
    )
    .unwrap();
    let user = r.join("user.yml");
    std::fs::write(&user, "#cloud-config\nhostname: user-host\n").unwrap();
    let oem_arg = format!("--oem={}", oem.display());

    let out = cloudinit(r, &[&oem_arg, "--from-file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        !r.join("etc/oem-file").exists(),
        "a bad user config must stop the OEM's too"
    );
    let clear = cloudinit(r, &["--clear-failure"]);
    assert!(clear.status.success());

    let out = cloudinit(r, &[&oem_arg, "--from-file", user.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/oem-file")).unwrap(),
        "from the OEM"
    );
    // The user's config runs second, so its hostname wins.
    assert_eq!(
        std::fs::read_to_string(r.join("etc/hostname"))
            .unwrap()
            .trim(),
        "user-host"
    );
}
