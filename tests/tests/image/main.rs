//! The image tests, in one binary so that `--test-threads=2` boots two guests at a time.

mod boot;
mod cloud;
mod cloudinit;
mod cloudinit_url;
mod docker;
mod iso;
mod pxe;
mod slots;
mod update;
mod verity;
mod virtualbox;
