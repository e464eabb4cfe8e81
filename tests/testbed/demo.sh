#!/usr/bin/env bash
# Start (or reuse) the demo host and deploy the example app onto it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

name=slipway-demo
port=${SLIPWAY_DEMO_PORT:-8080}
image=$(bash tests/testbed/build-image.sh)

if podman container exists "$name"; then
  if [[ $(podman inspect --format '{{.ImageName}}' "$name") != "$image" ]]; then
    echo "The demo host was made from an older image; remove it with 'make demo-destroy'." >&2
  fi
  [[ $(podman inspect --format '{{.State.Running}}' "$name") == true ]] || podman start "$name" >/dev/null
else
  podman run -d --name "$name" --hostname "$name" --systemd=always \
    -p "127.0.0.1:$port:80" "$image" /sbin/init >/dev/null
fi

# Wait for systemd inside the container to finish booting.
for _ in $(seq 1 60); do
  state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done

ansible-playbook -i inventories/demo playbooks/deploy.yml "$@"

cat <<MSG

The demo is up: http://127.0.0.1:$port/  (health: http://127.0.0.1:$port/health/, admin: http://127.0.0.1:$port/admin/)
Admin user: admin; its generated password is stored in $HOME/.local/share/slipway/credentials/demo/demo-admin-password (mode 0600).
MSG
