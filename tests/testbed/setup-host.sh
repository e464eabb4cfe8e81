#!/usr/bin/env bash
# Install the controller's system packages and make podman work on this kind of machine
# (runc instead of crun, rlimits the sandbox can grant). Idempotent; run as root.
set -euo pipefail

# netavark and aardvark-dns: containers on one podman network find each other by name;
# netavark needs iptables for every published port (`podman run -p`), and a fresh machine
# lacks it ("netavark: No such file or directory").
packages=(podman runc netavark aardvark-dns iptables debootstrap acl git make openssh-client
          postgresql postgresql-client mariadb-server mariadb-client redis-server
          chromium)  # the deploy console's browser test
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  # The database servers are only used as throw-away instances by the tests: keep them stopped.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

conf=/etc/containers/containers.conf
want='# Managed by slipway tests/testbed/setup-host.sh
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
'
if [[ ! -f $conf ]] || [[ "$(cat "$conf")" != "$(printf '%s' "$want" | sed '$d')" && "$(cat "$conf")" != "$want" ]]; then
  if [[ -f $conf ]] && ! grep -q 'Managed by slipway' "$conf"; then
    cp -n "$conf" "$conf.orig"
  fi
  mkdir -p /etc/containers
  printf '%s' "$want" > "$conf"
fi
