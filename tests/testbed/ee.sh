#!/usr/bin/env bash
# Build the example execution environment (examples/execution-environment/) locally and deploy
# the example app from it:
#   tests/testbed/ee.sh            (make ee)
# 1. An EE base image from the test bed's Debian 12 image: python3, pip, venv and a dnf-style
#    package manager command over apt (ansible-builder's scripts call `$PKGMGR install -y PKGS`
#    and `$PKGMGR clean all`; options.package_manager_path points them at it).
# 2. `ansible-builder build` of the example definition, with what a machine without Galaxy or
#    Docker Hub needs changed in a derived copy (.cache/ee-local/): that base image, that package
#    manager, and the collections as local tarballs (this checkout's `ansible-galaxy collection
#    build`; community.* from the controller's ansible package), installed --offline.
# 3. A test host (the Debian 12 systemd image) and the EE on one podman network: the EE runs
#    `ansible-playbook slipway.django.deploy` over SSH against the host; the app's /health/ must
#    answer 200 with the release, the release record must be on the host and the deploy history
#    (the collection's callback, running inside the EE) must hold the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"

version=$(awk '/^version:/ {print $2; exit}' galaxy.yml)
ee_image=${SLIPWAY_EE_IMAGE:-localhost/slipway-ee:$version}
work=$PWD/.cache/ee-local
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

# --- 1. The base image -------------------------------------------------------------------
step "Test bed image (Debian 12)"
debian_image=$(bash tests/testbed/build-image.sh bookworm)
rm -rf "$work"
mkdir -p "$work/base" "$work/def/collections"
# ansible-builder's assemble and install-from-bindep call `$PKGMGR install -y [OPTS] PKGS`
# and `$PKGMGR clean all` (dnf's syntax): this maps both to apt-get.
cat > "$work/base/slipway-pkgmgr" <<'SH'
#!/bin/sh
# dnf-style package manager calls (ansible-builder's scripts) on apt.
set -e
cmd=${1:-}; [ $# -gt 0 ] && shift
case $cmd in
  install)
    pkgs=
    for arg in "$@"; do case $arg in -*) ;; *) pkgs="$pkgs $arg" ;; esac; done
    [ -n "$pkgs" ] || exit 0
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
    ;;
  clean) apt-get clean ;;
  *) echo "slipway-pkgmgr: unsupported command: $cmd" >&2; exit 2 ;;
esac
SH
cat > "$work/base/Containerfile" <<CF
FROM $debian_image
# pip (Debian disables ensurepip for the system python: the definition sets skip_pip_install)
# and venv (ansible-builder's assemble script makes one) are separate packages on Debian.
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip python3-venv \\
 && apt-get clean
COPY --chmod=0755 slipway-pkgmgr /usr/local/sbin/slipway-pkgmgr
# pip trusts the system's CA bundle (it holds the controller's, baked in by build-image.sh).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
STOPSIGNAL SIGTERM
CMD ["bash"]
CF
# Tagged with a hash of its recipe and the Debian image: rebuilt only when either changes.
base_hash=$( { cat "$work/base/Containerfile" "$work/base/slipway-pkgmgr"
               podman image inspect --format '{{.Id}}' "$debian_image"; } | sha256sum | cut -c1-12)
base_image=localhost/slipway-ee-base:$base_hash
if podman image exists "$base_image"; then
  step "EE base image $base_image (cached)"
else
  step "EE base image $base_image"
  podman build -q -t "$base_image" "$work/base" >/dev/null
fi

