"""Scheduled backups (app_backup_schedule, app_backup_copy_to in molecule.yml): the timer on
db1 runs db_backup's code as an unprivileged user, and the same run copies each verified
backup to lb1, whose receiver checks every file's SHA-256. The tests start the service
themselves (systemctl start), not waiting for the calendar. (Named to run after
test_multihost.py: the deploys there must keep the timer as it is.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
DB_HOST = "slipway-mh-db1"
TARGET = "slipway-mh-lb1"
APP = "shop"
UNIT = f"{APP}-backup"
SCHEDULED = f"/var/backups/{APP}-scheduled"
COPIES = f"/srv/backups/{APP}"
USER = f"{APP}-backup"
ETC = f"/etc/slipway/backup/{APP}"
CODE = f"/opt/slipway/backup/{APP}"
RETENTION = 2
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def get_host(name: str):
    return testinfra.get_host(f"ansible://{name}",
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def db_host():
    return get_host(DB_HOST)


@pytest.fixture(scope="module")
def target():
    return get_host(TARGET)


def backups(host, directory: str) -> dict:
    """{id: metadata} of the backups in directory."""
    found = {}
    for path in host.check_output(
            f"find {directory} -maxdepth 1 -name '*.json' -printf '%p\\n' | sort").split():
        info = json.loads(host.file(path).content_string)
        found[info["id"]] = info
    return found


def checksums(host, directory: str, info: dict) -> dict:
    """{file: SHA-256} of a backup's files as found in directory."""
    names = " ".join(shlex.quote(f"{directory}/{name}") for name in sorted(info["files"]))
    output = host.check_output(f"sha256sum {names}")
    return {line.split(None, 1)[1][len(directory) + 1:]: line.split(None, 1)[0]
            for line in output.splitlines()}


def start_backup(host):
    """systemctl start of the service (a oneshot: returns once the run is over)."""
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    result = host.run(f"systemctl start {UNIT}.service")
    journal = host.run(f"journalctl -u {UNIT}.service --since {shlex.quote(since)} -o cat "
                       "--no-pager").stdout
    return result, journal


def entries(host, directory: str) -> list:
    return host.check_output(f"ls -A {directory}").split()


def test_the_timer_is_enabled_on_the_database_host(db_host, target):
    assert db_host.service(f"{UNIT}.timer").is_enabled
    assert db_host.service(f"{UNIT}.timer").is_running
    calendar = db_host.check_output(f"systemctl show -P TimersCalendar {UNIT}.timer")
    assert "03:00:00" in calendar
    assert db_host.check_output(f"systemctl show -P Persistent {UNIT}.timer") == "yes"
    assert db_host.check_output(f"systemctl show -P RandomizedDelayUSec {UNIT}.timer") == "15min"
    assert db_host.check_output(f"systemctl show -P User {UNIT}.service") == USER
    assert not target.file(f"/etc/systemd/system/{UNIT}.timer").exists


def test_the_secrets_are_root_s_and_never_in_the_unit(db_host):
    for name in ("config.json", "db_password", "id_ed25519", "known_hosts"):
        secret = db_host.file(f"{ETC}/{name}")
        assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600), name
    assert db_host.file(ETC).mode == 0o700
    password = db_host.file(f"{ETC}/db_password").content_string
    unit = db_host.check_output(f"systemctl cat {UNIT}.service {UNIT}.timer")
    assert password and password not in unit
    assert "Environment=" not in unit
    assert db_host.check_output(f"systemctl show -P Environment {UNIT}.service") == ""


def test_the_target_host_key_is_pinned_from_the_inventory(db_host, target):
    pinned = db_host.file(f"{ETC}/known_hosts").content_string
    host_key = target.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()
    assert pinned == " ".join([TARGET, *host_key[:2]]) + "\n"


def test_the_target_authorizes_the_key_for_the_receiver_only(db_host, target):
    line = target.file(f"/var/lib/{USER}/.ssh/authorized_keys").content_string.strip()
    public = db_host.file(f"{ETC}/id_ed25519.pub").content_string.split()
    assert line.startswith(f'restrict,command="/usr/bin/python3 -I {CODE}/slipway_backup.py'
                           f' receive {COPIES} {RETENTION}" ')
    assert public[1] in line
    assert target.file(f"/var/lib/{USER}/.ssh/authorized_keys").user == "root"
    assert target.user(USER).exists
    directory = target.file(COPIES)
    assert (directory.user, directory.mode) == (USER, 0o700)


