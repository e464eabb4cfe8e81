# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduled backups: db_backup's own code run by a systemd timer, and the copy off the host.

The app role installs this file, db_backup.py and database.py on the database host (and on the
copy's target) under a private directory laid out as ``ansible_collections/slipway/django/
plugins/module_utils``, with roles/app/files/slipway_backup.py as the entry point; no Ansible
runs there.

``run`` (the timer's service, as an unprivileged user): db_backup.execute() takes, verifies,
secures and prunes a backup exactly as the module does, then ``send`` streams it (a tar of
``ID.json`` first, then the dump's files) over SSH to the target, once more after a pause when
that fails. The service gets its configuration, the database password, the SSH key and the
pinned host key from systemd (LoadCredential=), never from a command line or the environment.

``receive`` (the forced command of the key on the target): reads that stream, accepts only
the files the backup's metadata lists, with their recorded sizes and SHA-256, writes them under
db_backup's hidden ``.NAME.partial`` names, and renames them into place (dump first, metadata
last) only once every file matched, then prunes to its retention. It answers with one JSON
line; anything refused leaves no file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

from ansible_collections.slipway.django.plugins.module_utils.database import missing_driver
from ansible_collections.slipway.django.plugins.module_utils.db_backup import (
    BACKUP_ID,
    MADE_BY,
    SUFFIXES,
    Backup,
    BackupError,
    content_problem,
    execute,
    format_bytes,
    free_bytes,
    fsync_dir,
    load_metadata,
    locked,
    prune,
    prune_plan,
    read_backups,
    remove,
    remove_stale_partials,
    secure,
)

CHUNK_BYTES = 1 << 20
METADATA_MAX_BYTES = 4 << 20
# A pg_dump directory holds toc.dat and one file per table (NNNN.dat.gz): plain names only.
DUMP_ENTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Free space the receiver keeps beyond the backup's own size.
RECEIVE_MARGIN_BYTES = 64 << 20
CREDENTIALS = ("config", "db_password", "ssh_key", "known_hosts")
BACKUP_DEFAULTS = dict(
    login_host=None, login_port=None, login_user=None, login_unix_socket=None, login_db=None,
    connect_timeout=30, retention=10, min_free_bytes=2147483648, free_factor=2.0, jobs=2,
    parallel_threshold_bytes=104857600, metadata={})


class CopyError(Exception):
    """A copy that failed or was refused: what happened and what to do."""


def log(message: str, error: bool = False) -> None:
    """One line for the journal (an error gets syslog priority 3 through the <3> prefix)."""
    sys.stdout.write(("<3>" if error else "") + message + "\n")
    sys.stdout.flush()


# The scheduled run ---------------------------------------------------------------------------

def credentials_dir(environ: dict) -> str:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise BackupError("CREDENTIALS_DIRECTORY is not set: run the backup through its systemd"
                          " service (systemctl start APP-backup.service), which passes the"
                          " configuration and secrets as credentials.")
    return directory


def read_credential(directory: str, name: str) -> str | None:
    """The credential's content (one trailing newline dropped), or None when it is absent."""
    try:
        with open(os.path.join(directory, name)) as handle:
            value = handle.read()
    except FileNotFoundError:
        return None
    return value[:-1] if value.endswith("\n") else value


def load_config(text: str) -> dict:
    """The run's configuration (JSON written by the app role), checked."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise BackupError(f"The backup configuration is not valid JSON ({error}).") from None
    missing = [key for key in ("engine", "db", "dest_dir") if not config.get(key)]
    if not isinstance(config, dict) or missing:
        raise BackupError(f"The backup configuration lacks {', '.join(missing)}.")
    copy = config.get("copy")
    if copy is not None:
        absent = [key for key in ("address", "user") if not copy.get(key)]
        if absent:
            raise BackupError(f"The copy's configuration lacks {', '.join(absent)}.")
    return config


def backup_params(config: dict, password: str | None) -> dict:
    """db_backup's options for action=backup, as the module would get them."""
    params = dict(BACKUP_DEFAULTS)
    params.update({key: config[key] for key in BACKUP_DEFAULTS if key in config})
    params.update(engine=config["engine"], db=config["db"], dest_dir=config["dest_dir"],
                  action="backup", backup=None, safety_backup=True, login_password=password,
                  metadata=dict(params["metadata"] or {}, trigger="schedule"))
    return params


def ssh_command(copy: dict, key_path: str, known_hosts_path: str) -> list:
    """ssh to the target: only this key, only the pinned host key, never a prompt."""
    return ["ssh", "-F", "/dev/null", "-T", "-i", key_path, "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts_path}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no", "-o", "HostKeyAlgorithms=ssh-ed25519",
            "-o", f"ConnectTimeout={int(copy.get('connect_timeout', 30))}",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-p", str(int(copy.get("port") or 22)), "-l", copy["user"], copy["address"],
            "receive"]


def backup_members(backup: Backup) -> list:
    """(name in the stream, path) of a backup: its metadata first, then its dump's files."""
    dest_dir = os.path.dirname(backup.path)
    return [(os.path.basename(backup.metadata_path), backup.metadata_path)] + [
        (name, os.path.join(dest_dir, name)) for name in sorted(backup.files())]


def write_stream(out, members: list) -> None:
    """members as an uncompressed tar stream (the dump is compressed already)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members:
            info = tar.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o600
            with open(path, "rb") as handle:
                tar.addfile(info, handle)


def parse_answer(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and "ok" in answer:
            return answer
    return None


def send(backup: Backup, command: list) -> dict:
    """Stream backup to command (ssh to the receiver); the receiver's answer when it accepted
    the backup, else CopyError. (ssh's ServerAlive options end a connection that hangs.)"""
    with tempfile.TemporaryFile() as errors:
        # The backup streams into ssh's stdin as it is read, which AnsibleModule.run_command
        # cannot do (it takes its input whole); and the timer's runner has no AnsibleModule.
        process = subprocess.Popen(  # pylint: disable=ansible-bad-function
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        try:
            write_stream(process.stdin, backup_members(backup))
        except (BrokenPipeError, ConnectionResetError):
            pass  # The receiver stopped reading: its answer says why.
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.close()
        stdout = process.stdout.read()
        process.stdout.close()
        process.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace").strip()
    answer = parse_answer(stdout.decode(errors="replace"))
    if answer is None:
        detail = " | ".join(stderr.splitlines()[-5:]) or "no output"
        raise CopyError(f"ssh exited with {process.returncode} without the receiver's answer:"
                        f" {detail}")
    if not answer.get("ok"):
        raise CopyError(f"The receiver refused backup {backup.id}: {answer.get('error')}")
    if answer.get("id") != backup.id:
        raise CopyError(f"The receiver answered for {answer.get('id')!r}, not {backup.id}.")
    return answer


def copy_with_retry(backup: Backup, command: list, attempts: int, pause: float,
                    sleep=time.sleep) -> dict:
    """send(), attempts times at most, pause seconds apart; the last CopyError otherwise."""
    for attempt in range(1, attempts + 1):
        try:
            return send(backup, command)
        except (CopyError, OSError) as error:
            again = attempt < attempts
            log(f"Copy of {backup.id}, attempt {attempt} of {attempts}, failed: {error}"
                + (f"; trying again in {pause:g} s." if again else "."), error=not again)
            if not again:
                raise CopyError(str(error)) from None
            sleep(pause)
    raise AssertionError("unreachable")


def run(environ: dict) -> int:
    """The timer's service: back up, then copy; 0 when both succeeded."""
    try:
        directory = credentials_dir(environ)
        config = load_config(read_credential(directory, "config") or "")
        missing = missing_driver(config["engine"])
        if missing:
            raise BackupError(f"The Python library {missing[0]} is missing on this host (Debian:"
                              f" python3-{missing[0].lower()}); nothing was done.")
        result = execute(backup_params(config, read_credential(directory, "db_password")), False)
    except BackupError as error:
        log(f"Backup failed: {error}", error=True)
        return 1
    for warning in result["warnings"]:
        log(f"Warning: {warning}")
    log(result["msg"])
    entry = result["backup"]
    copy = config.get("copy")
    if not copy:
        return 0
    info = load_metadata(config["dest_dir"], entry["id"])
    if info is None:
        log(f"Backup {entry['id']} vanished from {config['dest_dir']} before its copy.",
            error=True)
        return 1
    backup = Backup(entry["id"], entry["path"], entry["metadata_path"], info)
    command = ssh_command(copy, os.path.join(directory, "ssh_key"),
                          os.path.join(directory, "known_hosts"))
    target = f"{copy['user']}@{copy['address']}:{copy.get('path', '')}"
    started = time.monotonic()
    try:
        answer = copy_with_retry(backup, command, int(copy.get("attempts", 2)),
                                 float(copy.get("retry_delay", 30)))
    except CopyError:
        log(f"Backup {backup.id} is verified and kept here, but it was NOT copied to {target}.",
            error=True)
        return 1
    log(f"Copied {backup.id} ({format_bytes(answer.get('bytes') or 0)},"
        f" {answer.get('files')} files) to {target} in {time.monotonic() - started:.1f} s;"
        f" the receiver checked every file's SHA-256"
        f"{' (it was there already)' if answer.get('present') else ''} and pruned"
        f" {len(answer.get('pruned') or [])} old copies.")
    return 0


# The receiver --------------------------------------------------------------------------------

class Refused(Exception):
    """The stream is not a verified backup's files as its metadata lists them."""


def check_metadata(raw: bytes, backup_id: str) -> dict:
    """The metadata of the backup the stream carries, checked before any file is written."""
    try:
        info = json.loads(raw)
    except ValueError:
        raise Refused(f"{backup_id}.json is not JSON") from None
    if not isinstance(info, dict) or info.get("made_by") != MADE_BY or info.get("id") != backup_id:
        raise Refused(f"{backup_id}.json is not the metadata of db_backup's backup {backup_id}")
    if info.get("verified") is not True:
        raise Refused(f"backup {backup_id} was never verified")
    suffix = SUFFIXES.get(info.get("engine"))
    if suffix is None or not isinstance(info.get("db"), str) or not info["db"]:
        raise Refused(f"{backup_id}.json names no known engine and database")
    files = info.get("files")
    if not isinstance(files, dict) or not files:
        raise Refused(f"{backup_id}.json lists no files")
    dump = backup_id + suffix
    for name, entry in files.items():
        if suffix == ".pgdump":
            parent, leaf = (name.split("/", 1) + [""])[:2]
            valid = parent == dump and bool(DUMP_ENTRY.match(leaf))
        else:
            valid = name == dump
        if not valid:
            raise Refused(f"{backup_id}.json lists a file outside its dump: {name!r}")
        if not (isinstance(entry, dict) and isinstance(entry.get("size"), int)
                and entry["size"] >= 0 and SHA256.match(str(entry.get("sha256", "")))):
            raise Refused(f"{backup_id}.json records no size and SHA-256 for {name}")
    return info


def copy_member(source, path: str, expected: dict, name: str) -> int:
    """Write a member's content to path (new, 0600), then compare it with its record."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if size != expected["size"]:
        raise Refused(f"{name} has {size} bytes, its metadata records {expected['size']}")
    if digest.hexdigest() != expected["sha256"]:
        raise Refused(f"{name} does not match the SHA-256 its metadata records (corrupted in"
                      f" transit or at the source)")
    return size


def present_problem(dest_dir: str, info: dict) -> tuple:
    """(backup, problem) of the published copy of info's backup here, or (None, None)."""
    for backup in read_backups(dest_dir, info["engine"], info["db"]):
        if backup.id == info["id"]:
            return backup, content_problem(backup, 1)
    return None, None


def receive_into(tar, dest_dir: str, retention: int) -> dict:
    """The stream's backup published in dest_dir (the lock held); the answer."""
    first = tar.next()
    if first is None:
        raise Refused("the stream is empty")
    backup_id = first.name[:-len(".json")] if first.name.endswith(".json") else ""
    if not (BACKUP_ID.match(backup_id) and first.isfile()):
        raise Refused(f"the stream must start with a backup's ID.json, not {first.name!r}")
    if first.size > METADATA_MAX_BYTES:
        raise Refused(f"{first.name} is larger than {format_bytes(METADATA_MAX_BYTES)}")
    raw = tar.extractfile(first).read()
    info = check_metadata(raw, backup_id)
    existing, problem = present_problem(dest_dir, info)
    if existing is not None and problem is None:
        return dict(ok=True, id=backup_id, present=True, files=len(info["files"]),
                    bytes=sum(entry["size"] for entry in info["files"].values()), pruned=[])
    expected = info["files"]
    total = sum(entry["size"] for entry in expected.values())
    free = free_bytes(dest_dir)
    if free < total + RECEIVE_MARGIN_BYTES:
        raise Refused(f"{dest_dir} has {format_bytes(free)} free, the backup needs"
                      f" {format_bytes(total)} and {format_bytes(RECEIVE_MARGIN_BYTES)} more")
    suffix = SUFFIXES[info["engine"]]
    dump = backup_id + suffix
    partial = os.path.join(dest_dir, f".{dump}.partial")
    metadata_partial = os.path.join(dest_dir, f".{backup_id}.json.partial")
    final = os.path.join(dest_dir, dump)
    metadata_final = os.path.join(dest_dir, backup_id + ".json")
    published = False
    try:
        if suffix == ".pgdump":
            os.mkdir(partial, 0o700)
        seen = set()
        # (Iterating a TarFile would start again from its first member.)
        while (member := tar.next()) is not None:
            if member.name not in expected or member.name in seen:
                raise Refused(f"the stream holds {member.name!r}, which the metadata does not"
                              f" list (or lists once)")
            if not member.isfile():
                raise Refused(f"{member.name} is not a regular file in the stream")
            seen.add(member.name)
            inner = member.name.partition("/")[2]
            path = os.path.join(partial, inner) if inner else partial
            copy_member(tar.extractfile(member), path, expected[member.name], member.name)
        missing = sorted(set(expected) - seen)
        if missing:
            raise Refused(f"the stream ended without {len(missing)} of the backup's files"
                          f" ({', '.join(missing[:3])})")
        secure(partial)
        if existing is not None:
            # A damaged copy (problem above) is replaced by the one that just matched.
            remove(existing.metadata_path)
            remove(existing.path)
        fd = os.open(metadata_partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, final)
        published = True
        os.rename(metadata_partial, metadata_final)
        fsync_dir(dest_dir)
    except BaseException:
        for path in (partial, metadata_partial) + ((final,) if published else ()):
            remove(path)
        raise
    pruned = prune(prune_plan(read_backups(dest_dir, info["engine"], info["db"]), retention))
    return dict(ok=True, id=backup_id, present=False, replaced=existing is not None,
                files=len(expected), bytes=total, pruned=pruned)


def receive(stream, dest_dir: str, retention: int) -> dict:
    """Receive one backup from stream into dest_dir; the answer (ok false and the error when
    refused, with nothing left behind)."""
    if not os.path.isdir(dest_dir):
        return dict(ok=False, error=f"{dest_dir} does not exist on the receiving host")
    try:
        with locked(dest_dir):
            remove_stale_partials(dest_dir)
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    return receive_into(tar, dest_dir, retention)
            finally:
                remove_stale_partials(dest_dir)
    except Refused as error:
        return dict(ok=False, error=f"{error}; nothing was kept")
    except (tarfile.TarError, EOFError) as error:
        return dict(ok=False, error=f"the stream is not a complete tar stream ({error});"
                                    f" nothing was kept")
    except (OSError, BackupError) as error:
        return dict(ok=False, error=f"{error}; nothing was kept")


# The entry point -----------------------------------------------------------------------------

USAGE = ("usage: slipway_backup.py run  (the timer's service; its configuration comes from"
         " systemd credentials)\n"
         "       slipway_backup.py receive DEST_DIR RETENTION  (the SSH key's forced command;"
         " a backup's tar stream on stdin)")


def main(argv: list, environ: dict | None = None, stdin=None, stdout=None) -> int:
    environ = os.environ if environ is None else environ
    if argv == ["run"]:
        return run(dict(environ))
    if len(argv) == 3 and argv[0] == "receive" and argv[2].isdigit():
        original = environ.get("SSH_ORIGINAL_COMMAND")
        if original not in (None, "receive"):
            answer = dict(ok=False, error=f"this key only receives backups; {original!r} was"
                                          f" not run")
        else:
            answer = receive(stdin or sys.stdin.buffer, argv[1], int(argv[2]))
        out = stdout or sys.stdout
        out.write(json.dumps(answer, sort_keys=True) + "\n")
        out.flush()
        return 0 if answer["ok"] else 1
    sys.stderr.write(USAGE + "\n")
    return 2