# --- 2. The execution environment --------------------------------------------------------
step "Collection tarballs"
ansible-galaxy collection build --force --output-path "$work/def/collections" . >/dev/null
# community.*: the collections of the controller's `ansible` package (no Galaxy server here).
# That package leaves out files that their FILES.json lists (ansible-galaxy would refuse the
# tarball): each is rebuilt by `ansible-galaxy collection build` from a copy, with a galaxy.yml
# made from its MANIFEST.json.
for name in postgresql mysql crypto; do
  dir=$(ansible-galaxy collection list "community.$name" --format json 2>/dev/null | python3 -c '
import json, sys
print(next(p + "/community/" + sys.argv[1] for p, found in json.load(sys.stdin).items() if found))' "$name")
  copy=$work/src/community/$name
  mkdir -p "$copy"
  cp -a "$dir/." "$copy/"
  rm -rf "$copy/MANIFEST.json" "$copy/FILES.json"
  find "$copy" -name __pycache__ -prune -exec rm -rf {} +
  python3 - "$dir/MANIFEST.json" "$copy/galaxy.yml" <<'PY'
import json, sys, yaml
info = json.load(open(sys.argv[1]))["collection_info"]
if info.get("license"):
    info.pop("license_file", None)
with open(sys.argv[2], "w") as f:
    yaml.safe_dump({k: v for k, v in info.items() if v not in (None, [], {}, "")}, f)
PY
  ansible-galaxy collection build --force --output-path "$work/def/collections" "$copy" >/dev/null
done
ls "$work/def/collections"

step "Derived definition"
cp examples/execution-environment/execution-environment.yml "$work/def/example.yml"
python3 - "$work/def" "$base_image" "$ee_image" <<'PY'
import os, sys, yaml
out, base_image, tag = sys.argv[1:]
with open(os.path.join(out, "example.yml")) as f:
    definition = yaml.safe_load(f)
definition["images"]["base_image"]["name"] = base_image
definition["options"]["package_manager_path"] = "/usr/local/sbin/slipway-pkgmgr"
# Debian disables ensurepip for the system python: pip comes from python3-pip in the base image.
definition["options"]["skip_pip_install"] = True
definition["options"]["tags"] = [tag]
tarballs = sorted(n for n in os.listdir(os.path.join(out, "collections")) if n.endswith(".tar.gz"))
definition["dependencies"]["galaxy"] = {
    "collections": [{"name": f"/build/collections/{n}", "type": "file"} for n in tarballs]}
definition.setdefault("additional_build_files", []).append({"src": "collections", "dest": "collections"})
definition.setdefault("build_arg_defaults", {})["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"] = "--offline"
with open(os.path.join(out, "execution-environment.yml"), "w") as f:
    yaml.safe_dump(definition, f, sort_keys=False)
PY
cat "$work/def/execution-environment.yml"

if [[ ${SLIPWAY_EE_REUSE:-} == 1 ]] && podman image exists "$ee_image"; then
  step "$ee_image exists: reused (SLIPWAY_EE_REUSE=1)"
else
step "ansible-builder build -> $ee_image"
ansible-builder build --container-runtime podman -v 2 \
  -f "$work/def/execution-environment.yml" -c "$work/context" > "$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log"; echo "ansible-builder build failed (log: $work/build.log)" >&2; exit 1; }
echo "built $ee_image (log: $work/build.log)"
# The build's other stages (galaxy, builder: about 1 GB) and the image this one replaced are
# left untagged: remove those that ansible-builder's scripts made, so runs do not pile them up.
for id in $(podman images -q --filter dangling=true); do
  if podman image history --no-trunc --format '{{.CreatedBy}}' "$id" 2>/dev/null | grep -q /output/scripts/; then
    podman rmi "$id" >/dev/null 2>&1 || true
  fi
done
fi

# --- 3. A deploy from the EE -------------------------------------------------------------
step "Test host on a podman network"
run=$work/run
net=slipway-ee-net-$$
host=slipway-ee-host-$$
cleanup() {
  podman rm -f -t 5 "$host" >/dev/null 2>&1 || true
  podman network rm -f "$net" >/dev/null 2>&1 || true
  rm -rf "$run"  # the SSH key and the generated secrets
}
trap cleanup EXIT
mkdir -p -m 0700 "$run"
ssh-keygen -q -t ed25519 -N '' -C slipway-ee -f "$run/id_ed25519"
podman network create "$net" >/dev/null
podman run -d --name "$host" --hostname "$host" --network "$net" --systemd=always \
  --mount "type=bind,src=$run/id_ed25519.pub,dst=/root/.ssh/authorized_keys,ro=true" \
  "$debian_image" /sbin/init >/dev/null
booted=
for _ in $(seq 1 60); do
  state=$(podman exec "$host" systemctl is-system-running 2>/dev/null || true)
  if [[ $state == running || $state == degraded ]]; then booted=1; break; fi
  sleep 1
done
[[ -n $booted ]] || { echo "the test host did not boot within 60 s (state: $state)" >&2; exit 1; }
podman exec "$host" systemctl start ssh

