#!/usr/bin/env bash
# One molecule scenario on the newest ansible-core that meta/runtime.yml claims (the core
# matrix runs sanity and the unit tests on every one; this proves a whole deploy on real hosts).
#   tests/testbed/core-molecule.sh [VERSION@PYTHON [SCENARIO]]
# Default: ansible-core 2.21.5 on Python 3.13 (pyenv's), the debian13 scenario (Debian 13 hosts,
# PostgreSQL and MariaDB, a Django 6 project on Python 3.13). The controller's virtualenv
# (.cache/core-molecule/VERSION) holds that ansible-core, molecule with its podman driver, the
# verifier, and the collections of the `ansible` package requirements-dev.txt pins (installed
# without its own ansible-core pin: the collections are the ones the rest of the suite uses).
# The collection itself is used in place, and its Python package (the history callback's) from
# src/. The scenario's containers and ports are its own: do not run it beside `make test`.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tests/testbed/venvs.sh
source tests/testbed/venvs.sh

entry=${1:-2.21.5@3.13}
scenario=${2:-debian13}
version=${entry%@*} python_version=${entry#*@}
if [[ $entry != *@* || -z $version || -z $python_version ]]; then
    echo "core-molecule: $entry is not VERSION@PYTHON (e.g. 2.21.5@3.13)" >&2
    exit 2
fi
if [[ ! -d molecule/$scenario ]]; then
    echo "core-molecule: no scenario molecule/$scenario" >&2
    exit 2
fi
requirements=("ansible-core==$version")
for name in molecule 'molecule-plugins\[podman\]' pytest pytest-testinfra; do
    requirements+=("$(pin "$name")") || exit 2
done
ansible_pin=$(pin ansible) || exit 2
venv=.cache/core-molecule/$version
python=$(find_python "$python_version") || exit 2
ensure_venv "$venv" "$python" "${requirements[@]}" || exit 2
# The collections only: `ansible` pins its own ansible-core minor.
if [[ ! -f $venv/.collections || $(<"$venv/.collections") != "$ansible_pin" ]]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$ansible_pin" \
        || exit 2
    printf '%s' "$ansible_pin" > "$venv/.collections"
fi
if [[ ! -e .cache/collections/ansible_collections/slipway/django ]]; then
    mkdir -p .cache/collections/ansible_collections/slipway
    ln -sfn ../../../.. .cache/collections/ansible_collections/slipway/django
fi

core=$("$venv/bin/ansible" --version | head -n 1)
echo "core-molecule: $scenario with $core on Python $("$venv/bin/python" -c \
    'import platform; print(platform.python_version())')"
mkdir -p .cache/molecule-logs
log=.cache/molecule-logs/core-$version-$scenario.log
SECONDS=0
if env PATH="$root/$venv/bin:$PATH" PYTHONPATH="$root/src" ANSIBLE_CONFIG="$root/ansible.cfg" \
        PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 molecule test -s "$scenario" > "$log" 2>&1; then
    echo "core-molecule: $scenario on ansible-core $version passed in ${SECONDS}s (log: $log)"
else
    echo "core-molecule: $scenario on ansible-core $version FAILED after ${SECONDS}s; its log's end:"
    tail -n 80 "$log"
    exit 1
fi
