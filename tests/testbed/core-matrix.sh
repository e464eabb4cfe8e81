#!/usr/bin/env bash
# ansible-test sanity and the unit tests on every ansible-core version meta/runtime.yml claims
# (requires_ansible), each in its own virtualenv: .cache/core-matrix/VERSION holds that
# ansible-core and the unit tests' requirements (pytest, Django: tests/unit/testbed runs
# django-admin), made once and reused while the recipe holds.
#   tests/testbed/core-matrix.sh [VERSION@PYTHON ...]
# Without arguments: the pinned ansible-core (requirements-dev.txt) on Python 3.11, and the
# newest 2.20 and 2.21 (which need Python 3.12+) on 3.12 and 3.13. Keep this list and
# requires_ansible in step. Logs: .cache/core-matrix/logs/; the table at the end says what passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tests/testbed/venvs.sh
source tests/testbed/venvs.sh

pinned=$(pin ansible-core) || exit 2
if (( $# )); then
    matrix=("$@")
else
    matrix=("${pinned#*==}@3.11" "2.20.10@3.12" "2.21.5@3.13")
fi
unit_requirements=()
# (aiosmtpd: the notifications' unit tests deliver to a real SMTP server; the database drivers:
# the scheduled backups' runner checks for its engine's before it dumps.)
for name in pytest Django aiosmtpd psycopg2-binary PyMySQL; do
    unit_requirements+=("$(pin "$name")") || exit 2
done
# The default matrix and requires_ansible must agree: every version tested is claimed, and every
# minor claimed (up to 2.40) is tested. (Given versions are not checked: try a new one first.)
(( $# )) || "$root/.venv/bin/python" - meta/runtime.yml "${matrix[@]%@*}" <<'EOF' || exit 2
import sys

import yaml
from packaging.specifiers import SpecifierSet

claimed = SpecifierSet(yaml.safe_load(open(sys.argv[1]))["requires_ansible"])
tested = sys.argv[2:]
errors = [f"{version} is tested but not in requires_ansible {claimed}"
          for version in tested if version not in claimed]
minors = {".".join(version.split(".")[:2]) for version in tested}
errors += [f"requires_ansible {claimed} claims 2.{minor}, which the matrix does not test"
           for minor in range(9, 41) if f"2.{minor}.0" in claimed and f"2.{minor}" not in minors]
if errors:
    sys.exit("core-matrix: " + "; ".join(errors))
EOF
logs=.cache/core-matrix/logs
mkdir -p "$logs"
# The unit tests import the collection through this link (tests/conftest.py), as `make venv`
# makes it.
if [[ ! -e .cache/collections/ansible_collections/slipway/django ]]; then
    mkdir -p .cache/collections/ansible_collections/slipway
    ln -sfn ../../../.. .cache/collections/ansible_collections/slipway/django
fi

run() {  # run NAME COMMAND...: COMMAND's output to $logs/NAME.log; "passed"/"FAILED" and seconds
    local name=$1 start rc
    shift
    start=$SECONDS
    "$@" > "$logs/$name.log" 2>&1
    rc=$?
    if (( rc == 0 )); then
        echo "passed $((SECONDS - start))s"
    else
        echo "FAILED $((SECONDS - start))s"
    fi
}

rows=() failed=() rc=0 total_start=$SECONDS
for entry in "${matrix[@]}"; do
    version=${entry%@*} python_version=${entry#*@}
    if [[ $entry != *@* || -z $version || -z $python_version ]]; then
        echo "core-matrix: $entry is not VERSION@PYTHON (e.g. 2.20.10@3.12)" >&2
        exit 2
    fi
    echo "== ansible-core $version on Python $python_version"
    venv=.cache/core-matrix/$version
    if ! python=$(find_python "$python_version") \
            || ! ensure_venv "$venv" "$python" "ansible-core==$version" "${unit_requirements[@]}"; then
        rows+=("$version|$python_version|no venv|no venv")
        rc=1
        continue
    fi
    venv_bin=$root/$venv/bin
    sanity=$(run "$version-sanity" env PATH="$venv_bin:$PATH" SANITY_PYTHON="$python_version" \
        bash tests/sanity.sh)
    unit=$(run "$version-unit" "$venv_bin/python" -m pytest -q -p no:cacheprovider tests/unit)
    [[ $sanity == passed* ]] || { rc=1; failed+=("$logs/$version-sanity.log"); }
    [[ $unit == passed* ]] || { rc=1; failed+=("$logs/$version-unit.log"); }
    echo "   sanity: $sanity; unit: $unit ($(tail -n 1 "$logs/$version-unit.log"))"
    rows+=("$version|$("$venv_bin/python" -c 'import platform; print(platform.python_version())')|$sanity|$unit")
done

echo
printf '%-14s %-8s %-16s %-16s\n' ansible-core python sanity unit
for row in "${rows[@]}"; do
    IFS='|' read -r version python_version sanity unit <<< "$row"
    printf '%-14s %-8s %-16s %-16s\n' "$version" "$python_version" "$sanity" "$unit"
done
echo "core-matrix: $((SECONDS - total_start))s; logs in $logs/"
for log in "${failed[@]}"; do
    echo "===== $log (its end)"
    tail -n 60 "$log"
done
exit $rc
