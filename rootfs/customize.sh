#!/bin/sh
# mmdebstrap --customize-hook: runs on the host with the new root as $1, after packages are installed.
# Only what needs the package manager's world (users, enabled units, removing build-time secrets) is here;
# our own files come from rootfs/overlay at image time, so changing them does not rebuild the rootfs.
set -eu
root="$1"

# The `core` user as on CoreOS: uid 500, sudo without a password, docker access, key-only ssh.
chroot "$root" useradd --uid 500 --user-group --no-create-home --home-dir /home/core \
    --shell /bin/bash --groups sudo,docker --comment "Ferrocore Admin" core
echo '%sudo ALL=(ALL:ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/ferrocore"
chmod 0440 "$root/etc/sudoers.d/ferrocore"
mkdir -p "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/10-ferrocore.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AuthorizedKeysFile .ssh/authorized_keys
CONF

# Identity: mmdebstrap copies the build host's name; a new machine is "localhost" until
# cloud-config or DHCP names it, as on CoreOS.
echo localhost > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
printf 'Ferrocore \\r (\\l)\n\n' > "$root/etc/issue"
echo Ferrocore > "$root/etc/issue.net"

# Every machine makes its own host keys and machine-id on first boot.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# Docker starts on demand through its socket, as on CoreOS; networkd + resolved manage the network.
chroot "$root" systemctl disable docker.service containerd.service >/dev/null 2>&1 || true
chroot "$root" systemctl enable docker.socket systemd-networkd.service systemd-resolved.service
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# No package manager timers on an image-based system.
chroot "$root" systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
# The root filesystem is mounted by our init; an empty fstab keeps systemd from remounting it.
: > "$root/etc/fstab"
