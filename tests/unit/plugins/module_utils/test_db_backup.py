"""Pure helpers of slipway.django.db_backup: choosing pg_dump, space, retention, files."""

from __future__ import annotations

import gzip
import json

import pytest
from ansible_collections.slipway.django.plugins.module_utils.db_backup import (
    MADE_BY,
    BackupError,
    check_free_space,
    choose_pg_dump,
    find_backup,
    format_bytes,
    mysql_option_value,
    mysql_trailer_problem,
    parallel_jobs,
    prune_plan,
    quick_problem,
    read_backups,
    scan_file,
    space_needed,
)

PG13 = ("/usr/lib/postgresql/13/bin/pg_dump", 13, "pg_dump (PostgreSQL) 13.16")
PG15 = ("/usr/lib/postgresql/15/bin/pg_dump", 15, "pg_dump (PostgreSQL) 15.18")
PG16 = ("/usr/lib/postgresql/16/bin/pg_dump", 16, "pg_dump (PostgreSQL) 16.4")
WRAPPER16 = ("/usr/bin/pg_dump", 16, "pg_dump (PostgreSQL) 16.4")


@pytest.mark.parametrize(("candidates", "server_major", "expected"), [
    ([PG13, PG15, PG16], 15, PG15),
    ([PG13, PG16], 15, PG16),
    ([PG16, WRAPPER16], 14, PG16),
    ([PG13], 15, None),
    ([], 15, None),
])
def test_the_oldest_pg_dump_not_older_than_the_server_is_chosen(
        candidates, server_major, expected):
    assert choose_pg_dump(candidates, server_major) == expected


@pytest.mark.parametrize(("db_size", "min_free", "factor", "needed"), [
    (0, 2048, 2.0, 2048),
    (1500, 2048, 2.0, 3000),
    (1001, 0, 1.5, 1502),
    (10**12, 0, 0.0, 0),
])
def test_space_needed_is_the_larger_of_the_floor_and_the_factor(
        db_size, min_free, factor, needed):
    assert space_needed(db_size, min_free, factor) == needed


def test_free_space_failure_says_what_is_free_and_needed(tmp_path):
    missing = tmp_path / "not" / "yet"
    check_free_space(str(missing), "app", 10, 0, 2.0)
    with pytest.raises(BackupError) as error:
        check_free_space(str(missing), "app", 10, 1 << 60, 2.0)
    message = str(error.value)
    assert f"({1 << 60} bytes) needed" in message
    assert f"free on the filesystem of {tmp_path}" in message
    assert "Nothing was written" in message


@pytest.mark.parametrize(("db_size", "expected"), [(100, 1), (101, 4)])
def test_jobs_are_used_above_the_threshold_only(db_size, expected):
    assert parallel_jobs(db_size, 4, 100) == expected


@pytest.mark.parametrize(("retention", "kept"), [(0, 5), (1, 1), (3, 3), (9, 5)])
def test_prune_plan_keeps_the_newest(retention, kept):
    newest_first = list("edcba")
    doomed = prune_plan(newest_first, retention)
    assert newest_first[:kept] + doomed == newest_first


@pytest.mark.parametrize(("count", "text"), [(512, "512 B"), (1536, "1.5 KiB"),
                                             (3 * 2**30, "3.0 GiB")])
def test_format_bytes(count, text):
    assert format_bytes(count) == text


@pytest.mark.parametrize(("tail", "complete"), [
    (b"UNLOCK TABLES;\n-- Dump completed on 2026-11-23 10:15:00\n", True),
    (b"-- Dump completed on 2026-11-23 10:15:00", True),
    (b"INSERT INTO `t` VALUES (1),(2", False),
    (b"-- Dump completed\nINSERT INTO t VALUES (1);\n", False),
])
def test_mysql_dump_must_end_with_its_trailer(tail, complete):
    assert (mysql_trailer_problem(tail) is None) == complete


