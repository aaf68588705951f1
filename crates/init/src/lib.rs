//! Initrd glue, in small pieces: read the kernel command line, find partitions through sysfs,
//! mount the verity-backed `/usr` and ROOT, prepare ROOT on first boot, and switch to systemd.

pub mod boot;
pub mod cmdline;
pub mod firstboot;
pub mod live;
pub mod log;
pub mod partitions;
