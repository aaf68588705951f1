//! The virtualbox board (`cargo xtask build-image --board virtualbox`): the VDI and VMDK are sound
//! and hold exactly the disk image, the OVA is laid out as OVF 1.0 says and its descriptor has
//! the schema's required elements, Debian's vagrant accepts both boxes, and the VMDK boots on
//! VirtualBox's default hardware (SATA AHCI disk, e1000 NIC) the way `vagrant up` uses it.

use image_tests::{board_image, run, ImageInfo, Machine, Setup};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OVF_NS: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const RASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
/// CIM resource types (DSP1041) the descriptor uses or must not use.
const RT_CPU: &str = "3";
const RT_MEMORY: &str = "4";
const RT_ETHERNET: &str = "10";
const RT_DISK: &str = "17";
const RT_SATA: &str = "20";
const RT_SERIAL: &str = "21";

fn vbox() -> ImageInfo {
    board_image("virtualbox")
}

fn qemu_img_info(path: &Path, format: &str) -> serde_json::Value {
    let out = run(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", format])
        .arg(path))
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn virtualbox_vdi_and_vmdk_are_sound_and_hold_the_disk_image() {
    let img = vbox();
    let raw_size = std::fs::metadata(&img.raw).unwrap().len();
    for (output, format) in [("vdi", "vdi"), ("vmdk", "vmdk")] {
        let path = img.output(output);
        run(Command::new("qemu-img")
            .args(["check", "-q", "-f", format])
            .arg(&path))
        .unwrap_or_else(|e| panic!("qemu-img check {}: {e:#}", path.display()));
        let info = qemu_img_info(&path, format);
        assert_eq!(info["format"], format, "{}", path.display());
        assert_eq!(
            info["virtual-size"].as_u64(),
            Some(raw_size),
            "{}: virtual size",
            path.display()
        );
        // Every sector reads back as the raw image's.
        run(Command::new("qemu-img")
            .args(["compare", "-q", "-f", "raw", "-F", format])
            .arg(&img.raw)
            .arg(&path))
        .unwrap_or_else(|e| panic!("{} differs from the raw image: {e:#}", path.display()));
    }
    let vmdk = qemu_img_info(&img.output("vmdk"), "vmdk");
    assert_eq!(
        vmdk["format-specific"]["data"]["create-type"], "streamOptimized",
        "{vmdk}"
    );
}

/// An element of a parsed XML document, names resolved to their namespaces.
#[derive(Debug, Default)]
struct El {
    ns: String,
    name: String,
    /// (namespace, local name, value); `xmlns` declarations left out.
    attrs: Vec<(String, String, String)>,
    children: Vec<El>,
    text: String,
}

impl El {
    fn attr(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, l, _)| n == ns && l == name)
            .map(|(_, _, v)| v.as_str())
    }
    fn ovf_attr(&self, name: &str) -> &str {
        self.attr(OVF_NS, name)
            .unwrap_or_else(|| panic!("<{}> has no ovf:{name}", self.name))
    }
    fn all(&self, ns: &str, name: &str) -> Vec<&El> {
        self.children
            .iter()
            .filter(|c| c.ns == ns && c.name == name)
            .collect()
    }
    fn one(&self, ns: &str, name: &str) -> &El {
        let found = self.all(ns, name);
        assert_eq!(found.len(), 1, "<{}> must have one <{name}>", self.name);
        found[0]
    }
    fn text_of(&self, ns: &str, name: &str) -> Option<&str> {
        self.all(ns, name).first().map(|e| e.text.trim())
    }
    /// OVF 1.0: every section and content element starts with its `<Info>`.
    fn assert_info_first(&self) {
        let first = self
            .children
            .first()
            .unwrap_or_else(|| panic!("<{}> is empty", self.name));
        assert!(
            first.ns == OVF_NS && first.name == "Info" && !first.text.trim().is_empty(),
            "<{}> must start with a non-empty <Info>",
            self.name
        );
    }
}

fn ns_of(r: ResolveResult) -> String {
    match r {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        _ => String::new(),
    }
}

