"""The console finds the slipway.django collection (its playbooks, the manage_command rules)
from a checkout, or, installed from a wheel, where Ansible finds collections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipway.collection import CollectionNotFound, collection_root, find_collection

ROOT = Path(__file__).resolve().parents[3]


def installed_collection(root: Path) -> Path:
    """A collection as ansible-galaxy installs it: MANIFEST.json, no galaxy.yml."""
    collection = root / "ansible_collections" / "slipway" / "django"
    (collection / "playbooks").mkdir(parents=True)
    (collection / "MANIFEST.json").write_text(json.dumps(
        {"collection_info": {"namespace": "slipway", "name": "django"}}))
    return collection


def test_a_checkout_is_its_own_collection():
    assert collection_root() == ROOT
    assert find_collection(ROOT / "src" / "slipway", []) == ROOT


def test_an_installed_package_finds_the_collection_in_ansible_collection_paths(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3" / "site-packages" / "slipway"
    site.mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    collection = installed_collection(tmp_path / "collections")

    assert find_collection(site, [tmp_path / "empty", tmp_path / "collections"]) == collection
    # An ansible_collections directory on sys.path counts too.
    assert find_collection(site, [collection.parents[1]]) == collection


def test_without_the_collection_the_error_says_where_it_looked(tmp_path):
    site = tmp_path / "site-packages" / "slipway"
    site.mkdir(parents=True)

    with pytest.raises(CollectionNotFound, match="ANSIBLE_COLLECTIONS_PATH") as found:
        find_collection(site, [tmp_path / "nowhere"])
    assert str(tmp_path / "nowhere") in str(found.value)
