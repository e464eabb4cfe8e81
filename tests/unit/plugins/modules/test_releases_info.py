"""releases_info lists what releases' deprecated action=list listed; that alias warns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible_collections.slipway.django.plugins.modules import releases, releases_info

LISTED = ("releases", "current", "previous_good")


def build(root: Path, release: str, built_at: str, status: dict | None = None) -> None:
    path = root / "releases" / release
    path.mkdir(parents=True)
    (path / ".slipway-release.json").write_text(json.dumps({
        "release_id": release, "commit": f"c-{release}", "branch": "main",
        "built_at": built_at, "wheelhouse": str(root / "shared" / "wheelhouse" / release)}))
    if status:
        (path / ".slipway-status.json").write_text(json.dumps(status))


@pytest.fixture
def app_root(tmp_path) -> Path:
    """r1 good, r2 failed, r3 good and current, r4 built and never deployed, r5 unfinished."""
    build(tmp_path, "r1", "2026-11-01T00:00:00Z",
          {"status": "succeeded", "deployed_at": "2026-11-01T00:05:00Z",
           "migrations": ["shop.0001_initial"], "backup": "20261101T000400Z-0000000a"})
    build(tmp_path, "r2", "2026-11-02T00:00:00Z",
          {"status": "failed", "deployed_at": "2026-11-02T00:05:00Z", "previous": "r1"})
    build(tmp_path, "r3", "2026-11-03T00:00:00Z",
          {"status": "succeeded", "deployed_at": "2026-11-03T00:05:00Z", "previous": "r1"})
    build(tmp_path, "r4", "2026-11-04T00:00:00Z")
    (tmp_path / "releases" / "r5").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "r3")
    return tmp_path


def files(root: Path) -> dict:
    return {str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None)
            for path in sorted(root.rglob("*"))}


def test_the_info_module_returns_what_action_list_returned(run_module, app_root):
    info = run_module(releases_info, {"root": str(app_root)})
    listed = run_module(releases, {"root": str(app_root), "action": "list"})

    assert {key: info[key] for key in LISTED} == {key: listed[key] for key in LISTED}
    assert info["changed"] is False
    assert [(entry["id"], entry["status"], entry["current"]) for entry in info["releases"]] == [
        ("r3", "succeeded", True), ("r2", "failed", False), ("r1", "succeeded", False),
        ("r4", "built", False), ("r5", "incomplete", False)]
    assert (info["current"], info["previous_good"]) == ("r3", "r1")
    r1 = info["releases"][2]
    assert (r1["commit"], r1["migrations"], r1["backup"]) == (
        "c-r1", ["shop.0001_initial"], "20261101T000400Z-0000000a")


def test_the_info_module_returns_only_what_it_documents(run_module, app_root):
    info = run_module(releases_info, {"root": str(app_root)})
    documented = yaml.safe_load(releases_info.RETURN)
    assert set(info) - {"changed", "invocation", "deprecated"} == set(documented)
    assert info["deprecated"] == []


@pytest.mark.parametrize("args", [{"action": "list"}, {}], ids=["action=list", "no action"])
def test_listing_with_releases_is_deprecated_naming_the_info_module(run_module, app_root, args):
    result = run_module(releases, {"root": str(app_root), **args})
    assert len(result["deprecated"]) == 1
    message, collection, version = result["deprecated"][0]
    assert "slipway.django.releases_info" in message and "action=list" in message
    assert (collection, version) == ("slipway.django", "0.3.0")


@pytest.mark.parametrize("args", [
    {"action": "mark", "release": "r4", "status": "failed"},
    {"action": "prune", "keep": 2},
], ids=["mark", "prune"])
def test_mark_and_prune_are_not_deprecated(run_module, app_root, args):
    result = run_module(releases, {"root": str(app_root), **args}, check_mode=True)
    assert result["changed"] is True and result["deprecated"] == []


def test_check_mode_lists_the_same_and_touches_nothing(run_module, app_root):
    before = files(app_root)
    normal = run_module(releases_info, {"root": str(app_root)})
    checked = run_module(releases_info, {"root": str(app_root)}, check_mode=True)
    assert checked["changed"] is False
    assert {key: checked[key] for key in LISTED} == {key: normal[key] for key in LISTED}
    assert files(app_root) == before


def test_a_host_without_releases_lists_none(run_module, tmp_path):
    result = run_module(releases_info, {"root": str(tmp_path / "nothing-here")})
    assert (result["releases"], result["current"], result["previous_good"]) == ([], None, None)


def test_releases_lists_what_it_left_after_marking_and_pruning(run_module, app_root):
    marked = run_module(releases, {"root": str(app_root), "action": "mark", "release": "r4",
                                   "status": "failed"})
    assert {entry["id"]: entry["status"] for entry in marked["releases"]}["r4"] == "failed"
    pruned = run_module(releases, {"root": str(app_root), "action": "prune", "keep": 2})
    assert pruned["removed"] == ["releases/r5", "releases/r2", "releases/r4"]
    info = run_module(releases_info, {"root": str(app_root)})
    assert [entry["id"] for entry in pruned["releases"]] == ["r3", "r1"]
    assert {key: pruned[key] for key in LISTED} == {key: info[key] for key in LISTED}
