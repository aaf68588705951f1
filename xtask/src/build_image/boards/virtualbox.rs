//! The virtualbox board: VirtualBox's disk formats, an OVA, and Vagrant boxes for the
//! `virtualbox` and `libvirt` providers, all made from the common raw disk image.
//!
//! The disk boots on VirtualBox's defaults (SATA AHCI, Intel PRO/1000 NIC, BIOS): the kernel has
//! AHCI and e1000 built in. The OEM partition (`board/virtualbox/oem/`) authorizes Vagrant's
//! insecure key on the first boot and applies Vagrant's user data at every boot.

use super::Context;
use crate::cmd;
use anyhow::{bail, Context as _, Result};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the OVF asks VirtualBox for.
pub struct Hardware {
    pub memory_mib: u64,
    pub cpus: u32,
}

/// The defaults of issue #8: 2 GiB, 2 CPUs (NAT, no serial port and BIOS are in the descriptor).
pub const HARDWARE: Hardware = Hardware {
    memory_mib: 2048,
    cpus: 2,
};

/// The OVF's `ovf:format` for a stream-optimized VMDK (the only disk format OVAs carry).
pub const VMDK_STREAM_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// CIM's OsType "Linux 2.6.x 64-Bit"; VirtualBox maps it to its Linux26_64.
const CIM_OS_LINUX_26_64: u32 = 100;

