# Sourced by the matrix scripts (core-matrix.sh, django-matrix.sh, galaxy_install.sh): find a
# Python by version and keep throw-away virtualenvs under .cache, reused while their recipe holds.

# find_python 3.12: the path of a python3.12 - pyenv's newest 3.12.x, else a real one on PATH
# (pyenv's shims on PATH answer only for the version pyenv has selected).
find_python() {
    local version=$1 root candidate micro best= best_micro=-1
    root=${PYENV_ROOT:-$HOME/.pyenv}
    if command -v pyenv >/dev/null; then
        root=$(pyenv root)
    fi
    for candidate in "$root"/versions/"$version".*/bin/python"$version"; do
        [[ -x $candidate ]] || continue
        micro=$("$candidate" -c 'import sys; print(sys.version_info[2])') || continue
        if (( micro > best_micro )); then
            best=$candidate best_micro=$micro
        fi
    done
    if [[ -z $best ]]; then
        candidate=$(command -v "python$version" || true)
        if [[ -n $candidate && $candidate != */shims/* ]]; then
            best=$candidate
        fi
    fi
    if [[ -z $best ]]; then
        echo "No Python $version: looked in $root/versions/$version.* and on PATH;" \
             "install one (pyenv install $version)." >&2
        return 1
    fi
    echo "$best"
}

# ensure_venv DIR PYTHON REQUIREMENT...: a virtualenv at DIR made with PYTHON holding these
# requirements (pip specifiers); reused as long as the python and the requirements are the same,
# made again from scratch when they change.
ensure_venv() {
    local dir=$1 python=$2 recipe
    shift 2
    recipe="$("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])') $*"
    if [[ -x $dir/bin/python && -f $dir/.recipe && $(<"$dir/.recipe") == "$recipe" ]]; then
        return 0
    fi
    echo "Creating $dir ($*)" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir" || return 1
    # (Without this machine's pip warnings about index directories it lacks.)
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v -F 'is ignored: it is neither a file nor a directory' || true; } >&2
    if (( PIPESTATUS[0] )); then
        echo "pip could not install $* into $dir" >&2
        rm -rf "$dir"
        return 1
    fi
    printf '%s' "$recipe" > "$dir/.recipe"
}

# pin NAME: NAME's pinned specifier in requirements-dev.txt (NAME==VERSION), or fail.
pin() {
    local root line
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    line=$(grep -i -m1 -E "^$1==" "$root/requirements-dev.txt") || {
        echo "requirements-dev.txt pins no $1" >&2
        return 1
    }
    echo "$line"
}