@pytest.fixture(scope="module")
def first_run(db_host):
    before = set(backups(db_host, SCHEDULED))
    result, journal = start_backup(db_host)
    assert result.rc == 0, (result.stderr, journal)
    new = sorted(set(backups(db_host, SCHEDULED)) - before)
    assert len(new) == 1, (new, journal)
    return new[0], journal


def test_a_started_backup_is_verified_private_and_unprivileged(db_host, first_run):
    backup_id, journal = first_run
    info = backups(db_host, SCHEDULED)[backup_id]
    assert info["verified"] is True and info["engine"] == "postgresql" and info["db"] == APP
    assert info["metadata"] == {"app": APP, "environment": "molecule-multihost",
                                "trigger": "schedule"}
    assert info["toc"]["table_data"] > 0
    assert checksums(db_host, SCHEDULED, info) == {
        name: entry["sha256"] for name, entry in info["files"].items()}
    for name in [*info["files"], f"{backup_id}.json"]:
        item = db_host.file(f"{SCHEDULED}/{name}")
        assert (item.user, item.group, item.mode) == (USER, USER, 0o600), name
    dump = db_host.file(f"{SCHEDULED}/{backup_id}.pgdump")
    assert (dump.user, dump.mode) == (USER, 0o700)
    assert f"Backed up '{APP}'" in journal and "verified" in journal
    assert db_host.run(f"systemctl is-failed {UNIT}.service").stdout.strip() != "failed"


def test_the_same_run_copied_it_to_the_target_with_matching_checksums(db_host, target,
                                                                      first_run):
    backup_id, journal = first_run
    info = backups(db_host, SCHEDULED)[backup_id]
    copies = backups(target, COPIES)
    assert copies[backup_id] == info
    assert checksums(target, COPIES, info) == checksums(db_host, SCHEDULED, info)
    for name in [*info["files"], f"{backup_id}.json"]:
        item = target.file(f"{COPIES}/{name}")
        assert (item.user, item.mode) == (USER, 0o600), name
    assert not [name for name in entries(target, COPIES) if name.endswith(".partial")]
    assert f"Copied {backup_id}" in journal and "SHA-256" in journal


# Run on db1 as root, with the service's own key and pinned host key: the backup's stream,
# with one byte of one file changed when asked (as if corrupted on the way).
SENDER = """
import subprocess, sys
sys.path.insert(0, {code!r})
from ansible_collections.slipway.django.plugins.module_utils.db_backup import read_backups
from ansible_collections.slipway.django.plugins.module_utils import scheduled_backup as sb
backup = [b for b in read_backups({scheduled!r}, "postgresql", {app!r}) if b.id == {id!r}][0]
members = sb.backup_members(backup)
if {tamper!r}:
    name, path = members[-1]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open("/tmp/tampered", "wb").write(bytes(data))
    members[-1] = (name, "/tmp/tampered")
command = sb.ssh_command(dict(address={target!r}, user={user!r}), {etc!r} + "/id_ed25519",
                         {etc!r} + "/known_hosts")
process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
try:
    sb.write_stream(process.stdin, members)
    process.stdin.close()
except BrokenPipeError:
    pass
print(process.stdout.read().decode())
"""


def send_by_hand(db_host, backup_id: str, tamper: bool) -> dict:
    script = SENDER.format(code=CODE, scheduled=SCHEDULED, app=APP, id=backup_id, tamper=tamper,
                           target=TARGET, user=USER, etc=ETC)
    result = db_host.run(f"python3 -I -c {shlex.quote(script)}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_copy_corrupted_on_the_way_is_refused_and_leaves_nothing(db_host, target,
                                                                   first_run):
    backup_id, _ = first_run
    info = backups(db_host, SCHEDULED)[backup_id]
    # The target loses its copy, so that the receiver must take the stream.
    target.check_output(f"rm -rf {COPIES}/{backup_id}.json {COPIES}/{backup_id}.pgdump")
    answer = send_by_hand(db_host, backup_id, tamper=True)
    assert answer["ok"] is False
    assert "does not match the SHA-256" in answer["error"] and "nothing was kept" in answer[
        "error"]
    left = entries(target, COPIES)
    assert not [name for name in left if backup_id in name], left
    assert not [name for name in left if name.endswith(".partial")], left
    # The stream as it left the database host is taken again.
    answer = send_by_hand(db_host, backup_id, tamper=False)
    assert answer["ok"] is True and answer["id"] == backup_id
    assert checksums(target, COPIES, info) == checksums(db_host, SCHEDULED, info)