pub fn write_outputs(ctx: &Context) -> Result<BTreeMap<String, PathBuf>> {
    let board_dir = crate::paths::root().join("board").join(ctx.board);
    let capacity = std::fs::metadata(ctx.raw)?.len();
    let mut out = BTreeMap::new();

    let vdi = ctx.stage.join(format!("{}.vdi", ctx.base));
    eprintln!("image: converting to VDI");
    qemu_img_convert(ctx.raw, &vdi, &["-O", "vdi"])?;
    out.insert("vdi".to_string(), vdi);

    let vmdk = ctx.stage.join(format!("{}.vmdk", ctx.base));
    eprintln!("image: converting to a stream-optimized VMDK");
    qemu_img_convert(
        ctx.raw,
        &vmdk,
        &["-O", "vmdk", "-o", "subformat=streamOptimized"],
    )?;
    let vmdk_bytes = std::fs::metadata(&vmdk)?.len();

    // OVA: the descriptor first, then its manifest, then the disk (OVF 1.0, section 5.3).
    let work = ctx.work.join("virtualbox");
    std::fs::create_dir_all(&work)?;
    let ova_dir = work.join("ova");
    std::fs::create_dir_all(&ova_dir)?;
    let ovf_name = format!("{}.ovf", ctx.base);
    let disk_name = format!("{}-disk001.vmdk", ctx.base);
    let descriptor = ovf(&Ovf {
        name: ctx.base,
        disk_href: &disk_name,
        disk_file_bytes: vmdk_bytes,
        capacity_bytes: capacity,
        hardware: &HARDWARE,
    });
    std::fs::write(ova_dir.join(&ovf_name), &descriptor)?;
    link_or_copy(&vmdk, &ova_dir.join(&disk_name))?;
    let mf_name = format!("{}.mf", ctx.base);
    std::fs::write(
        ova_dir.join(&mf_name),
        manifest(&ova_dir, &[&ovf_name, &disk_name])?,
    )?;
    let ova = ctx.stage.join(format!("{}.ova", ctx.base));
    eprintln!("image: writing the OVA");
    tar(&ova_dir, &[&ovf_name, &mf_name, &disk_name], &ova, false)?;
    out.insert("ova".to_string(), ova);

    // Vagrant, virtualbox provider: Vagrant imports `box.ovf` with VBoxManage.
    let vb_dir = work.join("vagrant-virtualbox");
    std::fs::create_dir_all(&vb_dir)?;
    let box_disk = "box-disk001.vmdk";
    std::fs::write(
        vb_dir.join("box.ovf"),
        ovf(&Ovf {
            name: ctx.base,
            disk_href: box_disk,
            disk_file_bytes: vmdk_bytes,
            capacity_bytes: capacity,
            hardware: &HARDWARE,
        }),
    )?;
    link_or_copy(&vmdk, &vb_dir.join(box_disk))?;
    std::fs::write(
        vb_dir.join("metadata.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "provider": "virtualbox" }))? + "\n",
    )?;
    copy_vagrantfile(&board_dir.join("vagrant/virtualbox.Vagrantfile"), &vb_dir)?;
    let vb_box = ctx.stage.join(format!("{}-virtualbox.box", ctx.base));
    eprintln!("image: writing the Vagrant box (virtualbox)");
    tar(
        &vb_dir,
        &["metadata.json", "Vagrantfile", "box.ovf", box_disk],
        &vb_box,
        true,
    )?;
    out.insert("vagrant-virtualbox".to_string(), vb_box);
    out.insert("vmdk".to_string(), vmdk);

    // Vagrant, libvirt provider (vagrant-libvirt): the build's qcow2 named box.img, and its
    // virtual size in GiB.
    let lv_dir = work.join("vagrant-libvirt");
    std::fs::create_dir_all(&lv_dir)?;
    link_or_copy(ctx.qcow2, &lv_dir.join("box.img"))?;
    std::fs::write(
        lv_dir.join("metadata.json"),
        serde_json::to_string_pretty(&libvirt_metadata(capacity))? + "\n",
    )?;
    copy_vagrantfile(&board_dir.join("vagrant/libvirt.Vagrantfile"), &lv_dir)?;
    let lv_box = ctx.stage.join(format!("{}-libvirt.box", ctx.base));
    eprintln!("image: writing the Vagrant box (libvirt)");
    tar(
        &lv_dir,
        &["metadata.json", "Vagrantfile", "box.img"],
        &lv_box,
        true,
    )?;
    out.insert("vagrant-libvirt".to_string(), lv_box);
    Ok(out)
}

/// vagrant-libvirt's box metadata: `virtual_size` is whole GiB, rounded up so the volume it
/// creates holds the whole image.
pub fn libvirt_metadata(capacity_bytes: u64) -> serde_json::Value {
    serde_json::json!({
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": capacity_bytes.div_ceil(1 << 30),
    })
}

fn qemu_img_convert(raw: &Path, out: &Path, args: &[&str]) -> Result<()> {
    cmd::run(
        Command::new("qemu-img")
            .arg("convert")
            .args(["-f", "raw"])
            .args(args)
            .arg(raw)
            .arg(out),
    )
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

fn copy_vagrantfile(source: &Path, dir: &Path) -> Result<()> {
    std::fs::copy(source, dir.join("Vagrantfile"))
        .with_context(|| format!("copying the box's Vagrantfile {}", source.display()))?;
    Ok(())
}

/// `SHA256(name)= hex` lines, the OVF manifest format VirtualBox checks on import.
fn manifest(dir: &Path, names: &[&str]) -> Result<String> {
    let mut text = String::new();
    for name in names {
        let mut hasher = sha2::Sha256::new();
        let mut f = std::fs::File::open(dir.join(name))?;
        std::io::copy(&mut f, &mut hasher)?;
        text.push_str(&format!(
            "SHA256({name})= {}\n",
            hex::encode(hasher.finalize())
        ));
    }
    Ok(text)
}

/// A ustar archive of `names` (in this order) from `dir`, owned by root, optionally gzipped.
fn tar(dir: &Path, names: &[&str], out: &Path, gzip: bool) -> Result<()> {
    let mut c = Command::new("tar");
    c.args([
        "--format=ustar",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mode=u=rwX,go=rX",
        "-C",
    ])
    .arg(dir)
    .arg("-cf");
    if !gzip {
        return cmd::run(c.arg(out).args(names));
    }
    // Compressed here rather than by tar's gzip child: one process fewer to find, and the disk
    // images are compressed already, so the fastest level loses almost nothing.
    let mut child = c
        .arg("-")
        .args(names)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tar (Debian package tar)")?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    std::io::copy(child.stdout.as_mut().expect("piped"), &mut gz)?;
    gz.finish()?.flush()?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "tar of {} failed ({}): {}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub struct Ovf<'a> {
    /// The virtual machine's name in VirtualBox.
    pub name: &'a str,
    /// The VMDK's file name inside the package.
    pub disk_href: &'a str,
    pub disk_file_bytes: u64,
    /// The disk's virtual size.
    pub capacity_bytes: u64,
    pub hardware: &'a Hardware,
}

/// An OVF 1.0 descriptor: one VirtualSystem with a SATA (AHCI) disk, an E1000 NIC on NAT, no
/// serial port, and no firmware override (VirtualBox boots Linux26_64 with its BIOS).
/// `rasd:`/`vssd:` elements are in the alphabetical order the CIM schemas require.
pub fn ovf(o: &Ovf) -> String {
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    let name = esc(o.name);
    let href = esc(o.disk_href);
    let memory = o.hardware.memory_mib;
    let cpus = o.hardware.cpus;
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:id="file1" ovf:href="{href}" ovf:size="{disk_bytes}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{VMDK_STREAM_FORMAT}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine: Ferrocore, a container-optimized Linux</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{CIM_OS_LINUX_26_64}">
      <Info>The kind of installed guest operating system</Info>
      <Description>Linux26_64</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{cpus} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{memory} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        disk_bytes = o.disk_file_bytes,
        capacity = o.capacity_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovf_is_well_formed_and_escapes_what_it_is_given() {
        let text = ovf(&Ovf {
            name: "a<b&c",
            disk_href: "d\"isk.vmdk",
            disk_file_bytes: 123,
            capacity_bytes: 3 << 30,
            hardware: &HARDWARE,
        });
        let mut r = quick_xml::Reader::from_str(&text);
        let mut elements = 0;
        loop {
            match r.read_event().expect("well-formed") {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_) => {
                    elements += 1
                }
                _ => {}
            }
        }
        assert!(elements > 40, "{elements} elements");
        assert!(text.contains("<Name>a&lt;b&amp;c</Name>"));
        assert!(text.contains(r#"ovf:href="d&quot;isk.vmdk" ovf:size="123""#));
        assert!(text.contains(&format!(r#"ovf:capacity="{}""#, 3u64 << 30)));
    }

    #[test]
    fn libvirt_virtual_size_is_whole_gib_rounded_up() {
        assert_eq!(libvirt_metadata(1 << 30)["virtual_size"], 1);
        assert_eq!(libvirt_metadata((3 << 30) + 512)["virtual_size"], 4);
        assert_eq!(libvirt_metadata(3562012672)["provider"], "libvirt");
    }
}