fn element(r: &NsReader<&[u8]>, ns: String, e: &BytesStart) -> El {
    let attrs = e
        .attributes()
        .map(|a| a.expect("well-formed attribute"))
        .filter(|a| {
            let key = a.key.as_ref();
            key != b"xmlns" && !key.starts_with(b"xmlns:")
        })
        .map(|a| {
            let (ans, local) = r.resolver().resolve_attribute(a.key);
            (
                ns_of(ans),
                String::from_utf8_lossy(local.as_ref()).into_owned(),
                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .expect("attribute value")
                    .into_owned(),
            )
        })
        .collect();
    El {
        ns,
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        attrs,
        ..El::default()
    }
}

/// Parses `xml` (which must be well-formed) into its root element.
fn parse(xml: &str) -> El {
    let mut r = NsReader::from_str(xml);
    let mut stack = vec![El::default()];
    loop {
        let (ns, ev) = r.read_resolved_event().expect("well-formed XML");
        let ns = ns_of(ns);
        match ev {
            Event::Start(e) => {
                let el = element(&r, ns, &e);
                stack.push(el);
            }
            Event::Empty(e) => {
                let el = element(&r, ns, &e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().expect("balanced").children.push(el);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.decode().unwrap()),
            Event::GeneralRef(g) => {
                let name = g.decode().unwrap();
                let c = match name.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "apos" => "'",
                    "quot" => "\"",
                    other => panic!("entity &{other}; in the OVF"),
                };
                stack.last_mut().unwrap().text.push_str(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut doc = stack.pop().unwrap();
    assert_eq!(doc.children.len(), 1, "one root element");
    doc.children.pop().unwrap()
}

/// The OVF 1.0 (DSP0243) and CIM (RASD/VSSD) elements an importer needs, and the values of the
/// issue: 2 CPUs, 2 GiB, SATA AHCI disk, E1000 on NAT, no serial port.
fn check_ovf(env: &El, disk_href: &str, disk_bytes: u64, capacity: u64) {
    assert_eq!((env.ns.as_str(), env.name.as_str()), (OVF_NS, "Envelope"));
    assert_eq!(env.attr(OVF_NS, "version"), Some("1.0"));

    let refs = env.one(OVF_NS, "References");
    let files = refs.all(OVF_NS, "File");
    assert_eq!(files.len(), 1, "one file: the disk");
    let file = files[0];
    assert_eq!(file.ovf_attr("href"), disk_href);
    assert_eq!(file.ovf_attr("size"), disk_bytes.to_string());

    let disks = env.one(OVF_NS, "DiskSection");
    disks.assert_info_first();
    let disk = disks.one(OVF_NS, "Disk");
    assert_eq!(disk.ovf_attr("fileRef"), file.ovf_attr("id"));
    assert_eq!(disk.ovf_attr("capacity"), capacity.to_string());
    assert_eq!(
        disk.ovf_attr("format"),
        "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
    );
    let disk_id = disk.ovf_attr("diskId");

    let nets = env.one(OVF_NS, "NetworkSection");
    nets.assert_info_first();
    let networks: Vec<&str> = nets
        .all(OVF_NS, "Network")
        .iter()
        .map(|n| n.ovf_attr("name"))
        .collect();

    let vs = env.one(OVF_NS, "VirtualSystem");
    vs.assert_info_first();
    assert!(!vs.ovf_attr("id").is_empty());
    let os = vs.one(OVF_NS, "OperatingSystemSection");
    os.assert_info_first();
    assert_eq!(os.ovf_attr("id"), "100", "CIM OsType Linux 2.6.x 64-Bit");

    let hw = vs.one(OVF_NS, "VirtualHardwareSection");
    hw.assert_info_first();
    let system = hw.one(OVF_NS, "System");
    for required in ["ElementName", "InstanceID", "VirtualSystemType"] {
        assert!(
            system.text_of(VSSD_NS, required).is_some(),
            "System needs vssd:{required}"
        );
    }
    let items = hw.all(OVF_NS, "Item");
    for item in &items {
        // CIM RASD: these three are required, and the schema is a sequence in name order.
        for required in ["ElementName", "InstanceID", "ResourceType"] {
            assert!(
                item.text_of(RASD_NS, required).is_some(),
                "Item needs rasd:{required}: {item:?}"
            );
        }
        let names: Vec<&str> = item.children.iter().map(|c| c.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "rasd elements out of schema order");
        assert!(item.children.iter().all(|c| c.ns == RASD_NS));
    }
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i.text_of(RASD_NS, "InstanceID").unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "InstanceIDs must be unique");
    let of_type = |t: &str| -> Vec<&&El> {
        items
            .iter()
            .filter(|i| i.text_of(RASD_NS, "ResourceType") == Some(t))
            .collect()
    };
    let only = |t: &str| -> &El {
        let found = of_type(t);
        assert_eq!(found.len(), 1, "one item of resource type {t}");
        found[0]
    };
    assert_eq!(only(RT_CPU).text_of(RASD_NS, "VirtualQuantity"), Some("2"));
    let memory = only(RT_MEMORY);
    assert_eq!(memory.text_of(RASD_NS, "VirtualQuantity"), Some("2048"));
    assert_eq!(
        memory.text_of(RASD_NS, "AllocationUnits"),
        Some("MegaBytes")
    );
    let sata = only(RT_SATA);
    assert_eq!(sata.text_of(RASD_NS, "ResourceSubType"), Some("AHCI"));
    let hd = only(RT_DISK);
    assert_eq!(
        hd.text_of(RASD_NS, "Parent"),
        sata.text_of(RASD_NS, "InstanceID")
    );
    assert_eq!(
        hd.text_of(RASD_NS, "HostResource"),
        Some(format!("ovf:/disk/{disk_id}").as_str())
    );
    let nic = only(RT_ETHERNET);
    assert_eq!(nic.text_of(RASD_NS, "ResourceSubType"), Some("E1000"));
    let connection = nic.text_of(RASD_NS, "Connection").unwrap();
    assert_eq!(connection, "NAT");
    assert!(
        networks.contains(&connection),
        "the NIC's network {connection} is declared in NetworkSection"
    );
    assert!(of_type(RT_SERIAL).is_empty(), "serial ports are off");
}

fn tar_list(archive: &Path) -> Vec<String> {
    run(Command::new("tar").arg("-tf").arg(archive))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn tar_extract(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir))
    .unwrap();
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn virtualbox_ova_and_ovf_follow_ovf_1_0() {
    let img = vbox();
    let capacity = std::fs::metadata(&img.raw).unwrap().len();
    let ova = img.output("ova");
    // A ustar archive, the descriptor first, then its manifest, then the disk.
    let mut header = [0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(&ova).unwrap(), &mut header).unwrap();
    assert_eq!(&header[257..263], b"ustar\0", "OVA is a ustar archive");
    let names = tar_list(&ova);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(".ovf"), "{names:?}");
    assert!(names[1].ends_with(".mf"), "{names:?}");
    assert!(names[2].ends_with(".vmdk"), "{names:?}");
    let dir = image_tests::logs_dir("virtualbox-ova");
    let _ = std::fs::remove_dir_all(&dir);
    tar_extract(&ova, &dir);
    let vmdk = dir.join(&names[2]);
    assert_eq!(
        sha256(&vmdk),
        sha256(&img.output("vmdk")),
        "the OVA carries the VMDK"
    );
    let disk_bytes = std::fs::metadata(&vmdk).unwrap().len();
    let ovf = std::fs::read_to_string(dir.join(&names[0])).unwrap();
    check_ovf(&parse(&ovf), &names[2], disk_bytes, capacity);
    let manifest = std::fs::read_to_string(dir.join(&names[1])).unwrap();
    for name in [&names[0], &names[2]] {
        let line = format!("SHA256({name})= {}", sha256(&dir.join(name)));
        assert!(
            manifest.lines().any(|l| l == line),
            "manifest lacks {line}:\n{manifest}"
        );
    }

    // The virtualbox box carries the same descriptor for its box-disk001.vmdk.
    let bx = image_tests::logs_dir("virtualbox-box");
    let _ = std::fs::remove_dir_all(&bx);
    tar_extract(&img.output("vagrant-virtualbox"), &bx);
    let box_disk = bx.join("box-disk001.vmdk");
    let ovf = std::fs::read_to_string(bx.join("box.ovf")).unwrap();
    check_ovf(
        &parse(&ovf),
        "box-disk001.vmdk",
        std::fs::metadata(&box_disk).unwrap().len(),
        capacity,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bx);
}

/// Runs Debian's vagrant with its state in `home`.
fn vagrant(home: &Path, args: &[&str]) -> String {
    run(Command::new("vagrant")
        .args(args)
        .env("VAGRANT_HOME", home)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("VAGRANT_NO_COLOR", "1"))
    .unwrap_or_else(|e| panic!("vagrant {args:?}: {e:#}"))
}

#[test]
fn virtualbox_vagrant_boxes_are_accepted_by_vagrant() {
    let img = vbox();
    let home = image_tests::logs_dir("virtualbox-vagrant-home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    for (output, provider) in [
        ("vagrant-virtualbox", "virtualbox"),
        ("vagrant-libvirt", "libvirt"),
    ] {
        let name = format!("ferrocore-{provider}");
        let file = img.output(output);
        vagrant(
            &home,
            &["box", "add", "--name", &name, file.to_str().unwrap()],
        );
        let list = vagrant(&home, &["box", "list"]);
        assert!(
            list.lines()
                .any(|l| l.starts_with(&name) && l.contains(&format!("({provider}, "))),
            "vagrant box list: {list}"
        );
        // Vagrant unpacked it where `vagrant up` looks: its metadata and our defaults.
        let unpacked = home.join("boxes").join(&name).join("0").join(provider);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(unpacked.join("metadata.json")).unwrap())
                .unwrap();
        assert_eq!(meta["provider"], provider);
        let vagrantfile = std::fs::read_to_string(unpacked.join("Vagrantfile")).unwrap();
        assert!(vagrantfile.contains(r#"config.ssh.username = "core""#));
        assert!(vagrantfile.contains("config.ssh.insert_key = true"));
        match provider {
            "virtualbox" => {
                assert!(unpacked.join("box.ovf").is_file());
                assert!(unpacked.join("box-disk001.vmdk").is_file());
            }
            _ => {
                assert_eq!(meta["format"], "qcow2");
                let info = qemu_img_info(&unpacked.join("box.img"), "qcow2");
                let virtual_size = info["virtual-size"].as_u64().unwrap();
                assert_eq!(
                    virtual_size,
                    std::fs::metadata(&img.raw).unwrap().len(),
                    "box.img holds the disk image"
                );
                assert_eq!(
                    meta["virtual_size"].as_u64(),
                    Some(virtual_size.div_ceil(1 << 30)),
                    "virtual_size in GiB, rounded up"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// Vagrant's insecure key pair from Debian's vagrant package (`keys/vagrant`, `keys/vagrant.pub`),
/// the private half with the mode ssh wants.
fn vagrant_insecure_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let gems = Path::new("/usr/share/rubygems-integration/all/gems");
    let keys = std::fs::read_dir(gems)
        .expect("Debian's vagrant package is installed")
        .filter_map(|e| e.ok().map(|e| e.path().join("keys")))
        .find(|p| p.join("vagrant").is_file())
        .expect("vagrant's keys/vagrant");
    let private = dir.join("vagrant-insecure");
    let public = dir.join("vagrant-insecure.pub");
    std::fs::copy(keys.join("vagrant"), &private).unwrap();
    std::fs::copy(keys.join("vagrant.pub"), &public).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    (private, public)
}

fn wait_for(m: &Machine, command: &str, timeout: Duration) {
    let start = Instant::now();
    while !m.ssh_output(command).unwrap().status.success() {
        assert!(
            start.elapsed() < timeout,
            "`{command}` did not succeed within {}s",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn virtualbox_vmdk_boots_on_ahci_and_e1000_and_works_with_vagrant() {
    let img = vbox();
    let dir = image_tests::logs_dir("virtualbox-keys");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (insecure, insecure_pub) = vagrant_insecure_keys(&dir);
    // No config drive: as in VirtualBox, the first login is Vagrant's, with its insecure key.
    let mut m = Machine::create_over(
        "virtualbox-vmdk",
        &img.output("vmdk"),
        &img.kernel,
        Setup {
            disk_bus: qemu_runner::DiskBus::Ahci,
            nic: qemu_runner::Nic::E1000,
            ..Setup::default()
        },
        Some(insecure.clone()),
    )
    .unwrap();
    m.boot().unwrap();
    m.assert_running();
    // VirtualBox's default hardware: the disk on the AHCI controller, the NIC an e1000.
    assert_eq!(m.ssh("findmnt -no SOURCE /").unwrap(), "/dev/sda9");
    assert!(m
        .ssh("readlink -f /sys/class/block/sda")
        .unwrap()
        .contains("/ata"));
    let drivers = m
        .ssh("for d in /sys/class/net/*/device/driver; do basename $(readlink $d); done")
        .unwrap();
    assert_eq!(drivers, "e1000");
    assert!(m
        .ssh("cat /etc/oem-release")
        .unwrap()
        .contains("ID=vagrant"));

    // Vagrant's coreos guest sets the host name through system-cloudinit@.
    m.ssh(
        "printf '#cloud-config\\nhostname: set-by-vagrant\\n' > /var/tmp/hostname.yml && \
         sudo systemctl start system-cloudinit@var-tmp-hostname.yml.service",
    )
    .unwrap();
    assert_eq!(m.ssh("hostname").unwrap(), "set-by-vagrant");

    // A Vagrantfile's provisioner drops the user data (as coreos-vagrant's does); it applies at once.
    let user_data = dir.join("vagrantfile-user-data");
    std::fs::write(
        &user_data,
        "#cloud-config\nhostname: from-user-data\nwrite_files:\n  - path: /run/vagrant-user-data-applied\n    content: applied\n",
    )
    .unwrap();
    m.scp_to(&user_data, "/tmp/vagrantfile-user-data").unwrap();
    m.ssh("sudo mv /tmp/vagrantfile-user-data /var/lib/coreos-vagrant/")
        .unwrap();
    wait_for(
        &m,
        "test -e /run/vagrant-user-data-applied",
        Duration::from_secs(120),
    );
    assert_eq!(m.ssh("hostname").unwrap(), "from-user-data");

    // `vagrant up` with insert_key: Vagrant's own commands (plugins/guests/linux/cap/public_key.rb)
    // add its new key and remove the insecure one.
    let new_key = dir.join("id_vagrant_inserted");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&new_key))
    .unwrap();
    m.scp_to(&new_key.with_extension("pub"), "/tmp/vagrant-insert-pubkey")
        .unwrap();
    m.ssh(
        "mkdir -p ~/.ssh && chmod 0700 ~/.ssh && \
         cat /tmp/vagrant-insert-pubkey >> ~/.ssh/authorized_keys && chmod 0600 ~/.ssh/authorized_keys",
    )
    .unwrap();
    m.scp_to(&insecure_pub, "/tmp/vagrant-remove-pubkey")
        .unwrap();
    m.ssh(
        "grep -v -x -f /tmp/vagrant-remove-pubkey ~/.ssh/authorized_keys > ~/.ssh/authorized_keys.tmp && \
         mv ~/.ssh/authorized_keys.tmp ~/.ssh/authorized_keys && chmod 0600 ~/.ssh/authorized_keys",
    )
    .unwrap();
    m.use_key(new_key.clone());
    m.ssh("true").unwrap();

    // After a reboot: the user data is applied again (/run is new), Vagrant's key still works and
    // the insecure key is not authorized again.
    m.poweroff().unwrap();
    m.boot().unwrap();
    wait_for(
        &m,
        "test -e /run/vagrant-user-data-applied",
        Duration::from_secs(120),
    );
    assert_eq!(m.ssh("hostname").unwrap(), "from-user-data");
    assert!(!m
        .ssh("cat ~/.ssh/authorized_keys")
        .unwrap()
        .contains("vagrant insecure public key"));
    m.use_key(insecure);
    assert!(
        !m.ssh_output("true").unwrap().status.success(),
        "the insecure key still logs in after Vagrant replaced it"
    );
    m.use_key(new_key);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn virtualbox_vdi_boots_to_multi_user() {
    let img = vbox();
    let dir = image_tests::logs_dir("virtualbox-vdi-keys");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (insecure, _) = vagrant_insecure_keys(&dir);
    // QEMU reads the VDI itself (its vdi driver, under a qcow2 overlay): the bytes VirtualBox
    // would boot, on the default virtio hardware.
    let mut m = Machine::create_over(
        "virtualbox-vdi",
        &img.output("vdi"),
        &img.kernel,
        Setup::default(),
        Some(insecure),
    )
    .unwrap();
    m.boot().unwrap();
    m.assert_running();
    // /usr read-only from the dm-verity device, as on every board.
    assert_eq!(m.ssh("findmnt -no FSTYPE /usr").unwrap(), "erofs");
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    assert!(m
        .ssh("touch /usr/x 2>&1 || true")
        .unwrap()
        .contains("Read-only"));
    assert!(m
        .ssh("cat /etc/oem-release")
        .unwrap()
        .contains("ID=vagrant"));
}