def test_the_key_runs_nothing_but_the_receiver(db_host, target):
    command = (f"ssh -F /dev/null -i {ETC}/id_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
               f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={ETC}/known_hosts "
               f"{USER}@{TARGET} 'touch {COPIES}/owned; id'")
    result = db_host.run(command)
    assert result.rc == 1
    assert "only receives backups" in json.loads(result.stdout)["error"]
    # (A directory that user may write: the command was not run.)
    assert not target.file(f"{COPIES}/owned").exists


def test_a_failing_backup_fails_the_unit(db_host):
    # The service's user can no longer write its directory.
    db_host.check_output(f"chown root:root {SCHEDULED}")
    try:
        result, journal = start_backup(db_host)
        assert result.rc != 0
        assert db_host.run(f"systemctl is-failed {UNIT}.service").stdout.strip() == "failed"
        assert f"{UNIT}.service" in db_host.check_output("systemctl --failed --no-legend")
        assert "Backup failed" in journal and "Permission denied" in journal
    finally:
        db_host.check_output(f"chown {USER}:{USER} {SCHEDULED}")
        db_host.run(f"systemctl reset-failed {UNIT}.service")


def test_retention_prunes_both_sides(db_host, target, first_run):
    for _ in range(RETENTION):
        result, journal = start_backup(db_host)
        assert result.rc == 0, journal
        time.sleep(1)
    here, there = backups(db_host, SCHEDULED), backups(target, COPIES)
    assert len(here) == RETENTION, sorted(here)
    assert sorted(there) == sorted(here)
    assert first_run[0] not in here and first_run[0] not in there
    for info in here.values():
        assert checksums(target, COPIES, info) == checksums(db_host, SCHEDULED, info)
    assert not [name for name in entries(target, COPIES) if name.startswith(".")
                and name != ".db_backup.lock"]


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    command = ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=PROJECT)


def recap(output: str) -> dict:
    return dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", ANSI.sub("", output),
                           re.MULTILINE))


def psql(db_host, sql: str) -> str:
    """SQL in the app's database as the app's user (the owner of its tables)."""
    statement = shlex.quote(f"SET ROLE {APP}; {sql}")
    return db_host.check_output(f"runuser -u postgres -- psql -d {APP} -qAt -c {statement}")


def test_a_scheduled_backup_is_restored_by_its_id(db_host):
    result, journal = start_backup(db_host)
    assert result.rc == 0, journal
    newest = max(backups(db_host, SCHEDULED).values(), key=lambda info: info["created_at"])
    psql(db_host, "CREATE TABLE made_after_the_backup (id int)")
    result = ansible_playbook(str(PROJECT / "playbooks" / "rollback.yml"),
                              "-e", f"backup={newest['id']}")
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output[-5000:]
    assert psql(db_host, "SELECT to_regclass('made_after_the_backup') IS NULL") == "t"
    # The database as it was went to a safety backup first, root's, with the deploys' backups.
    safety = [info for info in backups(db_host, f"/var/backups/{APP}").values()
              if info["metadata"].get("reason") == f"safety backup before restoring {newest['id']}"]
    assert len(safety) == 1
    assert db_host.file(f"/var/backups/{APP}/{safety[0]['id']}.json").user == "root"
    # The service still owns its directory and lock: its next run works.
    result, journal = start_backup(db_host)
    assert result.rc == 0, journal


@pytest.mark.parametrize("backup_id", ["20991231T000000Z-0badc0de", "not-an-id"])
def test_an_unknown_backup_id_is_refused_before_anything_changes(db_host, backup_id):
    before = backups(db_host, f"/var/backups/{APP}")
    result = ansible_playbook(str(PROJECT / "playbooks" / "rollback.yml"), "-e",
                              f"backup={backup_id}")
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0
    assert f"Backup {backup_id} of {APP} is not in /var/backups/{APP} or {SCHEDULED}" in output
    assert "Nothing was changed" in output
    assert backups(db_host, f"/var/backups/{APP}") == before


def test_setting_up_the_schedule_again_changes_nothing(tmp_path):
    playbook = EPHEMERAL / "backup-schedule.yml"
    playbook.write_text(
        "- name: Set up the scheduled backup\n  hosts: app\n  tasks:\n"
        "    - name: Scheduled backup\n      ansible.builtin.import_role:\n"
        "        name: slipway.django.app\n        tasks_from: backup_schedule\n")
    result = ansible_playbook(str(playbook))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    counts = recap(result.stdout)
    assert counts and set(counts.values()) == {"0"}, counts
