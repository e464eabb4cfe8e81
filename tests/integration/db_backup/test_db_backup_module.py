"""slipway.django.db_backup run through ansible-playbook against real PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

from db_backup_helpers import run_module, run_tasks, succeeded, tree

METADATA = {"app": "shop", "from_release": "r1", "to_release": "r2", "run_id": "run-7"}


def list_task(app_db, dest_dir) -> dict:
    """A db_backup_info task: it needs no credentials."""
    return dict(engine=app_db.engine, db=app_db.name, dest_dir=str(dest_dir),
                _module="db_backup_info")


def prune_task(app_db, dest_dir, retention: int) -> dict:
    """A prune: it needs no credentials either."""
    return dict(engine=app_db.engine, db=app_db.name, dest_dir=str(dest_dir), action="prune",
                retention=retention)


def change_everything(app_db) -> None:
    """Rows deleted, a row updated and a table created after the backup."""
    app_db.run("DELETE FROM orders WHERE id > 40",
               "UPDATE customer SET name = 'renamed' WHERE id = 3",
               "CREATE TABLE added_later (id int PRIMARY KEY)",
               "INSERT INTO added_later VALUES (1)")


def largest_file(path: Path) -> Path:
    files = [path] if path.is_file() else [item for item in path.iterdir() if item.is_file()]
    return max(files, key=lambda item: item.stat().st_size)


def test_backup_is_verified_private_and_listed_with_its_metadata(app_db, dest_dir):
    result, listed = (succeeded(result) for result in run_tasks(
        app_db.module_args(dest_dir=str(dest_dir), metadata=METADATA),
        list_task(app_db, dest_dir)))
    backup = result["backup"]
    assert result["changed"] is True
    assert backup["verified"] is True and backup["metadata"] == METADATA
    assert backup["size"] > 0 and backup["db_size"] > 0
    path = Path(backup["path"])
    assert path.parent == dest_dir and path.exists()
    assert path.name == backup["id"] + (".pgdump" if app_db.engine == "postgresql"
                                        else ".sql.gz")
    assert (dest_dir.stat().st_mode & 0o7777, dest_dir.stat().st_uid) == (0o700, 0)
    for name, (mode, uid, gid, _, _) in tree(dest_dir).items():
        assert (uid, gid) == (0, 0), name
        assert mode == (0o700 if (dest_dir / name).is_dir() else 0o600), name
    assert not [name for name in os.listdir(dest_dir) if name.endswith(".partial")]
    text = Path(backup["metadata_path"]).read_text()
    info = json.loads(text)
    assert (info["engine"], info["db"], info["metadata"]) == (app_db.engine, app_db.name,
                                                               METADATA)
    assert info["verified"] is True and info["files"]
    assert app_db.password not in text
    assert [(entry["id"], entry["verified"], entry["metadata"])
            for entry in listed["backups"]] == [(backup["id"], True, METADATA)]


def test_info_lists_what_the_deprecated_action_list_listed_without_credentials(app_db,
                                                                              dest_dir):
    first, second = (succeeded(result)["backup"] for result in run_tasks(
        *[app_db.module_args(dest_dir=str(dest_dir), metadata=METADATA)] * 2))
    alias_task = {key: value for key, value in list_task(app_db, dest_dir).items()
                  if key != "_module"}
    info, alias = (succeeded(result) for result in run_tasks(
        list_task(app_db, dest_dir), dict(alias_task, action="list")))
    checked = succeeded(run_tasks(list_task(app_db, dest_dir), check=True)[0])

    assert info["backups"] == alias["backups"] == checked["backups"]
    assert info["msg"] == alias["msg"] == checked["msg"]
    assert (info["changed"], checked["changed"]) == (False, False)
    assert [(entry["id"], entry["verified"], entry["metadata"]) for entry in info["backups"]] == [
        (second["id"], True, METADATA), (first["id"], True, METADATA)]
    assert info["backups"][0]["path"] == second["path"]
    assert [(entry["collection_name"], entry["version"]) for entry in alias["deprecations"]
            if "slipway.django.db_backup_info" in entry["msg"]] == [("slipway.django", "0.3.0")]
    assert not info.get("deprecations") and not checked.get("deprecations")


def test_restore_gives_back_exactly_the_dumped_data_and_keeps_a_safety_backup(app_db, dest_dir):
    # Threshold 0: PostgreSQL dumps and restores with 2 jobs (the path of large databases).
    parallel = dict(dest_dir=str(dest_dir), jobs=2, parallel_threshold_bytes=0)
    dumped = app_db.snapshot()
    backup = succeeded(run_module(**app_db.module_args(**parallel)))["backup"]
    change_everything(app_db)
    changed = app_db.snapshot()
    assert changed != dumped and "added_later" in changed["tables"]

    restore, listed = (succeeded(result) for result in run_tasks(
        app_db.module_args(action="restore", backup=backup["id"], **parallel),
        list_task(app_db, dest_dir)))
    assert restore["restored"] == backup["id"] and restore["changed"] is True
    assert app_db.snapshot() == dumped
    assert "added_later" not in app_db.tables()
    safety = {entry["id"]: entry for entry in listed["backups"]}[restore["safety_backup"]]
    assert safety["kind"] == "safety" and safety["verified"] is True

    # The safety backup holds the database as it was: restoring it (in one transaction on
    # PostgreSQL, with the default threshold) brings the changes back.
    succeeded(run_module(**app_db.module_args(dest_dir=str(dest_dir), action="restore",
                                              backup=restore["safety_backup"],
                                              safety_backup=False)))
    assert app_db.snapshot() == changed


def test_prune_keeps_the_newest_backups_and_leaves_foreign_files_alone(app_db, dest_dir):
    dest_dir.mkdir(parents=True)
    foreign = ["notes.txt", "20200101T000000Z-deadbeef.sql.gz", "20200101T000000Z-deadbeef.json",
               "manual.pgdump/toc.dat"]
    for name in foreign:
        (dest_dir / name).parent.mkdir(exist_ok=True)
        (dest_dir / name).write_text("{}\n")
    *backups, listed = (succeeded(result) for result in run_tasks(
        *[app_db.module_args(dest_dir=str(dest_dir), retention=2)] * 3,
        list_task(app_db, dest_dir)))
    ids = [result["backup"]["id"] for result in backups]
    assert backups[2]["pruned"] == [ids[0]]
    assert [entry["id"] for entry in listed["backups"]] == [ids[2], ids[1]]

    pruned, listed = (succeeded(result) for result in run_tasks(
        prune_task(app_db, dest_dir, 1),
        list_task(app_db, dest_dir)))
    assert pruned["pruned"] == [ids[1]] and pruned["changed"] is True
    assert [entry["id"] for entry in listed["backups"]] == [ids[2]]
    for name in foreign:
        assert (dest_dir / name).read_text() == "{}\n", name
    assert not [name for name in os.listdir(dest_dir) if name.startswith((ids[0], ids[1]))]


def test_too_little_free_space_fails_before_writing_anything(app_db, dest_dir):
    huge = 1 << 60
    for check in (True, False):
        result = run_module(check=check, **app_db.module_args(dest_dir=str(dest_dir),
                                                              min_free_bytes=huge))
        assert result["failed"] and result["changed"] is False
        assert "Not enough free space" in result["msg"]
        assert f"({huge} bytes) needed" in result["msg"]
        assert "free on the filesystem of" in result["msg"]
        assert not dest_dir.exists()


def test_restore_refuses_a_truncated_or_corrupted_backup(app_db, dest_dir):
    first, second = (succeeded(result)["backup"] for result in run_tasks(
        *[app_db.module_args(dest_dir=str(dest_dir))] * 2))
    truncated = largest_file(Path(first["path"]))
    truncated.write_bytes(truncated.read_bytes()[:truncated.stat().st_size // 2])
    corrupted = largest_file(Path(second["path"]))
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    change_everything(app_db)
    changed = app_db.snapshot()

    *results, listed = run_tasks(
        *[app_db.module_args(dest_dir=str(dest_dir), action="restore", backup=backup["id"])
          for backup in (first, second)],
        list_task(app_db, dest_dir))
    for result, problem in zip(results, ("truncated", "corrupted"), strict=True):
        assert result["failed"] and result["changed"] is False
        assert "failed verification" in result["msg"] and problem in result["msg"]
    assert app_db.snapshot() == changed
    # No safety backup was taken; list's cheap check already sees the truncated file.
    assert [(entry["id"], entry["kind"], entry["verified"]) for entry in listed["backups"]] == [
        (second["id"], "backup", True), (first["id"], "backup", False)]


def test_check_mode_plans_every_action_and_writes_nothing(app_db, dest_dir, tmp_path):
    first, second = (succeeded(result)["backup"] for result in run_tasks(
        *[app_db.module_args(dest_dir=str(dest_dir))] * 2))
    change_everything(app_db)
    changed = app_db.snapshot()
    before = tree(dest_dir)
    missing_dir = tmp_path / "not-yet"

    backup, prune, restore, fresh, listed = run_tasks(
        app_db.module_args(dest_dir=str(dest_dir), retention=2),
        prune_task(app_db, dest_dir, 1),
        app_db.module_args(dest_dir=str(dest_dir), action="restore", backup=first["id"]),
        app_db.module_args(dest_dir=str(missing_dir)),
        list_task(app_db, dest_dir),
        check=True)
    assert succeeded(backup)["changed"] is True and backup["pruned"] == [first["id"]]
    assert backup["backup"]["path"].startswith(str(dest_dir))
    assert succeeded(prune)["pruned"] == [first["id"]]
    assert succeeded(restore)["restored"] == first["id"] and restore["safety_backup"]
    assert succeeded(fresh)["backup"]["path"].startswith(str(missing_dir))
    assert tree(dest_dir) == before
    assert not missing_dir.exists()
    assert app_db.snapshot() == changed
    assert [entry["id"] for entry in succeeded(listed)["backups"]] == [second["id"], first["id"]]


def test_unknown_database_backup_id_and_bad_password_fail_clearly(app_db, dest_dir):
    succeeded(run_module(**app_db.module_args(dest_dir=str(dest_dir))))
    unknown_db, unknown_id, bad_password, listed = run_tasks(
        app_db.module_args(dest_dir=str(dest_dir), db="no_such_db"),
        app_db.module_args(dest_dir=str(dest_dir), action="restore",
                           backup="20200101T000000Z-00000000"),
        app_db.module_args(dest_dir=str(dest_dir), login_password="wrong"),
        list_task(app_db, dest_dir))
    assert unknown_db["failed"] and "'no_such_db' does not exist" in unknown_db["msg"]
    assert unknown_id["failed"]
    assert "Unknown backup id '20200101T000000Z-00000000'" in unknown_id["msg"]
    assert bad_password["failed"] and "Could not connect" in bad_password["msg"]
    assert "wrong" not in bad_password["msg"]
    assert len(succeeded(listed)["backups"]) == 1


def test_missing_mysql_dump_tools_are_named_before_writing(mysql_app_db, dest_dir):
    # PostgreSQL's tools are found in /usr/lib/postgresql/N/bin whatever PATH says; choosing
    # among them is covered by the unit tests.
    empty_path = dest_dir.parent / "empty-bin"
    empty_path.mkdir(parents=True)
    result = run_module(**mysql_app_db.module_args(dest_dir=str(dest_dir),
                                                   _environment={"PATH": str(empty_path)}))
    assert result["failed"]
    assert "mariadb-dump/mysqldump and mariadb/mysql not found" in result["msg"]
    assert "apt-get install mariadb-client" in result["msg"]
    assert not dest_dir.exists()
