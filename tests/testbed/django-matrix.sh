#!/usr/bin/env bash
# The migrations module's integration tests (tests/integration/migrations) on each Django version
# the module supports: the module runs under the host's python as always, and its helper under
# the app's virtualenv, here .cache/django-matrix/DJANGO-pyPYTHON (that Django and the database
# drivers the test projects use), made once and reused while the recipe holds.
#   tests/testbed/django-matrix.sh [DJANGO@PYTHON ...]
# Without arguments: the LTS releases 4.2 (on Python 3.11, Debian 12's) and 5.2 (the pinned one,
# which make integration runs on 3.11: here on 3.12), and 6.0 on Python 3.12 and 3.13 (it needs
# 3.12+). The tests start their own PostgreSQL and MariaDB servers (make host installs them).
# Logs: .cache/django-matrix/logs/; the table at the end says what passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tests/testbed/venvs.sh
source tests/testbed/venvs.sh

django_pin=$(pin Django) || exit 2
if (( $# )); then
    matrix=("$@")
else
    matrix=("4.2.30@3.11" "${django_pin#*==}@3.12" "6.0.10@3.12" "6.0.10@3.13")
fi
# The test projects' database drivers, as the controller's tests pin them.
psycopg2_pin=$(pin psycopg2-binary) && pymysql_pin=$(pin PyMySQL) || exit 2
drivers=("$psycopg2_pin" "$pymysql_pin")
logs=.cache/django-matrix/logs
mkdir -p "$logs"

rows=() failed=() rc=0 total_start=$SECONDS
for entry in "${matrix[@]}"; do
    version=${entry%@*} python_version=${entry#*@}
    if [[ $entry != *@* || -z $version || -z $python_version ]]; then
        echo "django-matrix: $entry is not DJANGO@PYTHON (e.g. 6.0.10@3.12)" >&2
        exit 2
    fi
    echo "== Django $version on Python $python_version"
    venv=.cache/django-matrix/$version-py$python_version
    if ! python=$(find_python "$python_version") \
            || ! ensure_venv "$venv" "$python" "Django==$version" "${drivers[@]}"; then
        rows+=("$version|$python_version|no venv")
        rc=1
        continue
    fi
    log=$logs/$version-py$python_version.log
    start=$SECONDS
    if SLIPWAY_TEST_APP_VENV=$root/$venv "$root/.venv/bin/python" -m pytest -q \
            -p no:cacheprovider tests/integration/migrations > "$log" 2>&1; then
        result="passed $((SECONDS - start))s"
    else
        result="FAILED $((SECONDS - start))s"
        rc=1
        failed+=("$log")
    fi
    echo "   $result ($(tail -n 1 "$log"))"
    rows+=("$version|$("$venv/bin/python" -c 'import platform; print(platform.python_version())')|$result")
done

echo
printf '%-10s %-8s %s\n' Django python migrations
for row in "${rows[@]}"; do
    IFS='|' read -r version python_version result <<< "$row"
    printf '%-10s %-8s %s\n' "$version" "$python_version" "$result"
done
echo "django-matrix: $((SECONDS - total_start))s; logs in $logs/"
for log in "${failed[@]}"; do
    echo "===== $log (its end)"
    tail -n 80 "$log"
done
exit $rc
