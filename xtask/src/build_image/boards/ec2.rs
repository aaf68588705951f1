//! EC2: the raw disk image is what `cargo xtask upload ec2` sends as an EBS snapshot (EBS direct
//! APIs) and registers as an AMI, so the board adds no format of its own. What makes the image
//! an EC2 image is its OEM partition (`board/ec2/oem/`: user data from the instance metadata
//! service, IMDSv2) and the kernel's NVMe, ENA and serial drivers (kernel-config/).

use super::Context;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn write_outputs(_ctx: &Context) -> Result<BTreeMap<String, PathBuf>> {
    Ok(BTreeMap::new())
}
