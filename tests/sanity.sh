#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection: ansible-test needs a real
# .../ansible_collections/slipway/django/ path (it resolves symlinks) and no container engine here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/slipway-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/slipway/django"
mkdir -p "$dest"
# Only what the collection ships (plus tests/sanity ignores, if any), and git metadata so
# ansible-test limits itself to tracked files.
rsync -a --exclude .venv --exclude .cache --exclude '__pycache__' --exclude molecule \
  --exclude examples --exclude benchmarks --exclude tests/integration --exclude src \
  "$root/" "$dest/"
cd "$dest"
ansible-test sanity --python 3.11 --venv --color no "$@"
