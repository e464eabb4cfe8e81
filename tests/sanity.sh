#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection: ansible-test needs a real
# .../ansible_collections/slipway/django/ path (it resolves symlinks) and no container engine here.
# It runs the ansible-test on PATH, for SANITY_PYTHON (3.11, the controller's, unless set: the
# core matrix sets its own venv's); extra arguments go to ansible-test (--test NAME).
set -euo pipefail
sanity_python=${SANITY_PYTHON:-3.11}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/slipway-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/slipway/django"
mkdir -p "$dest"
# Only what the collection ships (plus tests/sanity ignores, if any), and git metadata so
# ansible-test limits itself to tracked files.
tar -C "$root" --exclude=./.venv --exclude=./.cache --exclude='__pycache__' --exclude=./molecule \
  --exclude=./examples --exclude=./benchmarks --exclude=./tests/integration --exclude=./tests/output \
  --exclude="./src/*.egg-info" -cf - . | tar -C "$dest" -xf -
# ansible-test bootstraps pip in its venvs with a script it downloads from a host that is not
# reachable here; give it a local stand-in under the name it looks for.
pip_version=$(python3 -c 'import re,sys; print(re.search(r"pip=.([0-9.]+)", sys.stdin.read()).group(1))' \
  < "$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cp "$root/tests/sanity-get-pip.py" "$cache"
cd "$dest"
ansible-test sanity --python "$sanity_python" --venv --color no "$@"
