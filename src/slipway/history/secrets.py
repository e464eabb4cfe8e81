"""Keep secrets out of the deploy history: find the secret values among a run's variables and
task arguments, so that the scrubber (slipway.history.store, shared with the console) masks them
wherever they appear in text bound for the store. Needs PyYAML, and ansible-core to recognise
the vaulted values of ansible-core 2.19 and later.

A value is secret when it is vaulted (under any name), when it sits under a secret-looking name
or a name that a role's argument spec marks ``no_log``, when it is the password of a URL, when
a module marks its argument ``no_log``, or when a ``no_log`` task renders it from a template.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from slipway.history.store import MASK, url_passwords

try:
    from ansible.parsing.vault import VaultHelper
except ImportError:  # ansible-core < 2.19: vaulted values are AnsibleVaultEncryptedUnicode
    VaultHelper = None

SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|key|credential", re.IGNORECASE)
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
VALIDATE_ACTIONS = frozenset({"validate_argument_spec", "ansible.builtin.validate_argument_spec",
                              "ansible.legacy.validate_argument_spec"})
_VAULT_TYPES = frozenset({"EncryptedString", "AnsibleVaultEncryptedUnicode"})
# Arguments that name places, owners and states: a no_log task renders them from ordinary
# variables, and masking those everywhere would blank out the log.
_PLAIN_ARGUMENTS = frozenset({
    "dest", "path", "src", "owner", "group", "mode", "state", "name", "host", "port", "chdir",
    "creates", "removes", "validate", "login_host", "login_port", "login_user",
    "login_unix_socket", "become_user",
})
_PLAIN_VALUE = re.compile(r"[-+]?\d+(\.\d+)?|true|false|yes|no|none|null|[/~].*",
                          re.IGNORECASE | re.DOTALL)
# What a no_log task's template renders under an ordinary name is masked only from this length
# on: shorter ones are mostly user and group names ("admin", "deploy"), seen all over a log.
MIN_RENDERED_SECRET_LENGTH = 8
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def looks_secret(name: object, secret_names: Iterable[str] = ()) -> bool:
    return isinstance(name, str) and (SECRET_NAME.search(name) is not None
                                      or name in secret_names)


def is_vaulted(value: Any) -> bool:
    """A vault-encrypted value, or one decrypted from the vault (ansible-core 2.19 tags it)."""
    if type(value).__name__ in _VAULT_TYPES:
        return True
    if VaultHelper is None or type(value) in (str, int, float, bool) or value is None:
        return False
    try:
        return VaultHelper.get_ciphertext(value, with_tags=False) is not None
    except Exception:
        return False


def _text(value: Any) -> str | None:
    if isinstance(value, str) or type(value).__name__ in _VAULT_TYPES:
        try:
            return str(value)  # decrypts; without the vault password there is nothing to mask
        except Exception:
            return None
    return None


def secret_values(variables: Any, render: Callable[[str], Any] | None = None,
                  secret_names: Iterable[str] = (), inside_secret: bool = False) -> set[str]:
    """The secret string values among ``variables``, at any depth: those under a secret-looking
    name or one of ``secret_names``, vaulted ones under any name, and the passwords of URLs.

    A templated value under a secret name is rendered with ``render`` when one is given (a
    value that fails to render is skipped), and skipped otherwise.
    """
    found: set[str] = set()
    if isinstance(variables, Mapping):
        for name, value in variables.items():
            found |= secret_values(value, render, secret_names,
                                   inside_secret or looks_secret(name, secret_names))
    elif isinstance(variables, (list, tuple)):
        for value in variables:
            found |= secret_values(value, render, secret_names, inside_secret)
    elif is_vaulted(variables):
        text = _text(variables)
        if text:
            found.add(text)
    else:
        text = _text(variables)
        if not text:
            return found
        if inside_secret:
            if "{{" in text:
                text = _render(render, text)
            if text and "{{" not in text:
                found.add(text)
        else:
            found |= {password for password in url_passwords(text) if "{{" not in password}
    return found


def _render(render: Callable[[str], Any] | None, text: str) -> str | None:
    if render is None:
        return None
    try:
        return _text(render(text))
    except Exception:
        return None


def mask_secret_names(variables: Any, secret_names: Iterable[str] = ()) -> Any:
    """A copy of ``variables`` with the value of every secret-looking name, and every vaulted
    value, replaced by MASK."""
    if isinstance(variables, Mapping):
        return {str(name): MASK if looks_secret(name, secret_names)
                else mask_secret_names(value, secret_names)
                for name, value in variables.items()}
    if isinstance(variables, (list, tuple)):
        return [mask_secret_names(value, secret_names) for value in variables]
    if is_vaulted(variables):
        return MASK
    if isinstance(variables, (str, int, float, bool)) or variables is None:
        return variables
    return str(variables)


# Role argument specs

def no_log_options(options: Any) -> set[str]:
    """The names of the options (and suboptions, at any depth) that an argument spec marks
    ``no_log``."""
    names: set[str] = set()
    if not isinstance(options, Mapping):
        return names
    for name, spec in options.items():
        if not isinstance(spec, Mapping):
            continue
        if str(spec.get("no_log")).lower() in ("true", "yes", "1", "on"):
            names.add(str(name))
        names |= no_log_options(spec.get("options"))
    return names


@functools.cache
def role_no_log_options(role_path: str) -> frozenset[str]:
    """The no_log options of every entry point of the role at ``role_path``; none if the role
    has no argument spec or it cannot be read."""
    meta = Path(role_path) / "meta"
    for name in ("argument_specs.yml", "argument_specs.yaml", "main.yml", "main.yaml"):
        try:
            data = yaml.safe_load((meta / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        specs = data.get("argument_specs") if isinstance(data, Mapping) else None
        if isinstance(specs, Mapping):
            return frozenset().union(*(no_log_options(entry.get("options"))
                                       for entry in specs.values()
                                       if isinstance(entry, Mapping)))
    return frozenset()


def collection_role_paths(roles_dir: str | Path) -> list[str]:
    """The roles under ``roles_dir`` (the callback gives its collection's ``roles``): their
    no_log options are known before any of them is included."""
    try:
        return sorted(str(path) for path in Path(roles_dir).iterdir() if path.is_dir())
    except OSError:
        return []


# Task arguments

def no_log_argument_values(args: Any, module_args: Any) -> set[str]:
    """The values of the arguments that the module reported as no_log (its invocation shows
    the placeholder where ``args`` has the value)."""
    found: set[str] = set()
    if isinstance(module_args, Mapping) and isinstance(args, Mapping):
        for name, reported in module_args.items():
            if name in args:
                if reported == NO_LOG_PLACEHOLDER:
                    found |= secret_values(args[name], inside_secret=True)
                else:
                    found |= no_log_argument_values(args[name], reported)
    elif isinstance(module_args, list) and isinstance(args, list):
        for value, reported in zip(args, module_args, strict=False):
            found |= no_log_argument_values(value, reported)
    return found


def no_log_task_values(args: Any, raw_args: Any, secret_names: Iterable[str] = (),
                       inside_secret: bool = False) -> set[str]:
    """The secrets among the rendered arguments ``args`` of a no_log task, whose arguments were
    ``raw_args`` before rendering: every value under a secret name, and what the task's
    templates rendered to, except in arguments that name places, owners or states, and except
    short values, numbers, booleans and paths."""
    found: set[str] = set()
    if isinstance(args, Mapping):
        raw = raw_args if isinstance(raw_args, Mapping) else {}
        for name, value in args.items():
            if isinstance(name, str) and name.startswith("_ansible_"):
                continue  # module settings the action plugin added
            if name in _PLAIN_ARGUMENTS and not inside_secret:
                continue
            found |= no_log_task_values(value, raw.get(name), secret_names,
                                        inside_secret or looks_secret(name, secret_names))
    elif isinstance(args, (list, tuple)):
        raw = raw_args if isinstance(raw_args, (list, tuple)) and \
            len(raw_args) == len(args) else [None] * len(args)
        for value, raw_value in zip(args, raw, strict=True):
            found |= no_log_task_values(value, raw_value, secret_names, inside_secret)
    else:
        text = _text(args)
        if not text or "{{" in text:
            return found  # nothing, or not rendered (a loop's own result)
        if inside_secret or is_vaulted(args):
            found.add(text)
        elif isinstance(raw_args, str) and "{{" in raw_args and raw_args != text:
            found |= {output for output in template_outputs(raw_args, text)
                      if len(output) >= MIN_RENDERED_SECRET_LENGTH
                      and not _PLAIN_VALUE.fullmatch(output)}
    return found


def template_outputs(template: str, rendered: str) -> set[str]:
    """What the expressions of ``template`` rendered to in ``rendered`` (the literal text around
    them is not secret); the whole rendered text when the two cannot be lined up."""
    if "{%" in template or "{#" in template:
        return {rendered}
    literals = _EXPRESSION.split(template)
    pattern = "(.*?)".join(re.escape(literal) for literal in literals)
    match = re.fullmatch(pattern, rendered, re.DOTALL)
    if match is None:
        return {rendered}
    outputs = {output for output in match.groups() if output}
    if len(literals) > 2:
        outputs.add(rendered)  # several expressions may not have split where they met
    return outputs
