//! Updates end to end: `ferro-update-server` on the host's 127.0.0.1 (the guest reaches it as
//! 10.0.2.2), images built as newer versions with `cargo xtask build-image --version`, and a v1
//! machine that updates itself as CoreOS does: update_engine checks, downloads, writes the other
//! USR slot, locksmithd reboots (REBOOT_STRATEGY=reboot), and `ferro-health` marks the new slot
//! good — or, for a release whose health check fails, rolls back by itself.

use image_tests::http::HOST_FROM_GUEST;
use image_tests::{image, run, workspace, Machine, Setup};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time for a reboot (or two) of a guest under TCG.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// `cargo`, as the test runner was started with.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace());
    c
}

/// Builds a release binary of the workspace and returns its path. It goes where `build-image`
/// builds the image's binaries (the checkout's `target/`), whose release build it shares.
fn release_binary(package: &str, bin: &str) -> PathBuf {
    let out = run(cargo()
        .env("CARGO_TARGET_DIR", workspace().join("target"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ]))
    .unwrap();
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == bin)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable {bin}"))
}

/// The signed payload of the image built as `version` (with `overlay` over its tree) into
/// `target/images/<name>/`; an unchanged build is reused.
fn build_release(name: &str, version: &str, overlay: Option<&Path>) -> PathBuf {
    // The two update tests run at once and both want v2: builds share `target/` (its staging
    // and the out dir), so they take turns, and the second finds the first's build unchanged.
    static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = workspace().join("target/images").join(name);
    let t = Instant::now();
    let mut c = cargo();
    c.args(["xtask", "build-image", "--version", version, "--out-dir"])
        .arg(&out_dir);
    if let Some(o) = overlay {
        c.arg("--extra-overlay").arg(o);
    }
    run(&mut c).unwrap();
    eprintln!("{name}: built {version} in {}s", t.elapsed().as_secs());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("image.json")).unwrap())
            .unwrap();
    assert_eq!(info["version"], version);
    PathBuf::from(info["payload"].as_str().unwrap())
}

/// `ferro-update-server serve` on a free port of 127.0.0.1, killed on drop.
struct UpdateServer {
    bin: PathBuf,
    child: Child,
    url: String,
}

