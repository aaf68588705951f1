//! `cloud-config-url=` on the kernel command line, set the Flatcar way: `set linux_append=…` in
//! the OEM partition's `grub.cfg` (/usr/share/oem/grub.cfg). After a reboot the agent fetches the
//! config from a server on the host and applies it.

use image_tests::http::FileServer;
use image_tests::{Machine, Setup};

const FETCHED: &str = "#cloud-config
hostname: fetched-by-url
manage_etc_hosts: localhost
write_files:
  - path: /etc/ferro/from-url.txt
    content: fetched over http
";

#[test]
fn cloud_config_url_from_oem_grub_cfg_is_fetched_and_applied() {
    let server = FileServer::start("/cloud-config.yml", FETCHED).unwrap();
    let mut m = Machine::create("cloudinit-url", Setup::default()).unwrap();
    m.boot().unwrap();
    let url = server.guest_url("/cloud-config.yml");
    m.ssh(&format!(
        "echo 'set linux_append=\"cloud-config-url={url}\"' | sudo tee /usr/share/oem/grub.cfg"
    ))
    .unwrap();
    assert!(server.requests().is_empty(), "fetched before it was asked");
    m.poweroff().unwrap();
    m.boot().unwrap();
    m.ssh("systemctl is-system-running --wait || true").unwrap();

    let cmdline = m.ssh("cat /proc/cmdline").unwrap();
    assert!(
        cmdline.contains(&format!("cloud-config-url={url}")),
        "{cmdline}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /cloud-config.yml ")),
        "the guest never fetched the config: {:?}",
        server.requests()
    );
    assert_eq!(m.ssh("hostname").unwrap(), "fetched-by-url");
    assert_eq!(
        m.ssh("cat /etc/ferro/from-url.txt").unwrap(),
        "fetched over http"
    );
    let hosts = m.ssh("cat /etc/hosts").unwrap();
    assert!(hosts.contains("127.0.0.1 fetched-by-url"), "{hosts}");
    assert_eq!(
        m.ssh("systemctl is-active user-cloudinit-proc-cmdline.service")
            .unwrap(),
        "active"
    );
    assert_eq!(
        m.ssh("systemctl --failed --no-legend --plain").unwrap(),
        "",
        "failed units"
    );
}
