"""db_backup_info lists what db_backup's deprecated action=list listed, from files alone."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from ansible_collections.slipway.django.plugins.module_utils import db_backup as backups
from ansible_collections.slipway.django.plugins.module_utils.database import (
    connection_argument_spec,
)
from ansible_collections.slipway.django.plugins.modules import db_backup, db_backup_info

SPEC = db_backup_info.argument_spec()
DOCUMENTED = yaml.safe_load(db_backup_info.DOCUMENTATION)["options"]
MODULES = Path(db_backup.__file__).resolve().parent


def write_backup(dest_dir: Path, backup_id: str, engine: str = "postgresql", db: str = "shop",
                 **changes) -> None:
    """A backup as db_backup leaves it: the dump (a directory of files for PostgreSQL, one
    file for MySQL) and its metadata."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    if engine == "postgresql":
        dump = dest_dir / f"{backup_id}.pgdump"
        dump.mkdir()
        contents = {"toc.dat": b"toc", "3001.dat.gz": b"table data"}
        for name, data in contents.items():
            (dump / name).write_bytes(data)
        files = {f"{dump.name}/{name}": {"size": len(data), "sha256": "x"}
                 for name, data in contents.items()}
    else:
        dump = dest_dir / f"{backup_id}.sql.gz"
        dump.write_bytes(b"dump")
        files = {dump.name: {"size": 4, "sha256": "x"}}
    created = f"{backup_id[:4]}-{backup_id[4:6]}-{backup_id[6:8]}T00:00:00.000000Z"
    info = {"made_by": backups.MADE_BY, "format": 1, "id": backup_id, "kind": "backup",
            "engine": engine, "db": db, "created_at": created, "verified": True,
            "size": sum(entry["size"] for entry in files.values()), "db_size": 8192,
            "duration": 0.5, "jobs": 1, "toc": {"tables": 1}, "files": files,
            "tool_versions": {"server": "15.14"}, "metadata": {"from_release": backup_id[-1]},
            **changes}
    (dest_dir / f"{backup_id}.json").write_text(json.dumps(info))


@pytest.fixture
def dest_dir(tmp_path) -> Path:
    """Three PostgreSQL backups of shop (the oldest truncated), one safety backup, backups of
    another database and engine, and files db_backup did not write."""
    dest = tmp_path / "backups"
    write_backup(dest, "20261101T000000Z-0000000a")
    write_backup(dest, "20261102T000000Z-0000000b", kind="safety", restoring="x")
    write_backup(dest, "20261103T000000Z-0000000c")
    write_backup(dest, "20261104T000000Z-0000000d", db="other")
    write_backup(dest, "20261105T000000Z-0000000e", engine="mysql")
    (dest / "20261101T000000Z-0000000a.pgdump" / "3001.dat.gz").write_bytes(b"table")
    (dest / "notes.txt").write_text("mine\n")
    (dest / "20261106T000000Z-0000000f.json").write_text("not json")
    return dest


def args(dest_dir: Path, **changes) -> dict:
    return {"engine": "postgresql", "db": "shop", "dest_dir": str(dest_dir), **changes}


def files(root: Path) -> dict:
    return {str(path.relative_to(root)): (path.stat().st_mtime_ns, path.stat().st_size)
            for path in sorted(root.rglob("*"))}


def test_the_info_module_returns_what_action_list_returned(run_module, dest_dir):
    info = run_module(db_backup_info, args(dest_dir))
    listed = run_module(db_backup, args(dest_dir, action="list"))

    assert info["backups"] == listed["backups"] and info["msg"] == listed["msg"]
    assert info["changed"] is False and not info.get("failed")
    assert [(entry["id"], entry["kind"], entry["verified"]) for entry in info["backups"]] == [
        ("20261103T000000Z-0000000c", "backup", True),
        ("20261102T000000Z-0000000b", "safety", True),
        ("20261101T000000Z-0000000a", "backup", False)]
    assert "3001.dat.gz has 5 bytes, 10 were recorded" in info["backups"][2]["problem"]
    assert info["backups"][0]["metadata"] == {"from_release": "c"}
    assert info["msg"] == f"3 backups of 'shop' in {dest_dir} (2 verified)."


def test_mysql_backups_are_listed_apart(run_module, dest_dir):
    info = run_module(db_backup_info, args(dest_dir, engine="mysql"))
    assert [(entry["id"], entry["path"]) for entry in info["backups"]] == [
        ("20261105T000000Z-0000000e", str(dest_dir / "20261105T000000Z-0000000e.sql.gz"))]


