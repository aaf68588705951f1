//! A config drive's cloud-config is applied on first boot: hostname, write_files, a unit started
//! by `command: start`, the `etcd2:` drop-in and `update:` settings.

use image_tests::{Machine, Setup};

const USER_DATA: &str = r#"hostname: ferro-test-1
write_files:
  - path: /etc/ferro/hello.txt
    permissions: 0640
    owner: core:core
    content: |
      hello from cloud-config
coreos:
  etcd2:
    name: node1
    advertise-client-urls: http://127.0.0.1:2379
  update:
    reboot-strategy: off
    group: beta
  units:
    - name: hello.service
      command: start
      content: |
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/sh -c 'echo started-by-cloudinit > /run/hello'
"#;

#[test]
fn config_drive_cloud_config_is_applied_on_first_boot() {
    let mut m = Machine::create(
        "cloudinit",
        Setup {
            user_data_extra: USER_DATA.into(),
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();
    m.ssh("systemctl is-system-running --wait || true").unwrap();
    assert_eq!(m.ssh("hostname").unwrap(), "ferro-test-1");
    assert_eq!(
        m.ssh("cat /etc/ferro/hello.txt").unwrap(),
        "hello from cloud-config"
    );
    assert_eq!(
        m.ssh("stat -c '%a %U:%G' /etc/ferro/hello.txt").unwrap(),
        "640 core:core"
    );
    assert_eq!(m.ssh("cat /run/hello").unwrap(), "started-by-cloudinit");
    assert_eq!(
        m.ssh("systemctl is-active hello.service").unwrap(),
        "active"
    );
    let dropin = m
        .ssh("cat /run/systemd/system/etcd2.service.d/20-cloudinit.conf")
        .unwrap();
    assert!(
        dropin.contains("Environment=\"ETCD_NAME=node1\""),
        "{dropin}"
    );
    assert!(
        dropin.contains("Environment=\"ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2379\""),
        "{dropin}"
    );
    let update = m.ssh("cat /etc/coreos/update.conf").unwrap();
    assert!(
        update.contains("REBOOT_STRATEGY=off") && update.contains("GROUP=beta"),
        "{update}"
    );
    assert_eq!(
        m.ssh("systemctl --failed --no-legend --plain").unwrap(),
        "",
        "failed units"
    );
}
