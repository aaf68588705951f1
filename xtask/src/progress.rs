//! Progress display for long steps (kernel build, rootfs, image writes).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A spinner on a terminal; hidden (callers print periodic lines instead) when stderr is not one.
pub fn spinner(label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("  {spinner} {prefix} [{elapsed}] {wide_msg}")
            .expect("valid template"),
    );
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
