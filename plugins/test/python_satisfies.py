# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: python_satisfies
short_description: Whether a Python version meets a C(requires-python) specifier
version_added: "0.2.0"
description:
  - True when the version (such as C(3.11.2)) is allowed by the PEP 440 specifier set (such as
    C(>=3.12)), as found in C(pyproject.toml)'s C(requires-python). An empty specifier allows
    every version.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The Python version.
    type: str
    required: true
  specifier:
    description: The specifier set.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse an interpreter the app does not support
  ansible.builtin.assert:
    that: "'3.11.2' is slipway.django.python_satisfies('>=3.12')"
"""

RETURN = r"""
_value:
  description: Whether the version is allowed.
  type: bool
"""

from ansible.errors import AnsibleFilterError

try:  # ansible-core itself depends on packaging
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:
    SpecifierSet = None


def python_satisfies(version, specifier):
    if not specifier or not str(specifier).strip():
        return True
    if SpecifierSet is None:
        raise AnsibleFilterError("the python_satisfies test needs the Python package "
                                 "'packaging' on the controller")
    try:
        return Version(str(version)) in SpecifierSet(str(specifier))
    except (InvalidSpecifier, InvalidVersion) as exc:
        raise AnsibleFilterError(f"cannot compare Python {version!r} with requires-python "
                                 f"{specifier!r}: {exc}") from exc


class TestModule:
    def tests(self):
        return {"python_satisfies": python_satisfies}
