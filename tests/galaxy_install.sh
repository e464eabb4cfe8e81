#!/usr/bin/env bash
# Install the collection as its users do and check that what they get works: build the tarball,
# install it with ansible-galaxy into an empty collections directory, with the dependencies its
# galaxy.yml declares and nothing else, from a virtualenv holding only the pinned ansible-core
# (no `ansible` package, so no bundled collections), outside this checkout and its ansible.cfg.
# Then:
#   - every file git tracks under plugins/, roles/, playbooks/ and meta/ is in the install;
#   - every plugin's Python imports from the install (modules with their module_utils, the
#     action and callback plugins with their plugin_utils);
#   - ansible-doc shows every module, lookup, filter, test and callback plugin, each action
#     plugin's module, and every role;
#   - ansible-playbook --syntax-check passes for every playbook in playbooks/ (run by its name,
#     slipway.django.NAME, with the install's inventories/production.example), and for every
#     tasks file of every role (imported one by one: the playbooks include some roles and files
#     only at run time, which a syntax check does not follow).
# There is no Galaxy server here: each dependency is installed from the copy the `ansible`
# package bundles in the shared .venv; a dependency that is not bundled, or whose bundled
# version is outside the range galaxy.yml gives, fails the install. A collection the roles use
# but galaxy.yml does not declare is not installed, and the checks above fail on it.
# The virtualenv is .cache/galaxy-check/CORE_VERSION, made once and reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=tests/testbed/venvs.sh
source tests/testbed/venvs.sh

