//! The initrd's PID 1. On any fatal error it says what failed on the console and reboots after a
//! delay (`ferrocore.fatal_delay=SECONDS`, default 10), so a broken slot falls back to the other
//! one through GRUB's tries counter instead of hanging silently.

use init::{boot, cmdline::Cmdline, log};
use std::time::Duration;

fn main() {
    let cmdline = match boot::mount_early() {
        Ok(()) => Cmdline::read(),
        Err(e) => {
            log::fatal(&format!("{e:#}"));
            Cmdline::default()
        }
    };
    if let Err(e) = boot::run(&cmdline) {
        log::fatal(&format!("{e:#}"));
        let delay = cmdline.fatal_delay();
        log::info(&format!("rebooting in {delay} seconds"));
        std::thread::sleep(Duration::from_secs(delay));
        boot::reboot();
    }
}
