# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: role_fingerprint
short_description: A digest of what a role of this collection would do on a host
version_added: "0.2.0"
description:
  - Returns, for each role named, a SHA-256 digest of everything that decides what the role does
    on the current host, computed on the controller without contacting the host.
  - It covers every file of the role (tasks, templates, defaults, vars, handlers, meta, files),
    the collection's version, the host's Debian release and architecture, and the value, as
    templated for this host, of every variable the role's files name (such as
    C(nginx_client_max_body_size) or C(app_db_password)).
  - Two runs with the same digest would give the role the same inputs; the C(provision) role
    records it on the host after a run and skips the role while it matches.
  - Variables whose value changes on every run (C(omit)'s placeholder, the date and time, the
    play's host list) are left out, and so are the roles' own facts (names starting with two
    underscores, set during the run); a value that cannot be templated counts as undefined.
author:
  - slipway developers (@slipway)
options:
  _terms:
    description: Names of roles of this collection (such as C(nginx)).
    type: list
    elements: str
    required: true
  exclude:
    description: Variables that do not count, such as a run's own id.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: What nginx would be given on this host
  ansible.builtin.debug:
    msg: "{{ lookup('slipway.django.role_fingerprint', 'nginx') }}"

- name: What the app role would be given, but for the run's own id
  ansible.builtin.debug:
    msg: "{{ lookup('slipway.django.role_fingerprint', 'app', exclude=['app_deploy_run_id']) }}"
"""

RETURN = r"""
_raw:
  description: One hexadecimal SHA-256 digest per role named.
  type: list
  elements: str
"""

import hashlib
import json
import re
from pathlib import Path

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*")
FACT_KEY = re.compile(r"ansible_facts(?:\.|\[[\"'])([A-Za-z0-9_]+)")
# Facts that decide what a package or a configuration looks like on any host.
HOST_FACTS = ("distribution", "distribution_major_version", "architecture")
# Names that change on every run or with --limit, or hold every host's variables.
VOLATILE = frozenset({
    "omit", "hostvars", "vars", "play_hosts", "environment", "ansible_date_time",
    "ansible_uptime_seconds", "ansible_memfree_mb", "ansible_play_batch", "ansible_play_hosts",
    "ansible_play_hosts_all", "ansible_run_tags", "ansible_skip_tags", "ansible_facts",
    "ansible_managed", "ansible_limit", "ansible_loop", "ansible_loop_var", "role_path",
})


def role_files(role: str) -> list[Path]:
    if not ROLE_NAME.match(role):
        raise AnsibleLookupError(f"role_fingerprint: {role!r} is not a role name of this "
                                 "collection (such as nginx)")
    root = COLLECTION_ROOT / "roles" / role
    if not root.is_dir():
        raise AnsibleLookupError(
            f"role_fingerprint: no role {role!r} in {COLLECTION_ROOT / 'roles'}")
    return sorted(path for path in root.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


def collection_version() -> str:
    galaxy = COLLECTION_ROOT / "galaxy.yml"
    manifest = COLLECTION_ROOT / "MANIFEST.json"
    if manifest.is_file():
        return str(json.loads(manifest.read_text())["collection_info"]["version"])
    found = re.search(r"^version:\s*(\S+)", galaxy.read_text(), re.M) if galaxy.is_file() else None
    return found.group(1) if found else "unknown"


class LookupModule(LookupBase):

    def _value(self, value, omit_token: str):
        try:
            templated = self._templar.template(value)
        except AnsibleError:
            return "<undefined>"
        text = json.dumps(templated, sort_keys=True, default=str)
        return text.replace(omit_token, "<omit>") if omit_token else text

    def fingerprint(self, role: str, variables: dict, exclude: frozenset = frozenset()) -> str:
        digest = hashlib.sha256()
        names, facts = set(), set(HOST_FACTS)
        for path in role_files(role):
            content = path.read_bytes()
            digest.update(f"file {path.relative_to(COLLECTION_ROOT)} {len(content)}\n".encode())
            digest.update(content)
            text = content.decode("utf-8", "replace")
            names.update(IDENTIFIER.findall(text))
            facts.update(FACT_KEY.findall(text))
        omit_token = str(variables.get("omit", "")) or None
        inputs = {"collection": collection_version(), "role": role}
        for name in sorted(names - VOLATILE - exclude):
            # Names with two leading underscores are the roles' own facts, set during the run.
            if name in variables and not name.startswith("__"):
                inputs[f"var {name}"] = self._value(variables[name], omit_token)
        host_facts = variables.get("ansible_facts") or {}
        for fact in sorted(facts):
            if fact in host_facts:
                inputs[f"fact {fact}"] = self._value(host_facts[fact], omit_token)
        digest.update(json.dumps(inputs, sort_keys=True).encode())
        return digest.hexdigest()

    def run(self, terms, variables=None, **kwargs):
        exclude = kwargs.get("exclude") or []
        if isinstance(exclude, str) or not isinstance(exclude, (list, tuple, set, frozenset)):
            raise AnsibleLookupError(f"role_fingerprint: exclude must be a list of variable names, "
                                     f"found {exclude!r}")
        exclude = frozenset(str(name) for name in exclude)
        return [self.fingerprint(str(role), variables or {}, exclude) for role in terms]