def test_the_info_module_returns_only_what_it_documents(run_module, dest_dir):
    info = run_module(db_backup_info, args(dest_dir))
    documented = yaml.safe_load(db_backup_info.RETURN)
    assert set(info) - {"changed", "invocation", "deprecated"} == set(documented)
    assert set(info["backups"][0]) == set(documented["backups"]["contains"])
    assert info["deprecated"] == []


def test_listing_with_db_backup_is_deprecated_naming_the_info_module(run_module, dest_dir):
    result = run_module(db_backup, args(dest_dir, action="list"))
    assert len(result["deprecated"]) == 1
    message, collection, version = result["deprecated"][0]
    assert "slipway.django.db_backup_info" in message and "action=list" in message
    assert (collection, version) == ("slipway.django", "0.3.0")


def test_pruning_is_not_deprecated(run_module, dest_dir):
    result = run_module(db_backup, args(dest_dir, action="prune", retention=1), check_mode=True)
    assert result["pruned"] == ["20261102T000000Z-0000000b", "20261101T000000Z-0000000a"]
    assert result["deprecated"] == []


def test_check_mode_lists_the_same_and_touches_nothing(run_module, dest_dir):
    before = files(dest_dir)
    normal = run_module(db_backup_info, args(dest_dir))
    checked = run_module(db_backup_info, args(dest_dir), check_mode=True)
    assert checked["changed"] is False and checked["backups"] == normal["backups"]
    assert files(dest_dir) == before


def test_listing_never_connects_to_the_database(run_module, dest_dir, monkeypatch):
    def refuse(params):
        raise AssertionError(f"connected to {params.get('login_host')}")

    monkeypatch.setattr(backups, "connect", refuse)
    assert len(run_module(db_backup_info, args(dest_dir))["backups"]) == 3


def test_a_missing_backup_directory_lists_none(run_module, tmp_path):
    result = run_module(db_backup_info, args(tmp_path / "nothing-here"))
    assert result["backups"] == [] and not result.get("failed")
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"dest_dir": "backups"}, "dest_dir must be an absolute path, got 'backups'"),
    ({"db": "--all"}, "db must be a database name, got '--all'"),
])
def test_invalid_options_fail_saying_what_was_given(run_module, dest_dir, changes, complaint):
    result = run_module(db_backup_info, {**args(dest_dir), **changes})
    assert result["failed"] is True and result["changed"] is False
    assert complaint in result["msg"]


def test_an_unreadable_backup_directory_fails_saying_what_to_do(
        run_module, dest_dir, monkeypatch):
    # (Tests run as root, whom no directory mode stops.)
    def denied(path, engine, db):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(backups, "read_backups", denied)
    result = run_module(db_backup_info, args(dest_dir))
    assert result["failed"] is True
    assert f"Permission denied: {dest_dir} (listing the backups)" in result["msg"]
    assert "become: true" in result["msg"]


def test_connection_options_are_not_taken(run_module, dest_dir):
    result = run_module(db_backup_info, args(dest_dir, login_user="shop"))
    assert result["failed"] is True and "login_user" in result["msg"]


def test_every_option_is_documented_as_declared():
    assert sorted(DOCUMENTED) == sorted(SPEC) == ["db", "dest_dir", "engine"]
    for option, spec in SPEC.items():
        for key in ("type", "required", "default", "choices"):
            assert DOCUMENTED[option].get(key) == spec.get(key), (option, key)


def test_the_database_action_group_holds_the_modules_that_take_the_connection_options():
    # module_defaults for the group pass the connection options: a module that does not take
    # them (db_backup_info reads files only) would fail on them.
    connection = set(connection_argument_spec())
    taking = sorted(path.stem for path in MODULES.glob("*.py")
                    if connection <= set(getattr(importlib.import_module(
                        f"ansible_collections.slipway.django.plugins.modules.{path.stem}"),
                        "argument_spec", dict)()))
    group = yaml.safe_load((MODULES.parents[1] / "meta" / "runtime.yml").read_text())
    assert sorted(group["action_groups"]["database"]) == taking == ["db_backup", "fk_orphans"]


def test_errors_that_send_the_user_to_a_list_name_the_info_module(dest_dir):
    with pytest.raises(backups.BackupError, match="use slipway.django.db_backup_info to list"):
        backups.find_backup(str(dest_dir), "postgresql", "shop", "20200101T000000Z-00000000")
    valid = {name: spec.get("default") for name, spec in db_backup.argument_spec().items()}
    valid.update(args(dest_dir, action="restore"))
    assert any("slipway.django.db_backup_info lists them" in error
               for error in backups.option_errors(valid))
