#!/usr/bin/env bash
# Build (or reuse) the local systemd base image for the test bed and the demo host.
# The tag is a hash of this recipe, so the image is rebuilt only when the recipe changes.
set -euo pipefail

name=${SLIPWAY_IMAGE_NAME:-localhost/slipway-debian12-systemd}
recipe_hash=$(sha256sum "$0" | cut -c1-12)
image="$name:$recipe_hash"

if podman image exists "$image"; then
  podman tag "$image" "$name:latest"
  echo "$image"
  exit 0
fi

# Use the mirror the controller itself uses (no other network source is reachable).
mirror=$(grep -hoE '^URIs:[[:space:]]*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
if [[ -z $mirror ]]; then
  mirror=$(grep -hoE '^deb[[:space:]]+\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/slipway-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "Building $image from $mirror" >&2
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,python3,python3-apt,sudo,dbus,ca-certificates,acl,procps,iproute2,openssh-server \
  bookworm "$rootfs" "$mirror" >&2

# Same apt sources as the controller (security updates included), no docs, no recommends.
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  rm -f "$rootfs/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
fi
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90slipway"
# The controller's CA bundle: HTTPS from the container goes through an intercepting proxy here.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/controller-bundle.crt"
chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
# Units that make no sense in a container.
for unit in systemd-resolved.service getty@.service serial-getty@.service console-getty.service \
            systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo 'slipway-testbed' > "$rootfs/etc/hostname"
# SSH: keys only (the demo mounts the controller's public key as root's authorized_keys).
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n' \
  > "$rootfs/etc/ssh/sshd_config.d/slipway.conf"
: > "$rootfs/etc/machine-id"
chroot "$rootfs" apt-get clean
# Keep the package lists: apt knows its sources from the first boot.

tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >&2
podman tag "$image" "$name:latest"
echo "$image"