core=$(pin ansible-core)
venv=$root/.cache/galaxy-check/${core#*==}
# The controller's Python (the shared .venv's base interpreter), with nothing but ansible-core.
ensure_venv "$venv" "$root/.venv/bin/python" "$core"
bin=$venv/bin
if "$bin/python" -c 'import ansible_collections' 2>/dev/null; then
    echo "galaxy-check: $venv has bundled collections (the ansible package?); remove it" >&2
    exit 1
fi
# The shared .venv's bundled collections (the `ansible` package): the dependencies' source.
bundled=$(echo "$root"/.venv/lib/python3*/site-packages/ansible_collections)
[[ -d $bundled ]] || { echo "galaxy-check: no bundled collections at $bundled" >&2; exit 1; }

work=$(mktemp -d /tmp/slipway-galaxy.XXXXXX)
trap 'rm -rf "$work"' EXIT
collections=$work/collections
mkdir -p "$collections" "$work/roles" "$work/home"
# Nothing but the install: no ansible.cfg of this checkout, no ~/.ansible, no site-packages; a
# collection whose requires_ansible excludes this ansible-core is an error.
: > "$work/ansible.cfg"
export ANSIBLE_CONFIG=$work/ansible.cfg ANSIBLE_HOME=$work/home \
    ANSIBLE_COLLECTIONS_PATH=$collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
    ANSIBLE_ROLES_PATH=$work/roles ANSIBLE_NOCOLOR=1 \
    ANSIBLE_COLLECTIONS_ON_ANSIBLE_VERSION_MISMATCH=error SLIPWAY_HISTORY_DB=$work/history.sqlite3
cd "$work"

fail() {
    echo "galaxy-check: FAILED: $*" >&2
    exit 1
}

echo "== build ($core)"
"$bin/ansible-galaxy" collection build --output-path "$work/dist" "$root"
tarball=$(echo "$work"/dist/slipway-django-*.tar.gz)
[[ -f $tarball ]] || fail "the build made no slipway-django tarball"

# name and range of each dependency, as the tarball's MANIFEST.json carries galaxy.yml's.
manifest_dependencies=$("$bin/python" - "$tarball" <<'EOF'
import json
import sys
import tarfile

with tarfile.open(sys.argv[1]) as tar:
    info = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
for name, spec in sorted(info["dependencies"].items()):
    print(name, spec)
EOF
)
dependencies=()
[[ -z $manifest_dependencies ]] || mapfile -t dependencies <<< "$manifest_dependencies"
sources=()
for dependency in "${dependencies[@]}"; do
    name=${dependency%% *}
    source_dir=$bundled/${name/.//}
    [[ -f $source_dir/MANIFEST.json ]] \
        || fail "galaxy.yml depends on $name (${dependency#* }), which the ansible package does not bundle"
    sources+=("$source_dir")
done

echo "== install into an empty directory: the tarball and its dependencies (${dependencies[*]:-none})"
"$bin/ansible-galaxy" collection install --offline -p "$collections" "$tarball" "${sources[@]}"
installed=$collections/ansible_collections/slipway/django
"$bin/ansible-galaxy" collection list -p "$collections" --format json > "$work/list.json"
"$bin/python" - "$work/list.json" "${dependencies[@]}" <<'EOF' || fail "the install holds other collections than it should"
import json
import sys

# ansible-core's own (ansible._protomatter) are listed too.
listed = {name for by_path in json.load(open(sys.argv[1])).values() for name in by_path
          if not name.startswith("ansible.")}
expected = {"slipway.django"} | {dependency.split()[0] for dependency in sys.argv[2:]}
if listed != expected:
    print(f"installed {sorted(listed)}, expected {sorted(expected)}", file=sys.stderr)
    sys.exit(1)
print("installed:", ", ".join(sorted(listed)))
EOF

echo "== every tracked file of plugins/, roles/, playbooks/ and meta/ is installed"
missing=$(cd "$root" && git ls-files plugins roles playbooks meta | while read -r file; do
    [[ -e $installed/$file ]] || echo "$file"
done)
[[ -z $missing ]] || fail "the tarball lacks (build_ignore?):"$'\n'"$missing"

echo "== every plugin imports from the install"
"$bin/python" - "$collections" "$installed" <<'EOF' || fail "a plugin does not import from the install"
import importlib
import sys
from pathlib import Path

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

_AnsibleCollectionFinder(paths=[sys.argv[1]], scan_sys_paths=False)._install()
root = Path(sys.argv[2])
failed = 0
count = 0
for path in sorted((root / "plugins").glob("*/*.py")):
    if path.name == "__init__.py":
        continue
    name = "ansible_collections.slipway.django." + ".".join(path.relative_to(root).with_suffix("").parts)
    count += 1
    try:
        importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - report every plugin that fails, then fail
        print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
        failed += 1
print(f"{count} plugin files imported, {failed} failed")
sys.exit(1 if failed or not count else 0)
EOF

doc() {  # doc TYPE NAME: ansible-doc shows it, or the check fails
    local output
    output=$("$bin/ansible-doc" -t "$1" "slipway.django.$2" 2>&1) \
        || fail "ansible-doc -t $1 slipway.django.$2:"$'\n'"$output"
    [[ $output == *"slipway.django.$2"* ]] || fail "ansible-doc -t $1 slipway.django.$2 shows:"$'\n'"$output"
    if grep -q '\[WARNING\]' <<< "$output"; then
        fail "ansible-doc -t $1 slipway.django.$2 warns:"$'\n'"$(grep -A3 WARNING <<< "$output")"
    fi
    echo "ansible-doc -t $1 slipway.django.$2: ok"
}

echo "== ansible-doc for every plugin and role"
count=0
for type_dir in modules:module lookup:lookup filter:filter test:test callback:callback action:module; do
    dir=${type_dir%%:*} type=${type_dir#*:}
    for plugin in "$root"/plugins/"$dir"/*.py; do
        [[ -e $plugin ]] || continue
        name=$(basename "$plugin" .py)
        [[ $name == __init__ ]] && continue
        doc "$type" "$name"
        count=$((count + 1))
    done
done
# Filter and test files may hold more than one plugin: each listed one too.
for type in filter test; do
    while read -r name; do
        doc "$type" "${name#slipway.django.}"
        count=$((count + 1))
    done < <("$bin/ansible-doc" -t "$type" -l slipway.django --json \
             | "$bin/python" -c 'import json, sys; print(*sorted(json.load(sys.stdin)), sep="\n")' \
             | grep -v -x -F -f <(for f in "$root"/plugins/"$type"/*.py; do
                   echo "slipway.django.$(basename "$f" .py)"; done))
done
for role in "$root"/roles/*/; do
    doc role "$(basename "$role")"
    count=$((count + 1))
done
echo "ansible-doc: $count plugins and roles"

echo "== ansible-playbook --syntax-check"
inventory=$installed/inventories/production.example/hosts.yml
[[ -f $inventory ]] || fail "the tarball has no inventories/production.example/hosts.yml"
for playbook in "$root"/playbooks/*.yml; do
    name=$(basename "$playbook" .yml)
    [[ -f $installed/playbooks/$name.yml ]] || fail "playbooks/$name.yml is not installed"
    "$bin/ansible-playbook" -i "$inventory" --syntax-check "slipway.django.$name" \
        || fail "ansible-playbook --syntax-check slipway.django.$name"
done
# Each tasks file of each role, imported on its own.
{
    echo "- name: Every tasks file of every role"
    echo "  hosts: localhost"
    echo "  gather_facts: false"
    echo "  tasks:"
    for tasks in "$installed"/roles/*/tasks/*.yml; do
        role=$(basename "$(dirname "$(dirname "$tasks")")")
        echo "    - name: Import $role/tasks/$(basename "$tasks")"
        echo "      ansible.builtin.import_role:"
        echo "        name: slipway.django.$role"
        echo "        tasks_from: $(basename "$tasks")"
    done
} > "$work/every-tasks-file.yml"
"$bin/ansible-playbook" -i localhost, --syntax-check "$work/every-tasks-file.yml" \
    || fail "a role's tasks file does not pass --syntax-check (an undeclared collection?)"
echo "galaxy-check: passed ($(basename "$tarball") with ${dependencies[*]:-no dependencies}, ansible-core ${core#*==})"
