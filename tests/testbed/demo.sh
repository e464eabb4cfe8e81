#!/usr/bin/env bash
# Start (or reuse) the demo host and deploy the example app onto it.
# The host is a podman container booted with systemd; Ansible reaches it over SSH on
# 127.0.0.1 (as it would a real server), with a key made for the demo.
# Its Debian release: DEMO_RELEASE=trixie (Debian 13, the default) or bookworm (Debian 12).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

name=slipway-demo
http_port=${SLIPWAY_DEMO_HTTP_PORT:-8080}
ssh_port=${SLIPWAY_DEMO_SSH_PORT:-2222}
state=$HOME/.local/share/slipway/demo
release=${DEMO_RELEASE:-trixie}
image=$(bash tests/testbed/build-image.sh "$release")

mkdir -p -m 0700 "$state"
[[ -f $state/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C slipway-demo -f "$state/id_ed25519"

if podman container exists "$name" && [[ $(podman inspect --format '{{.ImageName}}' "$name") != "$image" ]]; then
  echo "The demo host was made from another image (an older one, or another Debian release):" \
    "replacing it with one from $image." >&2
  podman rm -f -t 10 "$name" >/dev/null
fi
if podman container exists "$name"; then
  [[ $(podman inspect --format '{{.State.Running}}' "$name") == true ]] || podman start "$name" >/dev/null 2>&1 || true
  # After a reboot of this machine podman may still call a container running whose processes
  # are gone; such a container cannot be started or entered again, only replaced.
  if ! podman exec "$name" true >/dev/null 2>&1; then
    echo "The demo host's container is not running and cannot be started: replacing it" \
      "(the demo's data in it is lost; the deploy below recreates the app)." >&2
    podman rm -f -t 10 "$name" >/dev/null
  fi
fi
if ! podman container exists "$name"; then
  podman run -d --name "$name" --hostname "$name" --systemd=always \
    -p "127.0.0.1:$http_port:80" -p "127.0.0.1:$ssh_port:22" \
    --mount "type=bind,src=$state/id_ed25519.pub,dst=/root/.ssh/authorized_keys,ro=true" \
    "$image" /sbin/init >/dev/null
  # A new container: forget the host key seen for that port before.
  ssh-keygen -q -R "[127.0.0.1]:$ssh_port" -f "$state/known_hosts" >/dev/null 2>&1 || true
fi

# Wait for systemd inside the container to finish booting.
for _ in $(seq 1 60); do
  state_now=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ $state_now == running || $state_now == degraded ]] && break
  sleep 1
done

ansible-playbook -i inventories/demo playbooks/deploy.yml "$@"

cat <<MSG

The demo is up: http://127.0.0.1:$http_port/  (health: http://127.0.0.1:$http_port/health/, admin: http://127.0.0.1:$http_port/admin/)
Admin user: admin; its generated password is stored in $HOME/.local/share/slipway/credentials/demo/demo-admin-password (mode 0600).
MSG