@pytest.mark.parametrize(("password", "quoted"), [
    ("plain", '"plain"'),
    ('a"b\\c#d', '"a\\"b\\\\c#d"'),
    ("new\nline", '"new\\nline"'),
])
def test_mysql_option_file_values_are_quoted_and_escaped(password, quoted):
    assert mysql_option_value(password) == quoted


def test_scan_file_tells_complete_truncated_and_invalid_gzip(tmp_path):
    payload = b"".join(b"line %d\n" % number for number in range(50000))
    complete = tmp_path / "complete.gz"
    complete.write_bytes(gzip.compress(payload) + gzip.compress(b"second member\n"))
    scan = scan_file(str(complete), True)
    assert scan["gzip_problem"] is None and scan["tail"].endswith(b"second member\n")
    assert scan["size"] == complete.stat().st_size
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(complete.read_bytes()[:200])
    assert "truncated" in scan_file(str(truncated), True)["gzip_problem"]
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip at all")
    assert "not valid gzip" in scan_file(str(garbage), True)["gzip_problem"]


def write_backup(dest_dir, backup_id: str, created_at: str, **changes) -> None:
    dump = dest_dir / f"{backup_id}.sql.gz"
    dump.write_bytes(b"dump")
    info = {"made_by": MADE_BY, "id": backup_id, "engine": "mysql", "db": "app",
            "created_at": created_at, "verified": True,
            "files": {dump.name: {"size": 4, "sha256": "x"}}, **changes}
    (dest_dir / f"{backup_id}.json").write_text(json.dumps(info))


def test_only_this_modules_backups_of_the_database_are_read_newest_first(tmp_path):
    write_backup(tmp_path, "20261101T000000Z-00000001", "2026-11-01T00:00:00.000000Z")
    write_backup(tmp_path, "20261102T000000Z-00000002", "2026-11-02T00:00:00.000000Z")
    write_backup(tmp_path, "20261103T000000Z-00000003", "2026-11-03T00:00:00.000000Z",
                 db="other")
    write_backup(tmp_path, "20261104T000000Z-00000004", "2026-11-04T00:00:00.000000Z",
                 made_by="someone else")
    (tmp_path / "20261105T000000Z-00000005.json").write_text("not json")
    (tmp_path / "notes.json").write_text("{}")
    backups = read_backups(str(tmp_path), "mysql", "app")
    assert [backup.id for backup in backups] == ["20261102T000000Z-00000002",
                                                 "20261101T000000Z-00000001"]


def test_a_backup_whose_file_changed_size_is_not_verified(tmp_path):
    write_backup(tmp_path, "20261101T000000Z-00000001", "2026-11-01T00:00:00.000000Z")
    backup = read_backups(str(tmp_path), "mysql", "app")[0]
    assert quick_problem(backup) is None
    (tmp_path / "20261101T000000Z-00000001.sql.gz").write_bytes(b"du")
    assert "truncated" in quick_problem(backup)
    (tmp_path / "20261101T000000Z-00000001.sql.gz").unlink()
    assert "missing" in quick_problem(backup)


def test_restoring_another_databases_backup_or_an_unknown_id_is_refused(tmp_path):
    write_backup(tmp_path, "20261101T000000Z-00000001", "2026-11-01T00:00:00.000000Z")
    write_backup(tmp_path, "20261102T000000Z-00000002", "2026-11-02T00:00:00.000000Z",
                 db="other")
    assert find_backup(str(tmp_path), "mysql", "app", "20261101T000000Z-00000001").id == \
        "20261101T000000Z-00000001"
    with pytest.raises(BackupError, match="a mysql backup of 'other', not a mysql backup of"):
        find_backup(str(tmp_path), "mysql", "app", "20261102T000000Z-00000002")
    with pytest.raises(BackupError, match="Unknown backup id '../etc'.*20261101T000000Z"):
        find_backup(str(tmp_path), "mysql", "app", "../etc")
