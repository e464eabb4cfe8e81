"""The scheduled backup's copy: the sender's stream and the receiver that checks it, the run's
retry, and the entry point as installed on a host (the module_utils in their collection
layout, run with python3 -I)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.slipway.django.plugins.module_utils import scheduled_backup
from ansible_collections.slipway.django.plugins.module_utils.db_backup import (
    LOCK_NAME,
    MADE_BY,
    read_backups,
)
from ansible_collections.slipway.django.plugins.module_utils.scheduled_backup import (
    CopyError,
    backup_members,
    backup_params,
    copy_with_retry,
    load_config,
    main,
    receive,
    send,
    ssh_command,
    write_stream,
)

ROOT = Path(__file__).resolve().parents[4]
COLLECTIONS = ROOT / ".cache" / "collections"
ENTRY = ROOT / "roles" / "app" / "files" / "slipway_backup.py"
MODULE_UTILS = ROOT / "plugins" / "module_utils"
# The receiver run as its own process, as sshd's forced command would.
RECEIVER = [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(COLLECTIONS)!r}); from ansible_collections."
            "slipway.django.plugins.module_utils.scheduled_backup import main; "
            "sys.exit(main(sys.argv[1:]))"]


def make_backup(dest: Path, stamp: str, engine: str = "postgresql", db: str = "shop",
                verified: bool = True):
    """A backup as db_backup writes it (dump and metadata, with every file's SHA-256)."""
    backup_id = f"2026112{stamp}T030000Z-{int(stamp):08x}"
    dest.mkdir(parents=True, exist_ok=True)
    if engine == "postgresql":
        dump = dest / f"{backup_id}.pgdump"
        dump.mkdir()
        (dump / "toc.dat").write_bytes(b"PGDMP toc " + stamp.encode() * 100)
        (dump / "3001.dat.gz").write_bytes(gzip.compress(b"rows of " + stamp.encode() * 5000))
        (dump / "3002.dat.gz").write_bytes(gzip.compress(b"more rows"))
        files = {f"{dump.name}/{path.name}": path for path in sorted(dump.iterdir())}
    else:
        dump = dest / f"{backup_id}.sql.gz"
        dump.write_bytes(gzip.compress(b"CREATE TABLE `t`;\n-- Dump completed\n"))
        files = {dump.name: dump}
    info = dict(made_by=MADE_BY, format=1, id=backup_id, kind="backup", engine=engine, db=db,
                created_at=f"2026-11-2{stamp}T03:00:00.000000Z", verified=verified,
                files={name: dict(size=path.stat().st_size,
                                  sha256=hashlib.sha256(path.read_bytes()).hexdigest())
                       for name, path in files.items()},
                metadata=dict(app="shop", trigger="schedule"))
    (dest / f"{backup_id}.json").write_text(json.dumps(info))
    return read_backups(str(dest), engine, db)[[b.id for b in read_backups(
        str(dest), engine, db)].index(backup_id)]


def stream_of(members: list) -> io.BytesIO:
    buffer = io.BytesIO()
    write_stream(buffer, members)
    buffer.seek(0)
    return buffer


def tampered_members(backup, tmp_path: Path, name: str) -> list:
    """backup's members with one byte of the file name changed (in a copy)."""
    members = []
    for member, path in backup_members(backup):
        if member == name:
            data = bytearray(Path(path).read_bytes())
            data[len(data) // 2] ^= 0x01
            path = tmp_path / "tampered"
            path.write_bytes(bytes(data))
        members.append((member, str(path)))
    return members


def entries(directory: Path) -> list:
    return sorted(path.name for path in directory.iterdir() if path.name != LOCK_NAME)


@pytest.fixture
def source(tmp_path):
    return tmp_path / "source"


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "target"
    path.mkdir(mode=0o700)
    return path


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_backup_is_received_as_sent_with_private_modes(source, target, engine):
    backup = make_backup(source, "1", engine=engine)
    answer = receive(stream_of(backup_members(backup)), str(target), 10)
    assert answer["ok"], answer
    assert answer["id"] == backup.id and answer["files"] == len(backup.files())
    assert answer["present"] is False and answer["pruned"] == []
    for name in backup.files():
        assert (target / name).read_bytes() == (source / name).read_bytes()
        assert (target / name).stat().st_mode & 0o777 == 0o600
    assert (target / f"{backup.id}.json").read_bytes() == Path(backup.metadata_path).read_bytes()
    if engine == "postgresql":
        assert (target / f"{backup.id}.pgdump").stat().st_mode & 0o777 == 0o700
    [copy] = read_backups(str(target), engine, "shop")
    assert copy.id == backup.id
    assert entries(target) == sorted([f"{backup.id}.json", Path(backup.path).name])


@pytest.mark.parametrize("which", ["toc.dat", "3001.dat.gz"])
def test_a_file_changed_in_transit_is_refused_and_nothing_is_kept(
        source, target, tmp_path, which):
    backup = make_backup(source, "1")
    members = tampered_members(backup, tmp_path, f"{backup.id}.pgdump/{which}")
    answer = receive(stream_of(members), str(target), 10)
    assert not answer["ok"]
    assert f"{backup.id}.pgdump/{which} does not match the SHA-256" in answer["error"]
    assert "nothing was kept" in answer["error"]
    assert entries(target) == []


def test_a_stream_cut_short_is_refused_and_nothing_is_kept(source, target):
    backup = make_backup(source, "1")
    data = stream_of(backup_members(backup)).getvalue()
    answer = receive(io.BytesIO(data[:len(data) // 2]), str(target), 10)
    assert not answer["ok"]
    assert entries(target) == []


def test_a_stream_missing_a_file_is_refused(source, target):
    backup = make_backup(source, "1")
    answer = receive(stream_of(backup_members(backup)[:-1]), str(target), 10)
    assert not answer["ok"] and "ended without 1 of the backup's files" in answer["error"]
    assert entries(target) == []


def test_a_file_the_metadata_does_not_list_is_refused(source, target, tmp_path):
    backup = make_backup(source, "1")
    extra = tmp_path / "extra"
    extra.write_bytes(b"#!/bin/sh\n")
    members = backup_members(backup) + [(f"{backup.id}.pgdump/evil.sh", str(extra))]
    answer = receive(stream_of(members), str(target), 10)
    assert not answer["ok"] and "'" + f"{backup.id}.pgdump/evil.sh" + "'" in answer["error"]
    assert entries(target) == []


@pytest.mark.parametrize("name", ["{id}.pgdump/../../etc/passwd", "{id}.pgdump/.hidden",
                                  "other.pgdump/toc.dat", "{id}.pgdump/a/b"])
def test_metadata_naming_files_outside_the_dump_is_refused(source, target, tmp_path, name):
    backup = make_backup(source, "1")
    info = json.loads(Path(backup.metadata_path).read_text())
    info["files"][name.format(id=backup.id)] = {"size": 1, "sha256": "0" * 64}
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps(info))
    members = [(f"{backup.id}.json", str(metadata))] + backup_members(backup)[1:]
    answer = receive(stream_of(members), str(target), 10)
    assert not answer["ok"] and "lists a file outside its dump" in answer["error"]
    assert entries(target) == []


def test_a_backup_never_verified_is_refused(source, target):
    backup = make_backup(source, "1", verified=False)
    answer = receive(stream_of(backup_members(backup)), str(target), 10)
    assert not answer["ok"] and "never verified" in answer["error"]
    assert entries(target) == []


def test_a_stream_not_starting_with_the_metadata_is_refused(source, target):
    backup = make_backup(source, "1")
    answer = receive(stream_of(backup_members(backup)[1:]), str(target), 10)
    assert not answer["ok"] and "must start with a backup's ID.json" in answer["error"]
    assert entries(target) == []


def test_a_copy_already_there_and_intact_is_kept(source, target):
    backup = make_backup(source, "1")
    assert receive(stream_of(backup_members(backup)), str(target), 10)["ok"]
    before = {name: (target / name).stat().st_mtime_ns for name in backup.files()}
    answer = receive(stream_of(backup_members(backup)), str(target), 10)
    assert answer["ok"] and answer["present"] is True
    assert before == {name: (target / name).stat().st_mtime_ns for name in backup.files()}


def test_a_damaged_copy_is_replaced_by_one_that_matches(source, target):
    backup = make_backup(source, "1")
    assert receive(stream_of(backup_members(backup)), str(target), 10)["ok"]
    damaged = target / f"{backup.id}.pgdump" / "toc.dat"
    damaged.write_bytes(b"X" + damaged.read_bytes()[1:])
    answer = receive(stream_of(backup_members(backup)), str(target), 10)
    assert answer["ok"] and answer["present"] is False and answer["replaced"] is True
    assert damaged.read_bytes() == (source / f"{backup.id}.pgdump" / "toc.dat").read_bytes()


def test_the_receiver_prunes_to_its_retention(source, target):
    backups = [make_backup(source, stamp) for stamp in "1234"]
    answers = [receive(stream_of(backup_members(backup)), str(target), 2) for backup in backups]
    assert all(answer["ok"] for answer in answers)
    assert answers[2]["pruned"] == [backups[0].id] and answers[3]["pruned"] == [backups[1].id]
    assert [copy.id for copy in read_backups(str(target), "postgresql", "shop")] == [
        backups[3].id, backups[2].id]


def test_leftovers_of_a_killed_receive_are_removed(source, target):
    backup = make_backup(source, "1")
    (target / f".{backup.id}.pgdump.partial").mkdir()
    (target / f".{backup.id}.json.partial").write_text("{}")
    assert receive(stream_of(backup_members(backup)), str(target), 10)["ok"]
    assert not [name for name in entries(target) if name.endswith(".partial")]


def test_a_missing_directory_is_refused(source, tmp_path):
    backup = make_backup(source, "1")
    answer = receive(stream_of(backup_members(backup)), str(tmp_path / "nowhere"), 10)
    assert not answer["ok"] and "does not exist" in answer["error"]


def test_the_key_runs_nothing_but_the_receiver(target):
    out = io.StringIO()
    code = main(["receive", str(target), "10"], environ={"SSH_ORIGINAL_COMMAND": "rm -rf /"},
                stdin=io.BytesIO(b""), stdout=out)
    answer = json.loads(out.getvalue())
    assert code == 1 and not answer["ok"] and "only receives backups" in answer["error"]


def test_send_streams_to_the_receiver_and_returns_its_answer(source, target):
    backup = make_backup(source, "1")
    answer = send(backup, [*RECEIVER, "receive", str(target), "10"])
    assert answer["ok"] and answer["id"] == backup.id
    assert read_backups(str(target), "postgresql", "shop")[0].id == backup.id


def test_send_reports_a_refusal(source, target):
    backup = make_backup(source, "1")
    toc = source / f"{backup.id}.pgdump" / "toc.dat"
    toc.write_bytes(toc.read_bytes().replace(b"PGDMP", b"PGDMQ"))
    with pytest.raises(CopyError, match="refused backup .* does not match the SHA-256"):
        send(backup, [*RECEIVER, "receive", str(target), "10"])
    assert entries(target) == []


def test_a_failed_copy_is_tried_once_more_then_reported(source, capsys):
    backup = make_backup(source, "1")
    pauses = []
    with pytest.raises(CopyError, match="without the receiver's answer"):
        copy_with_retry(backup, [sys.executable, "-c", "import sys; sys.exit(255)"], 2, 30,
                        sleep=pauses.append)
    assert pauses == [30]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Copy of {backup.id}, attempt 1 of 2, failed")
    assert lines[1].startswith("<3>Copy of") and "attempt 2 of 2" in lines[1]


def test_a_copy_that_fails_once_succeeds_on_the_retry(source, target, tmp_path):
    backup = make_backup(source, "1")
    flag = tmp_path / "failed-once"
    script = (f"import os, sys\nif not os.path.exists({str(flag)!r}):\n"
              f"    open({str(flag)!r}, 'w').close(); sys.exit(255)\n"
              f"sys.path.insert(0, {str(COLLECTIONS)!r})\n"
              "from ansible_collections.slipway.django.plugins.module_utils.scheduled_backup"
              " import main\nsys.exit(main(sys.argv[1:]))\n")
    answer = copy_with_retry(backup, [sys.executable, "-c", script, "receive", str(target), "5"],
                             2, 0, sleep=lambda _: None)
    assert answer["ok"] and flag.exists()


def test_ssh_pins_the_host_key_and_uses_only_its_key():
    command = ssh_command(dict(address="backup1", port=2222, user="shop-backup"),
                          "/run/credentials/shop-backup.service/ssh_key",
                          "/run/credentials/shop-backup.service/known_hosts")
    joined = " ".join(command)
    for option in ("StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes",
                   "UserKnownHostsFile=/run/credentials/shop-backup.service/known_hosts",
                   "GlobalKnownHostsFile=/dev/null", "-F /dev/null", "-p 2222",
                   "-l shop-backup", "-i /run/credentials/shop-backup.service/ssh_key"):
        assert option in joined
    assert command[-2:] == ["backup1", "receive"]


def test_backup_params_are_db_backup_s_own_for_a_backup():
    config = load_config(json.dumps(dict(engine="postgresql", db="shop", dest_dir="/b",
                                         login_host="127.0.0.1", login_port=5432,
                                         login_user="shop", retention=3,
                                         metadata=dict(app="shop"))))
    params = backup_params(config, "secret")
    assert params["action"] == "backup" and params["retention"] == 3
    assert params["login_password"] == "secret" and params["dest_dir"] == "/b"
    assert params["metadata"] == dict(app="shop", trigger="schedule")
    assert params["connect_timeout"] == 30 and params["backup"] is None


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not valid JSON"),
    ('{"engine": "postgresql"}', "lacks db, dest_dir"),
    ('{"engine": "mysql", "db": "a", "dest_dir": "/b", "copy": {"address": "x"}}', "lacks user"),
])
def test_a_bad_configuration_is_refused(text, message):
    with pytest.raises(scheduled_backup.BackupError, match=message):
        load_config(text)


def test_run_needs_its_credentials(capsys):
    assert scheduled_backup.run({}) == 1
    assert "run the backup through its systemd service" in capsys.readouterr().out


def run_with(tmp_path, monkeypatch, source, copy_command, copy=True):
    """run() with credentials in tmp_path, execute() replaced by a backup made here, and ssh
    by copy_command."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    config = dict(engine="postgresql", db="shop", dest_dir=str(source), retention=5)
    if copy:
        config["copy"] = dict(address="backup1", user="shop-backup", path="/srv/b",
                              retry_delay=0)
    (credentials / "config").write_text(json.dumps(config))
    (credentials / "db_password").write_text("secret\n")
    seen = {}

    def execute(params, check_mode):
        seen.update(params)
        backup = make_backup(source, "1")
        return dict(warnings=[], msg=f"Backed up 'shop' to {backup.path}",
                    backup=dict(id=backup.id, path=backup.path,
                                metadata_path=backup.metadata_path))

    monkeypatch.setattr(scheduled_backup, "execute", execute)
    monkeypatch.setattr(scheduled_backup, "ssh_command", lambda *args: copy_command)
    code = scheduled_backup.run({"CREDENTIALS_DIRECTORY": str(credentials)})
    return code, seen


def test_run_backs_up_then_copies(tmp_path, monkeypatch, source, target, capsys):
    code, seen = run_with(tmp_path, monkeypatch, source,
                          [*RECEIVER, "receive", str(target), "5"])
    assert code == 0
    assert seen["login_password"] == "secret" and seen["dest_dir"] == str(source)
    out = capsys.readouterr().out
    assert "Backed up 'shop'" in out and "Copied 2026112" in out and "SHA-256" in out
    assert len(read_backups(str(target), "postgresql", "shop")) == 1


def test_run_fails_when_the_copy_fails_twice(tmp_path, monkeypatch, source, capsys):
    code = run_with(tmp_path, monkeypatch, source,
                    [sys.executable, "-c", "import sys; sys.exit(255)"])[0]
    assert code == 1
    out = capsys.readouterr().out
    assert "attempt 2 of 2" in out and "<3>Backup" in out and "NOT copied" in out


def test_run_without_a_copy_only_backs_up(tmp_path, monkeypatch, source, capsys):
    code = run_with(tmp_path, monkeypatch, source, ["false"], copy=False)[0]
    assert code == 0 and "Copied" not in capsys.readouterr().out


def test_a_failed_backup_fails_the_run(tmp_path, monkeypatch, capsys):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "config").write_text(json.dumps(dict(engine="postgresql", db="shop",
                                                        dest_dir="relative")))
    assert scheduled_backup.run({"CREDENTIALS_DIRECTORY": str(credentials)}) == 1
    assert capsys.readouterr().out.startswith("<3>Backup failed: Invalid options")


def installed_layout(tmp_path: Path) -> Path:
    """The code as the app role installs it on a host."""
    root = tmp_path / "code"
    package = root / "ansible_collections" / "slipway" / "django" / "plugins" / "module_utils"
    package.mkdir(parents=True)
    for directory in [package, *package.parents]:
        if directory == root:
            break
        (directory / "__init__.py").write_text("")
    for name in ("database.py", "db_backup.py", "scheduled_backup.py"):
        shutil.copy(MODULE_UTILS / name, package / name)
    shutil.copy(ENTRY, root / "slipway_backup.py")
    return root


def test_the_installed_entry_point_receives_without_ansible(source, target, tmp_path):
    backup = make_backup(source, "1")
    root = installed_layout(tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", str(root / "slipway_backup.py"), "receive", str(target), "3"],
        input=stream_of(backup_members(backup)).getvalue(), capture_output=True,
        env=environment, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"]
    assert read_backups(str(target), "postgresql", "shop")[0].id == backup.id


def test_the_entry_point_explains_its_usage(tmp_path):
    root = installed_layout(tmp_path)
    result = subprocess.run([sys.executable, "-I", str(root / "slipway_backup.py"), "backup"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "usage:" in result.stderr
