"""Where the slipway.django collection is: the console runs its playbooks and checks one-off
commands with its rules.

The package is installed from the collection (``pip install`` of its directory, or a wheel built
from it), so once installed it no longer sits inside the collection. The collection is found as
Ansible finds it: first the checkout this package runs from (an editable install, or ``src`` on
the path), then Ansible's configured collection paths ($ANSIBLE_COLLECTIONS_PATH or ansible.cfg's
``collections_path``), then ``ansible_collections`` on sys.path.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import yaml

NAMESPACE, NAME = "slipway", "django"


class CollectionNotFound(Exception):
    """No slipway.django collection where Ansible looks; the message says where it looked."""


def _is_ours(root: Path) -> bool:
    """A directory holding the slipway.django collection (a checkout's galaxy.yml, or the
    MANIFEST.json of an installed copy)."""
    if (root / "MANIFEST.json").is_file() and (root / "playbooks").is_dir():
        return root.parent.name == NAMESPACE and root.name == NAME
    try:
        meta = yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return (isinstance(meta, dict)
            and (meta.get("namespace"), meta.get("name")) == (NAMESPACE, NAME))


def _ansible_collection_paths() -> list[Path]:
    try:
        from ansible import constants
    except ImportError:
        return []
    return [Path(entry).expanduser() for entry in constants.COLLECTIONS_PATHS or ()]


def find_collection(package_dir: Path, roots: list[Path]) -> Path:
    """The collection holding ``package_dir`` (src/slipway of a checkout), else the first
    ``ansible_collections/slipway/django`` under ``roots``."""
    checkout = package_dir.resolve().parents[1]
    if _is_ours(checkout):
        return checkout
    for root in roots:
        candidates = [root / "ansible_collections" / NAMESPACE / NAME]
        if root.name == "ansible_collections":
            candidates.append(root / NAMESPACE / NAME)
        for candidate in candidates:
            if _is_ours(candidate):
                return candidate.resolve()
    raise CollectionNotFound(
        f"cannot find the {NAMESPACE}.{NAME} collection in Ansible's collection paths "
        f"({', '.join(str(root) for root in roots[:6]) or 'none'}...): install it, or set "
        "ANSIBLE_COLLECTIONS_PATH to the directory that holds ansible_collections/")


@functools.cache
def collection_root() -> Path:
    """The directory of the slipway.django collection (the first one Ansible would use)."""
    return find_collection(Path(__file__).parent,
                           [*_ansible_collection_paths(),
                            *(Path(entry) for entry in sys.path if entry)])