impl UpdateServer {
    fn start(data: &Path) -> UpdateServer {
        let bin = release_binary("update", "ferro-update-server");
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address from ferro-update-server: {line:?}"))
            .to_string();
        UpdateServer { bin, child, url }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn admin(&self, args: &[&str]) -> String {
        run(Command::new(&self.bin)
            .arg("--server")
            .arg(&self.url)
            .args(args))
        .unwrap()
    }

    fn publish(&self, payload: &Path) {
        self.admin(&["publish", payload.to_str().unwrap(), "--channel", "stable"]);
    }

    fn instance(&self, machine_id: &str) -> serde_json::Value {
        let state: serde_json::Value = serde_json::from_str(&self.admin(&["status"])).unwrap();
        state["instances"][machine_id].clone()
    }

    /// Waits for the instance to reach `status`; returns the instance.
    fn wait_instance(&self, machine_id: &str, status: &str) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let i = self.instance(machine_id);
            if i["status"] == status {
                return i;
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "the server never saw {machine_id} {status}: {i}"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

impl Drop for UpdateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VERSION_ID` and the booted slot of the running system.
fn version_and_slot(m: &Machine) -> (String, String) {
    let v = m.ssh(". /usr/lib/os-release && echo $VERSION_ID").unwrap();
    let slot = m
        .ssh("tr ' ' '\\n' < /proc/cmdline | sed -n 's/^ferrocore.slot=//p'")
        .unwrap();
    (v, slot)
}

/// Waits for the boot to settle (mark-successful has run) and returns `ferro-slot show`.
fn settled_slots(m: &Machine) -> String {
    m.ssh("systemctl is-system-running --wait || true").unwrap();
    m.ssh("sudo ferro-slot show").unwrap()
}

/// The `ferro-slot show` line of a slot or its grubenv mirror, e.g. "USR-B" or "grubenv USR-B".
fn slot_line<'a>(show: &'a str, label: &str) -> &'a str {
    show.lines()
        .find(|l| {
            if label.starts_with("grubenv") {
                l.starts_with(label)
            } else {
                l.split_whitespace().nth(4) == Some(label)
            }
        })
        .unwrap_or_else(|| panic!("no {label} in {show}"))
}

/// The first MiB of a USR partition, hashed on the guest. (The loop's status is its last
/// `grep`'s; `grep .` makes it "a hash was printed".)
fn usr_head(m: &Machine, label: &str) -> String {
    m.ssh(&format!(
        "for d in /sys/class/block/*; do grep -qx PARTNAME={label} $d/uevent && \
         sudo head -c 1048576 /dev/${{d##*/}} | sha256sum; done | grep ."
    ))
    .unwrap()
}

/// A copy of `payload` with one byte of its initrd flipped: a mirror that altered the file.
fn tampered_copy(payload: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("tampered.payload");
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new("cp").arg("-r").arg(payload).arg(&out)).unwrap();
    let f = out.join("initrd.zst");
    let mut b = std::fs::read(&f).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x40;
    std::fs::write(&f, b).unwrap();
    out
}

/// Opt-in (`FERROCORE_SLOW_TESTS=1`): two image builds and four boots under TCG are well over
/// CI's budget for one test.
/// Polls `update_engine_client -status` until the slot write has passed `target` (or is over:
/// FINALIZING, UPDATED_NEED_REBOOT); returns the CURRENT_OP and PROGRESS last seen.
fn wait_for_write_progress(m: &Machine, target: f64) -> (String, f64) {
    let start = Instant::now();
    loop {
        let status = m
            .ssh("sudo update_engine_client -status")
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        let (op, progress) = (
            field("CURRENT_OP"),
            field("PROGRESS").parse().unwrap_or(0.0),
        );
        let writing = op == "UPDATE_STATUS_DOWNLOADING";
        if (writing && progress >= target)
            || op == "UPDATE_STATUS_FINALIZING"
            || op == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        {
            return (op, progress);
        }
        assert!(
            start.elapsed() < REBOOT_TIMEOUT,
            "the slot write never reached {target}: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn slow_tests() -> bool {
    let on = std::env::var_os("FERROCORE_SLOW_TESTS").is_some_and(|v| v == "1");
    if !on {
        eprintln!("skipped: set FERROCORE_SLOW_TESTS=1");
    }
    on
}

#[test]
fn updates_itself_then_rolls_back_a_release_that_fails_its_health_check() {
    if !slow_tests() {
        return;
    }
    let t0 = Instant::now();
    let v1 = image().version;
    let (v2, v3) = (format!("{v1}.2"), format!("{v1}.3"));
    let p2 = build_release("qemu-update-v2", &v2, None);
    let failing = workspace().join("tests/overlays/failing-health-check");
    let p3 = build_release("qemu-update-v3", &v3, Some(&failing));

    let work = image_tests::logs_dir("update-server");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let srv = UpdateServer::start(&work.join("data"));
    // First a tampered v2: refused before anything is written, and reported.
    srv.publish(&tampered_copy(&p2, &work));

    let server_url = format!("http://{HOST_FROM_GUEST}:{}/v1/update/", srv.port());
    let mut m = Machine::create(
        "update",
        Setup {
            user_data_extra: format!(
                "coreos:\n  update:\n    group: stable\n    server: {server_url}\n    reboot-strategy: reboot\n"
            ),
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();
    let id = m.ssh("cat /etc/machine-id").unwrap();
    assert_eq!(version_and_slot(&m), (v1.clone(), "A".into()));
    let fresh = settled_slots(&m);
    let fresh_b = usr_head(&m, "USR-B");

    let check = m
        .ssh("sudo update_engine_client -check_for_update")
        .unwrap();
    assert!(check.contains("Initiating update check"), "{check}");
    let i = srv.wait_instance(&id, "error");
    assert!(
        i["last_error"].as_str().unwrap_or("").contains("initrd"),
        "the refusal names the altered part: {i}"
    );
    assert_eq!(settled_slots(&m), fresh, "slot bits changed");
    assert_eq!(usr_head(&m, "USR-B"), fresh_b, "USR-B was written");
    eprintln!("tampered payload refused at {}s", t0.elapsed().as_secs());

    // The genuine v2: downloaded, written to USR-B, rebooted into by locksmithd, marked good.
    srv.publish(&p2);
    let boot1 = m.boot_id().unwrap();
    m.ssh("sudo update_engine_client -check_for_update")
        .unwrap();
    let boot2 = m.wait_boot(REBOOT_TIMEOUT, |_, id| id != boot1).unwrap();
    assert_eq!(version_and_slot(&m), (v2.clone(), "B".into()));
    let show = settled_slots(&m);
    assert!(
        slot_line(&show, "USR-B").contains("tries=0 successful=1"),
        "{show}"
    );
    assert!(
        slot_line(&show, "grubenv USR-B").contains("tries=0 successful=1"),
        "{show}"
    );
    assert_eq!(m.ssh("systemctl --failed --no-legend --plain").unwrap(), "");
    let i = srv.wait_instance(&id, "complete");
    assert_eq!(i["version"], v2.as_str(), "{i}");
    eprintln!("updated to {v2} at {}s", t0.elapsed().as_secs());

    // v3 fails its health check on USR-A: back to v2 on USR-B without anyone touching it.
    srv.publish(&p3);
    m.ssh("sudo update_engine_client -check_for_update")
        .unwrap();
    let mut seen_v3 = false;
    m.wait_boot(REBOOT_TIMEOUT, |m, id| {
        if id == boot2 {
            return false;
        }
        let (v, _) = version_and_slot(m);
        seen_v3 |= v == v3;
        v == v2
    })
    .unwrap();
    eprintln!(
        "back on {v2} at {}s (v3 seen over ssh on the way: {seen_v3})",
        t0.elapsed().as_secs()
    );
    assert_eq!(version_and_slot(&m), (v2.clone(), "B".into()));
    let show = settled_slots(&m);
    assert!(
        slot_line(&show, "USR-A").contains("priority=0 tries=0 successful=0"),
        "the failed slot never boots again: {show}"
    );
    assert!(slot_line(&show, "USR-B").contains("successful=1"), "{show}");
    // Boots so far: v1 on A, v2 on B, v3 on A, v2 on B again.
    let console = std::fs::read_to_string(m.dir.join("console.log")).unwrap();
    assert_eq!(
        console.matches("Ferrocore: booting USR-a").count(),
        2,
        "v3 was booted on USR-A once"
    );
    let i = srv.wait_instance(&id, "rolled-back");
    let why = i["last_error"].as_str().unwrap_or("");
    assert!(
        why.contains(&v3) && why.contains("this release is built to fail its health check"),
        "the report carries the check's output: {i}"
    );
    // The agent cleaned up after reporting, and v3 is not offered to this machine again.
    let out = m.ssh("sudo update_engine_client -update").unwrap();
    assert!(out.contains("no update"), "{out}");
    assert_eq!(
        m.ssh("sudo sh -c 'ls /var/lib/update_engine/*.json 2>/dev/null | wc -l'")
            .unwrap(),
        "0",
        "pending or rollback records left behind"
    );
    assert_eq!(version_and_slot(&m).0, v2);
    assert_eq!(m.ssh("systemctl --failed --no-legend --plain").unwrap(), "");
    eprintln!("done at {}s", t0.elapsed().as_secs());
}

/// `FERROCORE_SLOW_TESTS=1`: QEMU killed at random moments while update_engine writes USR-B
/// leaves a machine that boots its current version, and the update completes afterwards.
#[test]
fn power_cut_during_the_slot_write_boots_the_current_version() {
    if !slow_tests() {
        return;
    }
    let v1 = image().version;
    let v2 = format!("{v1}.2");
    let p2 = build_release("qemu-update-v2", &v2, None);
    let work = image_tests::logs_dir("update-cut-server");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let srv = UpdateServer::start(&work.join("data"));
    srv.publish(&p2);
    let server_url = format!("http://{HOST_FROM_GUEST}:{}/v1/update/", srv.port());
    let mut m = Machine::create(
        "update-cut",
        Setup {
            user_data_extra: format!(
                "coreos:\n  update:\n    server: {server_url}\n    reboot-strategy: off\n"
            ),
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();
    let id = m.ssh("cat /etc/machine-id").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut expect = (v1.clone(), "A".to_string());
    let mut mid_write_cuts = 0;
    for round in 0..3u32 {
        m.ssh("sudo update_engine_client -check_for_update")
            .unwrap();
        if round == 0 {
            // The download is complete when the server hears UpdateDownloadFinished: the slot
            // write starts right after. Later rounds find the files already downloaded.
            srv.wait_instance(&id, "downloaded");
        }
        // A random point of the slot write (which update_engine shows as DOWNLOADING, as on
        // CoreOS), between 5% and 90% of it.
        let target = 0.05 + f64::from(nanos.rotate_left(round * 7) % 850) / 1000.0;
        let (op, progress) = wait_for_write_progress(&m, target);
        eprintln!("round {round}: power cut at {op} {progress:.3} (aimed at {target:.3})");
        m.kill();
        if op == "UPDATE_STATUS_DOWNLOADING" && progress < 1.0 {
            mid_write_cuts += 1;
        }
        m.boot().unwrap();
        if op == "UPDATE_STATUS_UPDATED_NEED_REBOOT" {
            // The write had finished: the new slot is tried, as after any update.
            expect = (v2.clone(), "B".into());
        }
        assert_eq!(version_and_slot(&m), expect);
        let show = settled_slots(&m);
        let booted = format!("USR-{}", expect.1);
        assert!(slot_line(&show, &booted).contains("successful=1"), "{show}");
        assert_eq!(m.ssh("systemctl --failed --no-legend --plain").unwrap(), "");
        if expect.0 == v2 {
            break;
        }
    }
    assert!(
        mid_write_cuts > 0,
        "no power cut landed inside the slot write"
    );
    if expect.0 == v2 {
        return;
    }
    // And the update still goes through afterwards.
    let out = m.ssh("sudo update_engine_client -update").unwrap();
    assert!(out.contains(&format!("installed {v2}")), "{out}");
}