# The inventory of the run, mounted into the EE with the key at /runner/run. The EE runs as
# uid 1000 (ansible-builder's default USER): the directory and the key are that user's.
cat > "$run/inventory.yml" <<INV
---
all:
  vars:
    ansible_user: root
    ansible_python_interpreter: /usr/bin/python3
    ansible_ssh_private_key_file: /runner/run/id_ed25519
    ansible_ssh_common_args: >-
      -o UserKnownHostsFile=/runner/run/known_hosts -o StrictHostKeyChecking=accept-new
    slipway_environment: ee
    app_name: demo
    app_source: /runner/app
    app_allowed_hosts: [localhost, 127.0.0.1, $host]
    app_gunicorn_workers: 2
    app_celery_concurrency: 1
    app_health_release_field: release
    app_backup_min_free_bytes: 536870912
    slipway_credentials_dir: /runner/run/credentials
    app_secret_key: "{{ lookup('ansible.builtin.password', slipway_credentials_dir ~ '/secret_key', length=64, chars=['ascii_letters', 'digits']) }}"
    app_db_password: "{{ lookup('ansible.builtin.password', slipway_credentials_dir ~ '/db_password', length=32, chars=['ascii_letters', 'digits']) }}"
    app_redis_password: "{{ lookup('ansible.builtin.password', slipway_credentials_dir ~ '/redis_password', length=32, chars=['ascii_letters', 'digits']) }}"
  children:
    app: {hosts: {$host: {}}}
    db: {hosts: {$host: {}}}
    cache: {hosts: {$host: {}}}
    web: {hosts: {$host: {}}}
INV
chown -R 1000:0 "$run"
chown 0:0 "$run/id_ed25519.pub"  # the host's authorized_keys: sshd wants it root's

ee_run() {
  podman run --rm --network "$net" \
    -v "$run:/runner/run" -v "$PWD/examples/app:/runner/app:ro" \
    -e ANSIBLE_CALLBACKS_ENABLED=slipway.django.deploy_history \
    -e SLIPWAY_HISTORY_DB=/runner/run/history.sqlite3 \
    -e ANSIBLE_FORCE_COLOR=0 \
    "$ee_image" "$@"
}

step "In the EE: versions, docs, syntax check, ping"
ee_run ansible-playbook --version | sed -n 1p
ee_run ansible-doc -t module slipway.django.migrations | sed -n 1p
ee_run ansible-playbook -i /runner/run/inventory.yml --syntax-check slipway.django.deploy
ee_run ansible -i /runner/run/inventory.yml all -m ansible.builtin.ping

step "In the EE: ansible-playbook slipway.django.deploy"
ee_run ansible-playbook -i /runner/run/inventory.yml slipway.django.deploy

step "Checks"
health=$(podman exec "$host" python3 -c '
import urllib.request
with urllib.request.urlopen("http://localhost/health/", timeout=10) as r:
    print(r.status, r.read().decode())')
echo "GET /health/ -> $health"
[[ $health == "200 "* ]] || { echo "FAIL: /health/ did not answer 200" >&2; exit 1; }
release=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1].split(" ", 1)[1])["release"])' "$health")
record=$(podman exec "$host" cat "/srv/demo/releases/$release/.slipway-release.json")
echo "release $release recorded on the host: $(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["release_id"], r["source_type"])' "$record")"
# The deploy_history callback ran inside the EE (the collection's Python package, installed
# by the definition's append_final step): its record of this run, read with slipway-history.
history=$(ee_run slipway-history list --db /runner/run/history.sqlite3 --json)
python3 - "$history" "$release" <<'PY'
import json, sys
runs = json.loads(sys.argv[1])["runs"]
ok = [r for r in runs if r["kind"] == "deploy" and r["status"] == "success" and r["release_id"] == sys.argv[2]]
if not ok:
    sys.exit(f"FAIL: no successful deploy of release {sys.argv[2]} in the deploy history: {runs}")
r = ok[0]
print(f"deploy history: run {r['id']} {r['kind']} {r['status']} release {r['release_id']} in {r['duration']} s"
      f" (ansible-core {r['ansible_version']}, environment {r['environment']})")
PY
echo "PASS: deploy from $ee_image ($SECONDS s in all)"
