//! `image/layout.toml`: the partition table as data.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const MIB: u64 = 1 << 20;
pub const SECTOR: u64 = 512;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    Esp,
    BiosBoot,
    Usr,
    Empty,
    Oem,
    Root,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub number: u32,
    pub label: String,
    #[serde(rename = "type")]
    pub type_guid: String,
    pub size_mib: u64,
    pub content: Content,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    pub first_mib: u64,
    pub usr_max_fill_percent: u64,
    #[serde(rename = "partition")]
    pub partitions: Vec<Partition>,
}

/// A partition placed on the disk.
#[derive(Debug, Clone)]
pub struct Placed {
    pub part: Partition,
    pub offset: u64,
    pub size: u64,
}

impl Placed {
    pub fn first_lba(&self) -> u64 {
        self.offset / SECTOR
    }
}

impl Layout {
    pub fn load() -> Result<Layout> {
        let path = crate::paths::root().join("image/layout.toml");
        let text = std::fs::read_to_string(&path)?;
        let layout: Layout =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        layout.check()?;
        Ok(layout)
    }

    fn check(&self) -> Result<()> {
        let mut numbers: Vec<u32> = self.partitions.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.len() != self.partitions.len() {
            bail!("image/layout.toml: partition numbers repeat");
        }
        for content in [Content::Esp, Content::BiosBoot, Content::Usr, Content::Root] {
            if !self.partitions.iter().any(|p| p.content == content) {
                bail!("image/layout.toml: no partition with content {content:?}");
            }
        }
        Ok(())
    }

    /// Partitions in disk order with their byte offsets.
    pub fn place(&self) -> Vec<Placed> {
        let mut offset = self.first_mib * MIB;
        self.partitions
            .iter()
            .map(|p| {
                let placed = Placed {
                    part: p.clone(),
                    offset,
                    size: p.size_mib * MIB,
                };
                offset += placed.size;
                placed
            })
            .collect()
    }

    /// Whole disk: partitions plus 1 MiB at the end for the backup GPT.
    pub fn disk_size(&self) -> u64 {
        let last = self.place().last().map(|p| p.offset + p.size).unwrap_or(0);
        last + MIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_coreos_numbers_and_labels() {
        let layout = Layout::load().unwrap();
        let by_number: Vec<(u32, &str)> = layout
            .partitions
            .iter()
            .map(|p| (p.number, p.label.as_str()))
            .collect();
        for want in [
            (1, "EFI-SYSTEM"),
            (2, "BIOS-BOOT"),
            (3, "USR-A"),
            (4, "USR-B"),
            (6, "OEM"),
            (9, "ROOT"),
        ] {
            assert!(by_number.contains(&want), "missing {want:?}");
        }
        let usr: Vec<_> = layout
            .partitions
            .iter()
            .filter(|p| p.label.starts_with("USR-"))
            .collect();
        assert_eq!(
            usr[0].size_mib, usr[1].size_mib,
            "A and B slots must be the same size"
        );
        assert_eq!(
            layout.partitions.last().unwrap().label,
            "ROOT",
            "ROOT last, so it can grow"
        );
    }
}
