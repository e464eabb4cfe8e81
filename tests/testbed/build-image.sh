#!/usr/bin/env bash
# Build (or reuse) the local systemd base image of one Debian release for the test bed and the
# demo host:
#   tests/testbed/build-image.sh [bookworm|trixie]   (default: $SLIPWAY_DEBIAN_RELEASE or bookworm)
# bookworm -> localhost/slipway-debian12-systemd, trixie -> localhost/slipway-debian13-systemd.
# The tag is a hash of this recipe, so an image is rebuilt only when the recipe changes.
set -euo pipefail

release=${1:-${SLIPWAY_DEBIAN_RELEASE:-bookworm}}
case $release in
  bookworm) major=12 ;;
  trixie) major=13 ;;
  *) echo "build-image.sh: unknown Debian release '$release' (bookworm or trixie)" >&2; exit 2 ;;
esac
name=${SLIPWAY_IMAGE_NAME:-localhost/slipway-debian$major-systemd}
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
chmod 0755 "$rootfs"  # apt in the chroot drops to _apt, which must reach its lists
trap 'rm -rf "$rootfs"' EXIT
echo "Building $image ($release) from $mirror" >&2
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,python3,python3-apt,sudo,dbus,ca-certificates,acl,procps,iproute2,openssh-server \
  "$release" "$rootfs" "$mirror" >&2

# The controller's apt sources (same mirrors, security updates included) with its own release's
# suites renamed to the image's: bookworm-security becomes trixie-security. No docs, no recommends.
controller_release=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  rm -f "$rootfs/etc/apt/sources.list"
  for sources in /etc/apt/sources.list.d/*.sources; do
    sed -E -e "/^#/d" -e "/^Suites:/s/\b$controller_release\b/$release/g" "$sources" \
      > "$rootfs/etc/apt/sources.list.d/$(basename "$sources")"
  done
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
# The package lists of the sources above: apt knows them from the first boot.
chroot "$rootfs" apt-get update -qq >&2
chroot "$rootfs" apt-get clean

tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >&2
podman tag "$image" "$name:latest"
echo "$image"
