"""slipway.django.releases and releases_info on a release tree laid out like the app role's."""

from __future__ import annotations

import json
from pathlib import Path

import ansible_task


def run(args: dict, **options) -> dict:
    return ansible_task.run_task("releases", args, **options)


def info(root: Path) -> dict:
    return ansible_task.run_task("releases_info", {"root": str(root)})


def build(root: Path, release: str, built_at: str, wheelhouse: str = "w1",
          status: dict | None = None) -> Path:
    path = root / "releases" / release
    (path / "static").mkdir(parents=True)
    (path / ".slipway-release.json").write_text(json.dumps({
        "release_id": release, "commit": f"c-{release}", "branch": "main",
        "built_at": built_at, "wheelhouse": str(root / "shared" / "wheelhouse" / wheelhouse)}))
    (root / "shared" / "wheelhouse" / wheelhouse).mkdir(parents=True, exist_ok=True)
    if status:
        (path / ".slipway-status.json").write_text(json.dumps(status))
    return path


def switch(root: Path, release: str) -> None:
    link = root / "current"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(root / "releases" / release)


def test_mark_records_the_outcome_and_info_finds_the_rollback_target(tmp_path):
    build(tmp_path, "r1", "2026-11-01T00:00:00Z")
    build(tmp_path, "r2", "2026-11-02T00:00:00Z")
    switch(tmp_path, "r1")
    first = run({"root": str(tmp_path), "action": "mark", "release": "r1",
                 "status": "succeeded", "data": {"migrations": ["shop.0001_initial"]}})
    assert first["changed"] is True and first["record"]["status"] == "succeeded"
    again = run({"root": str(tmp_path), "action": "mark", "release": "r1",
                 "status": "succeeded", "data": {"migrations": ["shop.0001_initial"]}})
    assert again["changed"] is False, "marking the same outcome twice changes nothing"

    switch(tmp_path, "r2")
    run({"root": str(tmp_path), "action": "mark", "release": "r2", "status": "succeeded",
         "data": {"previous": "r1"}})
    listed = info(tmp_path)

    assert listed["current"] == "r2"
    assert listed["previous_good"] == "r1"
    r1 = next(entry for entry in listed["releases"] if entry["id"] == "r1")
    assert r1["migrations"] == ["shop.0001_initial"] and r1["commit"] == "c-r1"
    status = json.loads((tmp_path / "releases" / "r1" / ".slipway-status.json").read_text())
    assert status["status"] == "succeeded" and status["deployed_at"].endswith("Z")


def test_failed_and_rolled_back_releases_are_not_rollback_targets(tmp_path):
    build(tmp_path, "r1", "2026-11-01T00:00:00Z",
          status={"status": "succeeded", "deployed_at": "2026-11-01T00:00:00Z"})
    build(tmp_path, "r2", "2026-11-02T00:00:00Z",
          status={"status": "failed", "deployed_at": "2026-11-02T00:00:00Z"})
    build(tmp_path, "r3", "2026-11-03T00:00:00Z",
          status={"status": "rolled_back", "deployed_at": "2026-11-03T00:00:00Z"})
    build(tmp_path, "r4", "2026-11-04T00:00:00Z",
          status={"status": "succeeded", "deployed_at": "2026-11-04T00:00:00Z"})
    switch(tmp_path, "r4")

    assert info(tmp_path)["previous_good"] == "r1"


def test_prune_removes_failed_first_and_never_the_current_or_last_good(tmp_path):
    # Oldest to newest: r0 good, r1 failed, r2..r6 good, r7 failed (current is r6).
    for index in range(8):
        status = "failed" if index in (1, 7) else "succeeded"
        build(tmp_path, f"r{index}", f"2026-11-0{index + 1}T00:00:00Z", wheelhouse=f"w{index}",
              status={"status": status, "deployed_at": f"2026-11-0{index + 1}T00:00:00Z"})
    (tmp_path / "releases" / "r6" / "static" / "app.css").write_text("x")
    switch(tmp_path, "r6")

    preview = run({"root": str(tmp_path), "action": "prune", "keep": 3}, check=True)
    assert preview["changed"] is True
    assert (tmp_path / "releases" / "r1").exists(), "check mode removes nothing"

    result = run({"root": str(tmp_path), "action": "prune", "keep": 3})

    left = sorted(path.name for path in (tmp_path / "releases").iterdir())
    assert left == ["r4", "r5", "r6"]
    assert result["removed"][:2] == ["releases/r1", "releases/r7"], "failed ones go first"
    assert sorted(path.name for path in (tmp_path / "shared" / "wheelhouse").iterdir()) == [
        "w4", "w5", "w6"]
    assert run({"root": str(tmp_path), "action": "prune", "keep": 3})["changed"] is False


def test_prune_keeps_the_last_good_release_beyond_the_count(tmp_path):
    build(tmp_path, "r1", "2026-11-01T00:00:00Z",
          status={"status": "succeeded", "deployed_at": "2026-11-01T00:00:00Z"})
    build(tmp_path, "r2", "2026-11-02T00:00:00Z",
          status={"status": "failed", "deployed_at": "2026-11-02T00:00:00Z"})
    build(tmp_path, "r3", "2026-11-03T00:00:00Z")
    switch(tmp_path, "r1")

    result = run({"root": str(tmp_path), "action": "prune", "keep": 1, "protect": ["r3"]})

    assert sorted(path.name for path in (tmp_path / "releases").iterdir()) == ["r1", "r3"]
    assert result["removed"] == ["releases/r2"]


def test_bad_input_is_refused(tmp_path):
    build(tmp_path, "r1", "2026-11-01T00:00:00Z")
    unknown = run({"root": str(tmp_path), "action": "mark", "release": "nope",
                   "status": "succeeded"})
    assert unknown.get("failed") is True and "No release 'nope'" in unknown["msg"]
    sneaky = run({"root": str(tmp_path), "action": "mark", "release": "../r1",
                  "status": "succeeded"})
    assert sneaky.get("failed") is True and "Bad release id" in sneaky["msg"]
