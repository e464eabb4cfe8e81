# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified backups of one database for slipway.django.db_backup: take, prune, restore; and
list them for slipway.django.db_backup_info.

A backup is two entries in the backup directory, both named after its id
(``20261123T101500Z-1a2b3c4d``): the dump (``ID.pgdump/``, pg_dump's directory format, or
``ID.sql.gz``, mysqldump's output compressed here) and ``ID.json``, its metadata, written last.
Both are first written under a hidden ``.NAME.partial`` name and renamed into place once the
dump is verified, so a half-written dump never looks like a backup. The metadata records the
size and SHA-256 of every file of the dump; listing compares sizes, restoring compares hashes.

execute() is the whole module behind the argument spec; it plans first and, unless in check
mode, applies. The module and benchmarks/backup.py both call it. list_backups() is the whole of
db_backup_info, and of db_backup's deprecated action=list.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ansible_collections.slipway.django.plugins.module_utils.database import (
    DEFAULT_PORTS,
    ConnectionFailure,
    connect,
    describe_target,
    driver_error_types,
)

# Dumps and restores stream one process into another (dump | compress | file, file | restore)
# and are timed as they run, which AnsibleModule.run_command cannot do: subprocess it is.
# pylint: disable=ansible-bad-function

ACTIONS = ("backup", "list", "prune", "restore")
MADE_BY = "slipway.django.db_backup"
INFO_MODULE = "slipway.django.db_backup_info"
METADATA_FORMAT = 1
SUFFIXES = {"postgresql": ".pgdump", "mysql": ".sql.gz"}
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
PARTIAL_NAME = re.compile(r"^\.\d{8}T\d{6}Z-[0-9a-f]{8}\.(?:pgdump|sql\.gz|json)\.partial$")
LOCK_NAME = ".db_backup.lock"
LOCK_WAIT_SECONDS = 3600
CHUNK_BYTES = 1 << 20
GZIP_LEVEL = 6
PG_LIB_GLOB = "/usr/lib/postgresql/*/bin/pg_dump"
PG_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
MYSQL_TRAILER = b"-- Dump completed"
MYSQL_TABLE_MARK = b"\nCREATE TABLE `"
MYSQL_UNKNOWN_DATABASE = 1049
# MySQL answers "access denied" for a database the user may not see, whether it exists or not.
MYSQL_DATABASE_ACCESS_DENIED = 1044


class BackupError(Exception):
    """What went wrong, what was found and what to do. details are result keys for the module
    (changed, safety_backup) when something was done before the failure."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


# Sizes, ids and files ------------------------------------------------------------------------

def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def new_backup_id(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def timestamp(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S.%fZ}"


def existing_parent(path: str) -> str:
    """path, or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def free_bytes(path: str) -> int:
    stat = os.statvfs(existing_parent(path))
    return stat.f_bavail * stat.f_frsize


def space_needed(db_size: int, min_free_bytes: int, free_factor: float) -> int:
    return max(min_free_bytes, math.ceil(free_factor * db_size))


def check_free_space(dest_dir: str, db: str, db_size: int, min_free_bytes: int,
                     free_factor: float) -> None:
    free = free_bytes(dest_dir)
    needed = space_needed(db_size, min_free_bytes, free_factor)
    if free < needed:
        raise BackupError(
            f"Not enough free space to back up {db!r} into {dest_dir}:"
            f" {format_bytes(free)} ({free} bytes) free on the filesystem of"
            f" {existing_parent(dest_dir)}, {format_bytes(needed)} ({needed} bytes) needed (the"
            f" larger of min_free_bytes {format_bytes(min_free_bytes)} and free_factor"
            f" {free_factor:g} x the database's {format_bytes(db_size)}). Nothing was written."
            f" Free some space or point dest_dir at a larger filesystem.")


def parallel_jobs(db_size: int, jobs: int, threshold: int) -> int:
    return jobs if db_size > threshold else 1


def secure(path: str) -> None:
    """Directories 0700, files 0600, owned by root when we are root."""
    as_root = os.geteuid() == 0
    paths = [path]
    if os.path.isdir(path):
        for parent, dirs, files in os.walk(path):
            paths += [os.path.join(parent, name) for name in dirs + files]
    for item in paths:
        os.chmod(item, 0o700 if os.path.isdir(item) else 0o600)
        if as_root:
            os.lchown(item, 0, 0)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def write_json(path: str, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def scan_file(path: str, check_gzip: bool) -> dict:
    """Size and SHA-256 of a file; with check_gzip, also whether it is one complete gzip stream
    (``gzip_problem``, None when it is) and the last bytes of its content (``tail``)."""
    digest = hashlib.sha256()
    size = 0
    inflater = zlib.decompressobj(31) if check_gzip else None
    tail, problem = b"", None
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
            while inflater is not None and chunk and problem is None:
                try:
                    tail = (tail + inflater.decompress(chunk))[-4096:]
                except zlib.error as error:
                    problem = f"{path} is not valid gzip ({error})"
                    break
                # Another gzip member may follow the end of one.
                chunk = inflater.unused_data if inflater.eof else b""
                if chunk:
                    inflater = zlib.decompressobj(31)
    if inflater is not None and problem is None and not inflater.eof:
        problem = f"{path} ends before its gzip stream does (truncated)"
    return dict(size=size, sha256=digest.hexdigest(), tail=tail, gzip_problem=problem)


def scan_files(paths: dict, check_gzip: bool, jobs: int) -> dict:
    """scan_file() of each {name: path}, on up to jobs threads (zlib and hashlib let go of
    the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {name: pool.submit(scan_file, path, check_gzip and path.endswith(".gz"))
                   for name, path in paths.items()}
        return {name: future.result() for name, future in futures.items()}


def dump_files(path: str, name: str) -> dict:
    """{name relative to dest_dir: path} of the files of a dump at path (a file or a flat
    directory) whose final name is name."""
    if os.path.isdir(path):
        return {f"{name}/{entry}": os.path.join(path, entry) for entry in sorted(os.listdir(path))}
    return {name: path}


def run_tool(argv: list, env: dict, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True,
                          check=False)


def error_tail(text: str, lines: int = 8) -> str:
    kept = [line for line in (text or "").strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no error output"


def tool_version(path: str) -> str:
    result = run_tool([path, "--version"], dict(os.environ))
    return (result.stdout or result.stderr).strip()


@contextlib.contextmanager
def stderr_file():
    """A temporary file for a long-running tool's stderr (a pipe could fill and block it)."""
    with tempfile.TemporaryFile(mode="w+") as handle:
        yield handle


def read_back(handle) -> str:
    handle.seek(0)
    return handle.read()


@contextlib.contextmanager
def locked(dest_dir: str):
    """Hold dest_dir's lock, so that concurrent runs never prune or half-see each other's work."""
    fd = os.open(os.path.join(dest_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"Another db_backup run has held {dest_dir}/{LOCK_NAME} for more than"
                        f" {LOCK_WAIT_SECONDS} s; nothing was done. Wait for it to finish."
                    ) from None
                time.sleep(1)
        yield
    finally:
        os.close(fd)


def remove_stale_partials(dest_dir: str) -> list:
    """Partial entries left by a run that was killed; only call with the lock held."""
    stale = sorted(name for name in os.listdir(dest_dir) if PARTIAL_NAME.match(name))
    for name in stale:
        remove(os.path.join(dest_dir, name))
    return stale


def prepare_dest_dir(dest_dir: str) -> list:
    """Create dest_dir (root:root 0700) when missing; warnings about an existing one."""
    if not os.path.isdir(dest_dir):
        os.makedirs(dest_dir, mode=0o700)
        secure(dest_dir)
        return []
    mode = os.stat(dest_dir).st_mode & 0o777
    if mode & 0o077:
        return [f"dest_dir {dest_dir} is accessible to other users (mode {mode:04o}); its"
                f" backups are 0700/0600, but consider chmod 0700 {dest_dir}."]
    return []


# Backups in dest_dir -------------------------------------------------------------------------

@dataclass
class Backup:
    """A backup this module made, as found in dest_dir."""

    id: str
    path: str
    metadata_path: str
    info: dict

    @property
    def created_at(self) -> str:
        return str(self.info.get("created_at", ""))

    def files(self) -> dict:
        return dict(self.info.get("files") or {})

    def summary(self, problem: str | None) -> dict:
        info = self.info
        return dict(id=self.id, path=self.path, metadata_path=self.metadata_path,
                    created_at=self.created_at, kind=info.get("kind"), engine=info.get("engine"),
                    db=info.get("db"), size=info.get("size"), db_size=info.get("db_size"),
                    duration=info.get("duration"), jobs=info.get("jobs"),
                    toc=info.get("toc"), tool_versions=info.get("tool_versions"),
                    verified=problem is None, problem=problem,
                    metadata=info.get("metadata") or {})


def load_metadata(dest_dir: str, backup_id: str) -> dict | None:
    """The metadata of backup_id when this module wrote it, else None."""
    try:
        with open(os.path.join(dest_dir, backup_id + ".json")) as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and info.get("made_by") == MADE_BY and info.get("id") == backup_id:
        return info
    return None


def read_backups(dest_dir: str, engine: str, db: str) -> list:
    """This module's backups of db in dest_dir, newest first. Other files are never looked at
    beyond their names."""
    if not os.path.isdir(dest_dir):
        return []
    backups = []
    for name in os.listdir(dest_dir):
        backup_id = name[:-len(".json")]
        if not (name.endswith(".json") and BACKUP_ID.match(backup_id)):
            continue
        info = load_metadata(dest_dir, backup_id)
        if info and info.get("engine") == engine and info.get("db") == db:
            backups.append(Backup(backup_id, os.path.join(dest_dir, backup_id + SUFFIXES[engine]),
                                  os.path.join(dest_dir, name), info))
    backups.sort(key=lambda backup: (backup.created_at, backup.id), reverse=True)
    return backups


def quick_problem(backup: Backup) -> str | None:
    """Why a backup is not usable, from its files' presence and sizes alone; None if it is."""
    if not backup.info.get("verified"):
        return "it was never verified"
    if not os.path.exists(backup.path):
        return f"{backup.path} is missing"
    expected = backup.files()
    if not expected:
        return "its metadata lists no files"
    dest_dir = os.path.dirname(backup.path)
    found = dump_files(backup.path, os.path.basename(backup.path))
    if sorted(found) != sorted(expected):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        return (f"its files differ from those recorded (missing: {missing[:5]},"
                f" unexpected: {extra[:5]})")
    for name, recorded in expected.items():
        size = os.path.getsize(os.path.join(dest_dir, name))
        if size != recorded.get("size"):
            return f"{name} has {size} bytes, {recorded.get('size')} were recorded (truncated?)"
    return None


def content_problem(backup: Backup, jobs: int) -> str | None:
    """quick_problem(), then every file's SHA-256 and gzip stream; None if all are intact."""
    problem = quick_problem(backup)
    if problem:
        return problem
    dest_dir = os.path.dirname(backup.path)
    expected = backup.files()
    scans = scan_files({name: os.path.join(dest_dir, name) for name in expected}, True, jobs)
    for name, scan in sorted(scans.items()):
        if scan["sha256"] != expected[name].get("sha256"):
            return f"{name} does not match its recorded SHA-256 (corrupted)"
        if scan["gzip_problem"]:
            return scan["gzip_problem"]
    if backup.info.get("engine") == "mysql":
        return mysql_trailer_problem(next(iter(scans.values()))["tail"])
    return None


def prune_plan(backups: list, retention: int) -> list:
    """The backups (newest first) beyond the retention newest; none when retention is 0."""
    return backups[retention:] if retention > 0 else []


def prune(backups: list) -> list:
    """Remove backups (dump first, then the metadata that makes it a backup); their ids."""
    for backup in backups:
        remove(backup.path)
        remove(backup.metadata_path)
    if backups:
        fsync_dir(os.path.dirname(backups[0].path))
    return [backup.id for backup in backups]


def find_backup(dest_dir: str, engine: str, db: str, backup_id: str) -> Backup:
    backups = read_backups(dest_dir, engine, db)
    for backup in backups:
        if backup.id == backup_id:
            return backup
    info = load_metadata(dest_dir, backup_id) if BACKUP_ID.match(backup_id) else None
    if info:
        raise BackupError(f"Backup {backup_id} in {dest_dir} is a {info.get('engine')} backup of"
                          f" {info.get('db')!r}, not a {engine} backup of {db!r}; nothing was"
                          f" changed.")
    known = ", ".join(backup.id for backup in backups[:5]) or "none"
    raise BackupError(f"Unknown backup id {backup_id!r}: {dest_dir} holds no {engine} backup of"
                      f" {db!r} with that id (newest: {known}). Nothing was changed; use"
                      f" {INFO_MODULE} to list them.")


# Engines -------------------------------------------------------------------------------------

class Engine:
    """One database on one server: its size, its dump tools, dump, verify and restore."""

    name = ""
    unknown_hint = ""

    def __init__(self, params: dict):
        self.params = params
        self.db = params["db"]
        self.tools: dict = {}
        self.tool_versions: dict = {}
        self.server_version = ""
        self.connection = None

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.name]

    def open(self) -> None:
        """Connect to db; BackupError for an unknown database or a refused login."""
        try:
            self.connection = connect(dict(self.params, login_db=self.db))
        except ConnectionFailure as error:
            if self.is_unknown_database(error.__cause__):
                target = describe_target(dict(self.params, login_db=self.db))
                raise BackupError(f"Database {self.db!r} does not exist{self.unknown_hint}"
                                  f" (connecting to {target}). Check db; nothing was done."
                                  ) from None
            raise BackupError(str(error)) from None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def query(self, sql: str, args: tuple | None = None) -> list:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, args)
                rows = list(cursor.fetchall())
            self.connection.commit()
            return rows
        except driver_error_types(self.name) as error:
            raise BackupError(f"The database refused a query: {str(error).strip()}") from None

    def is_unknown_database(self, error) -> bool:
        raise NotImplementedError

    def database_size(self) -> int:
        raise NotImplementedError

    def find_tools(self) -> None:
        raise NotImplementedError

    def environment(self) -> dict:
        raise NotImplementedError

    def dump(self, partial: str, name: str, jobs: int) -> dict:
        """Dump into partial (final name: name) and verify; {files, toc}."""
        raise NotImplementedError

    def verify(self, backup: Backup, jobs: int) -> str | None:
        """Why a published backup cannot be restored (read in full), or None."""
        return content_problem(backup, jobs)

    def check_restorable(self) -> None:
        """Refuse, before anything changes, a restore that could not replace everything."""

    def restore(self, backup: Backup, jobs: int) -> str:
        """Replace the database's content by the backup's; how it was done, for the message."""
        raise NotImplementedError


class PostgresEngine(Engine):
    name = "postgresql"

    def is_unknown_database(self, error) -> bool:
        return f'database "{self.db}" does not exist' in str(error)

    def database_size(self) -> int:
        return int(self.query("SELECT pg_database_size(current_database())")[0][0])

    def table_count(self) -> int:
        return int(self.query(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
            " AND d.objid = c.oid AND d.deptype = 'e')")[0][0])

    def find_tools(self) -> None:
        server_number = self.connection.server_version
        self.server_version = f"{server_number // 10000}.{server_number % 10000}"
        server_major = server_number // 10000
        candidates, chosen = [], None
        # PATH's pg_dump (on Debian a wrapper script) only when no packaged one fits.
        for paths in (sorted(glob.glob(PG_LIB_GLOB)), [shutil.which("pg_dump")]):
            for path in paths:
                if path and os.access(path, os.X_OK):
                    version = tool_version(path)
                    match = PG_VERSION.search(version)
                    if match:
                        candidates.append((path, int(match.group(1)), version))
            chosen = choose_pg_dump(candidates, server_major)
            if chosen:
                break
        if chosen is None:
            found = ", ".join(f"{candidate[1]} at {candidate[0]}"
                              for candidate in candidates) or "none"
            raise BackupError(
                f"No pg_dump of PostgreSQL {server_major} or newer was found (found: {found};"
                f" looked in /usr/lib/postgresql/N/bin and PATH); an older"
                f" pg_dump cannot dump a PostgreSQL {server_major} server. Install"
                f" postgresql-client-{server_major} (Debian: apt-get install"
                f" postgresql-client-{server_major}).")
        path, version = chosen[0], chosen[2]
        bin_dir = os.path.dirname(path)
        self.tools = dict(pg_dump=path)
        for tool in ("pg_restore", "psql"):
            tool_path = os.path.join(bin_dir, tool)
            if not os.access(tool_path, os.X_OK):
                raise BackupError(f"{tool} is missing next to {path}; install the complete"
                                  f" PostgreSQL client package of that version.")
            self.tools[tool] = tool_path
        self.tool_versions = dict(pg_dump=version,
                                  pg_restore=tool_version(self.tools["pg_restore"]),
                                  server=self.server_version)

    def connection_args(self) -> list:
        params = self.params
        args = []
        host = params.get("login_unix_socket") or params.get("login_host")
        if host:
            args.append(f"--host={host}")
        args.append(f"--port={params.get('login_port') or DEFAULT_PORTS['postgresql']}")
        if params.get("login_user"):
            args.append(f"--username={params['login_user']}")
        return [*args, "--no-password", f"--dbname={self.db}"]

    def environment(self) -> dict:
        env = dict(os.environ, PGCONNECT_TIMEOUT=str(self.params["connect_timeout"]),
                   PGAPPNAME=MADE_BY)
        if self.params.get("login_password") is not None:
            env["PGPASSWORD"] = self.params["login_password"]
        return env

    def list_toc(self, path: str) -> dict:
        """pg_restore --list of a dump: entry count and the dump ids of TABLE DATA entries."""
        result = run_tool([self.tools["pg_restore"], "--list", path], self.environment())
        if result.returncode != 0:
            raise BackupError(f"pg_restore --list cannot read {path}: {error_tail(result.stderr)}")
        entries, table_data = 0, []
        for line in result.stdout.splitlines():
            if not line.strip() or line.startswith(";"):
                continue
            entries += 1
            if " TABLE DATA " in line:
                table_data.append(line.split(";", 1)[0].strip())
        return dict(entries=entries, table_data=table_data)

    def toc_problem(self, toc: dict, files: dict, name: str) -> str | None:
        names = {key.split("/", 1)[1] for key in files if "/" in key}
        missing = [dump_id for dump_id in toc["table_data"]
                   if not any(entry.startswith(f"{dump_id}.dat") for entry in names)]
        if missing:
            return f"{name} lists table data without its file (dump ids {missing[:5]})"
        return None

    def dump(self, partial: str, name: str, jobs: int) -> dict:
        tables = self.table_count()
        argv = [self.tools["pg_dump"], "--format=directory", f"--file={partial}",
                f"--jobs={jobs}", *self.connection_args()]
        with stderr_file() as errors:
            returncode = subprocess.run(argv, env=self.environment(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=errors,
                                        check=False).returncode
            if returncode != 0:
                raise BackupError(f"pg_dump of {self.db!r} failed (exit {returncode}):"
                                  f" {error_tail(read_back(errors))}")
        toc = self.list_toc(partial)
        if tables and not toc["table_data"]:
            raise BackupError(f"The dump of {self.db!r} lists no table data although the"
                              f" database has {tables} tables; it was removed.")
        scans = scan_files(dump_files(partial, name), True, jobs)
        for scan in scans.values():
            if scan["gzip_problem"]:
                raise BackupError(f"The dump of {self.db!r} is damaged: {scan['gzip_problem']}")
        files = {key: {"size": scan["size"], "sha256": scan["sha256"]}
                 for key, scan in scans.items()}
        problem = self.toc_problem(toc, files, name)
        if problem:
            raise BackupError(f"The dump of {self.db!r} is incomplete: {problem}")
        return dict(files=files, toc=dict(entries=toc["entries"],
                                          table_data=len(toc["table_data"]), tables=tables))

    def verify(self, backup: Backup, jobs: int) -> str | None:
        problem = content_problem(backup, jobs)
        if problem:
            return problem
        try:
            toc = self.list_toc(backup.path)
        except BackupError as error:
            return str(error)
        return self.toc_problem(toc, backup.files(), os.path.basename(backup.path))

    def check_restorable(self) -> None:
        superuser = self.query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if superuser and superuser[0][0]:
            raise BackupError(
                "Restore replaces the objects owned by the login user (DROP OWNED BY"
                " CURRENT_USER), which is refused for a superuser; log in as the app's own user"
                " (the owner of its tables). Nothing was changed.")
        foreign = self.query(
            "SELECT n.nspname || '.' || c.relname || ' (owner ' || r.rolname || ')'"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_%' AND r.rolname <> current_user"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
            " AND d.objid = c.oid AND d.deptype = 'e')"
            " ORDER BY 1 LIMIT 6")
        if foreign:
            names = ", ".join(row[0] for row in foreign[:5])
            raise BackupError(
                f"Restore replaces only what the login user owns, but {self.db!r} holds"
                f" relations of other roles: {names}. Nothing was changed; log in as their"
                f" owner or change their owner.")

    def restore(self, backup: Backup, jobs: int) -> str:
        psql = [self.tools["psql"], "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
                *self.connection_args()]
        drop = "--command=DROP OWNED BY CURRENT_USER"
        env = self.environment()
        if jobs <= 1:
            # One transaction: the drop and the whole dump commit together or not at all.
            with stderr_file() as restore_errors, stderr_file() as psql_errors:
                reader = subprocess.Popen(
                    [self.tools["pg_restore"], "--file=-", backup.path], env=env,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=restore_errors)
                writer = subprocess.run(
                    [*psql, "--single-transaction", drop, "--file=-"], env=env,
                    stdin=reader.stdout, stdout=subprocess.DEVNULL, stderr=psql_errors,
                    check=False)
                reader.stdout.close()
                reader.wait()
                if writer.returncode != 0 or reader.returncode != 0:
                    raise BackupError(
                        f"Restoring {backup.id} failed and was rolled back, the database is"
                        f" unchanged: psql: {error_tail(read_back(psql_errors))};"
                        f" pg_restore: {error_tail(read_back(restore_errors))}")
            return "in one transaction"
        result = run_tool([*psql, "--single-transaction", drop], env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise BackupError(f"Could not drop the database's objects before restoring"
                              f" {backup.id}; nothing was changed: {error_tail(result.stderr)}")
        with stderr_file() as errors:
            returncode = subprocess.run(
                [self.tools["pg_restore"], f"--jobs={jobs}", "--exit-on-error",
                 *self.connection_args(), backup.path], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=errors, check=False).returncode
            if returncode != 0:
                raise BackupError(f"pg_restore -j {jobs} of {backup.id} failed after the"
                                  f" database's objects were dropped, so the database is"
                                  f" incomplete: {error_tail(read_back(errors))}")
        return f"with pg_restore --jobs={jobs}"


def choose_pg_dump(candidates: list, server_major: int) -> tuple | None:
    """The (path, major, version) of the oldest pg_dump not older than the server; the first
    listed wins a tie."""
    fitting = [candidate for candidate in candidates if candidate[1] >= server_major]
    return min(fitting, key=lambda candidate: candidate[1]) if fitting else None


def mysql_option_value(value: str) -> str:
    """value quoted for a MySQL/MariaDB option file."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def mysql_trailer_problem(tail: bytes) -> str | None:
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    if not last.startswith(MYSQL_TRAILER):
        return ("the dump does not end with mysqldump's '-- Dump completed' line (it was cut"
                " short)")
    return None


class MysqlEngine(Engine):
    name = "mysql"
    unknown_hint = " or login_user has no privileges on it"

    def __init__(self, params: dict):
        super().__init__(params)
        self.option_dir: str | None = None

    def is_unknown_database(self, error) -> bool:
        return bool(getattr(error, "args", None)) and error.args[0] in (
            MYSQL_UNKNOWN_DATABASE, MYSQL_DATABASE_ACCESS_DENIED)

    def database_size(self) -> int:
        return int(self.query(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"
            " WHERE table_schema = %s", (self.db,))[0][0])

    def find_tools(self) -> None:
        self.server_version = str(self.query("SELECT VERSION()")[0][0])
        dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
        client = shutil.which("mariadb") or shutil.which("mysql")
        if not dump or not client:
            missing = " and ".join(name for name, path in (("mariadb-dump/mysqldump", dump),
                                                           ("mariadb/mysql", client)) if not path)
            raise BackupError(f"{missing} not found on PATH; install the database client"
                              f" (Debian: apt-get install mariadb-client).")
        self.tools = dict(dump=dump, client=client)
        self.tool_versions = dict(dump=tool_version(dump), client=tool_version(client),
                                  server=self.server_version)

    def environment(self) -> dict:
        return dict(os.environ)

    @contextlib.contextmanager
    def options_file(self):
        """A 0600 option file holding the password (never on a command line); its arguments."""
        password = self.params.get("login_password")
        if password is None:
            yield []
            return
        directory = tempfile.mkdtemp(prefix="slipway-db_backup-")
        try:
            path = os.path.join(directory, "client.cnf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"[client]\npassword={mysql_option_value(password)}\n")
            yield [f"--defaults-extra-file={path}"]
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def connection_args(self, client: bool = False) -> list:
        """Connection options; connect_timeout only for the client (mysqldump has none)."""
        params = self.params
        if params.get("login_unix_socket"):
            args = ["--protocol=socket", f"--socket={params['login_unix_socket']}"]
        else:
            args = ["--protocol=tcp", f"--host={params.get('login_host') or 'localhost'}",
                    f"--port={params.get('login_port') or DEFAULT_PORTS['mysql']}"]
        if params.get("login_user"):
            args.append(f"--user={params['login_user']}")
        if client:
            args.append(f"--connect-timeout={params['connect_timeout']}")
        return [*args, "--default-character-set=utf8mb4"]

    def dump(self, partial: str, name: str, jobs: int) -> dict:
        digest = hashlib.sha256()
        deflater = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        size, tables, tail = 0, 0, b""
        with self.options_file() as options, stderr_file() as errors:
            argv = [self.tools["dump"], *options, *self.connection_args(),
                    "--single-transaction", "--routines", "--triggers", "--no-tablespaces",
                    self.db]
            process = subprocess.Popen(argv, env=self.environment(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=errors)
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while chunk := process.stdout.read(CHUNK_BYTES):
                        # The mark may straddle two chunks: count it in what the tail adds.
                        tables += (tail[-len(MYSQL_TABLE_MARK) + 1:] + chunk).count(
                            MYSQL_TABLE_MARK)
                        tail = (tail + chunk)[-4096:]
                        compressed = deflater.compress(chunk)
                        out.write(compressed)
                        digest.update(compressed)
                        size += len(compressed)
                    compressed = deflater.flush()
                    out.write(compressed)
                    digest.update(compressed)
                    size += len(compressed)
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                process.stdout.close()
                returncode = process.wait()
            if returncode != 0:
                raise BackupError(f"mysqldump of {self.db!r} failed (exit {returncode}):"
                                  f" {error_tail(read_back(errors))}")
        problem = mysql_trailer_problem(tail)
        if problem:
            raise BackupError(f"The dump of {self.db!r} is incomplete: {problem}.")
        if os.path.getsize(partial) != size:
            raise BackupError(f"{partial} holds {os.path.getsize(partial)} bytes after writing"
                              f" {size}.")
        return dict(files={name: dict(size=size, sha256=digest.hexdigest())},
                    toc=dict(tables=tables))

    def restore(self, backup: Backup, jobs: int) -> str:
        quoted = self.db.replace("`", "``")
        objects = self.query(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = %s", (self.db,))
        routines = self.query(
            "SELECT routine_name, routine_type FROM information_schema.routines"
            " WHERE routine_schema = %s", (self.db,))
        statements = ["SET foreign_key_checks = 0"]
        for table, kind in objects:
            keyword = {"VIEW": "VIEW", "SEQUENCE": "SEQUENCE"}.get(kind, "TABLE")
            statements.append(f"DROP {keyword} IF EXISTS `{quoted}`.`{table.replace('`', '``')}`")
        for routine, kind in routines:
            statements.append(f"DROP {kind} IF EXISTS `{quoted}`.`{routine.replace('`', '``')}`")
        try:
            with self.connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        except driver_error_types(self.name) as error:
            raise BackupError(f"Could not drop the objects of {self.db!r} before restoring"
                              f" {backup.id} (MySQL cannot do that in a transaction, so some"
                              f" may be gone): {str(error).strip()}") from None
        with self.options_file() as options, stderr_file() as errors:
            argv = [self.tools["client"], *options, *self.connection_args(client=True), "--batch",
                    f"--database={self.db}"]
            process = subprocess.Popen(argv, env=self.environment(), stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=errors)
            inflater = zlib.decompressobj(31)
            try:
                with open(backup.path, "rb") as handle:
                    while chunk := handle.read(CHUNK_BYTES):
                        process.stdin.write(inflater.decompress(chunk))
                process.stdin.close()
            except BrokenPipeError:
                pass
            returncode = process.wait()
            if returncode != 0:
                raise BackupError(f"Loading {backup.id} into {self.db!r} failed after its"
                                  f" objects were dropped, so the database is incomplete:"
                                  f" {error_tail(read_back(errors))}")
        return "with the mysql client"


ENGINES = {"postgresql": PostgresEngine, "mysql": MysqlEngine}


# The module ----------------------------------------------------------------------------------

def target_errors(params: dict) -> list:
    """Problems with db and dest_dir, the options that say which backups are meant."""
    errors = []
    if not params["db"] or params["db"].startswith("-"):
        errors.append(f"db must be a database name, got {params['db']!r}")
    if not os.path.isabs(params["dest_dir"]):
        errors.append(f"dest_dir must be an absolute path, got {params['dest_dir']!r}")
    return errors


def option_errors(params: dict) -> list:
    """Problems with the options themselves, found before connecting or touching a file."""
    errors = target_errors(params)
    if params.get("login_db") and params["login_db"] != params["db"]:
        errors.append(f"login_db ({params['login_db']}) differs from db ({params['db']}):"
                      f" db_backup connects to db itself; leave login_db unset")
    if params["action"] == "restore" and not params.get("backup"):
        errors.append(f"action=restore needs backup: the id of the backup to restore"
                      f" ({INFO_MODULE} lists them)")
    if params.get("backup") and params["action"] != "restore":
        errors.append(f"backup is only used with action=restore, not action={params['action']}")
    for option in ("retention", "min_free_bytes", "parallel_threshold_bytes"):
        if params[option] < 0:
            errors.append(f"{option} must not be negative, got {params[option]}")
    if params["free_factor"] < 0:
        errors.append(f"free_factor must not be negative, got {params['free_factor']}")
    if params["jobs"] < 1:
        errors.append(f"jobs must be at least 1, got {params['jobs']}")
    return errors


def empty_result() -> dict:
    return dict(changed=False, msg="", backup=None, backups=[], pruned=[], safety_backup=None,
                restored=None, warnings=[])


def planned_entry(engine: Engine, backup_id: str, db_size: int, jobs: int, kind: str,
                  metadata: dict) -> dict:
    dest_dir = engine.params["dest_dir"]
    return dict(id=backup_id, path=os.path.join(dest_dir, backup_id + engine.suffix),
                metadata_path=os.path.join(dest_dir, backup_id + ".json"), created_at=None,
                kind=kind, engine=engine.name, db=engine.db, size=None, db_size=db_size,
                duration=None, jobs=jobs, toc=None, tool_versions=engine.tool_versions,
                verified=False, problem=None, metadata=metadata)


def prepare_backup(engine: Engine) -> tuple:
    """Everything a backup checks before writing: (db_size, jobs). Runs in check mode too."""
    params = engine.params
    db_size = engine.database_size()
    check_free_space(params["dest_dir"], engine.db, db_size, params["min_free_bytes"],
                     params["free_factor"])
    return db_size, parallel_jobs(db_size, params["jobs"], params["parallel_threshold_bytes"])


def take_backup(engine: Engine, db_size: int, jobs: int, kind: str, extra: dict) -> dict:
    """Dump, verify, secure and publish one backup; its metadata. Needs dest_dir's lock."""
    params = engine.params
    dest_dir = params["dest_dir"]
    now = datetime.datetime.now(datetime.UTC)
    backup_id = new_backup_id(now)
    name = backup_id + engine.suffix
    final, partial = os.path.join(dest_dir, name), os.path.join(dest_dir, f".{name}.partial")
    metadata_final = os.path.join(dest_dir, backup_id + ".json")
    metadata_partial = os.path.join(dest_dir, f".{backup_id}.json.partial")
    started = time.monotonic()
    published = False
    try:
        dumped = engine.dump(partial, name, jobs)
        secure(partial)
        info = dict(
            made_by=MADE_BY, format=METADATA_FORMAT, id=backup_id, kind=kind,
            engine=engine.name, db=engine.db, created_at=timestamp(now),
            size=sum(entry["size"] for entry in dumped["files"].values()), db_size=db_size,
            duration=round(time.monotonic() - started, 3), jobs=jobs, verified=True,
            toc=dumped["toc"], files=dumped["files"], tool_versions=engine.tool_versions,
            metadata=params["metadata"] or {}, **extra)
        write_json(metadata_partial, info)
        os.rename(partial, final)
        published = True
        os.rename(metadata_partial, metadata_final)
        fsync_dir(dest_dir)
    except BaseException:
        for path in (partial, metadata_partial) + ((final,) if published else ()):
            remove(path)
        raise
    return Backup(backup_id, final, metadata_final, info).summary(None)


def access_error(error: OSError, dest_dir: str, doing: str) -> BackupError:
    """A BackupError for a file that could not be read or written."""
    return BackupError(f"{error.strerror or error}: {error.filename or dest_dir} ({doing})."
                       f" Run the module as root (become: true) and check dest_dir.")


def list_backups(params: dict) -> dict:
    """The backups of params' db (and engine) in its dest_dir, newest first, each with the
    cheap check of quick_problem(): {"backups": [...], "msg": "..."}. Reads files only.

    Raises BackupError for invalid options or an unreadable dest_dir."""
    errors = target_errors(params)
    if errors:
        raise BackupError("Invalid options: " + "; ".join(errors) + ".")
    try:
        backups = [backup.summary(quick_problem(backup))
                   for backup in read_backups(params["dest_dir"], params["engine"], params["db"])]
    except OSError as error:
        raise access_error(error, params["dest_dir"], "listing the backups") from None
    verified = sum(entry["verified"] for entry in backups)
    return dict(backups=backups, msg=f"{len(backups)} backups of {params['db']!r} in"
                                     f" {params['dest_dir']} ({verified} verified).")


def run_prune(params: dict, check_mode: bool) -> dict:
    result = empty_result()
    dest_dir = params["dest_dir"]
    if check_mode or not os.path.isdir(dest_dir):
        doomed = prune_plan(read_backups(dest_dir, params["engine"], params["db"]),
                            params["retention"])
        result["pruned"] = [backup.id for backup in doomed]
    else:
        with locked(dest_dir):
            remove_stale_partials(dest_dir)
            result["pruned"] = prune(prune_plan(
                read_backups(dest_dir, params["engine"], params["db"]), params["retention"]))
    result["changed"] = bool(result["pruned"])
    verb = "Would remove" if check_mode else "Removed"
    result["msg"] = (f"{verb} {len(result['pruned'])} backups of {params['db']!r} beyond the"
                     f" {params['retention']} newest." if params["retention"] else
                     "retention is 0: every backup is kept.")
    return result


def run_backup(engine: Engine, check_mode: bool) -> dict:
    params = engine.params
    dest_dir = params["dest_dir"]
    result = empty_result()
    db_size, jobs = prepare_backup(engine)
    result["changed"] = True
    if check_mode:
        existing = read_backups(dest_dir, engine.name, engine.db)
        planned = planned_entry(engine, new_backup_id(), db_size, jobs, "backup",
                                params["metadata"] or {})
        result["backup"] = planned
        retention = params["retention"]
        result["pruned"] = [backup.id for backup in existing[retention - 1:]] if retention else []
        result["msg"] = (f"Would back up {engine.db!r} ({format_bytes(db_size)}) to"
                         f" {planned['path']} with {jobs} job(s) and prune"
                         f" {len(result['pruned'])} old backups.")
        return result
    result["warnings"] = prepare_dest_dir(dest_dir)
    with locked(dest_dir):
        remove_stale_partials(dest_dir)
        result["backup"] = take_backup(engine, db_size, jobs, "backup", {})
        result["pruned"] = prune(prune_plan(read_backups(dest_dir, engine.name, engine.db),
                                            params["retention"]))
    entry = result["backup"]
    result["msg"] = (f"Backed up {engine.db!r} ({format_bytes(db_size)}) to {entry['path']}"
                     f" ({format_bytes(entry['size'])}, verified) in {entry['duration']:.1f} s;"
                     f" pruned {len(result['pruned'])} old backups.")
    return result


def run_restore(engine: Engine, check_mode: bool) -> dict:
    params = engine.params
    dest_dir = params["dest_dir"]
    result = empty_result()
    lock = contextlib.nullcontext() if check_mode or not os.path.isdir(dest_dir) \
        else locked(dest_dir)
    with lock:
        backup = find_backup(dest_dir, engine.name, engine.db, params["backup"])
        restore_jobs = parallel_jobs(int(backup.info.get("db_size") or 0), params["jobs"],
                                     params["parallel_threshold_bytes"])
        problem = engine.verify(backup, restore_jobs)
        if problem:
            raise BackupError(f"Backup {backup.id} failed verification: {problem}. It was not"
                              f" restored and nothing was changed; choose another backup"
                              f" ({INFO_MODULE} lists them).")
        engine.check_restorable()
        if params["safety_backup"]:
            db_size, jobs = prepare_backup(engine)
        result.update(changed=True, restored=backup.id)
        if check_mode:
            if params["safety_backup"]:
                result["safety_backup"] = new_backup_id()
            result["msg"] = (f"Would restore {backup.id} ({backup.created_at}) into"
                             f" {engine.db!r}" + (f" after safety backup"
                                                  f" {result['safety_backup']}"
                                                  if params["safety_backup"] else "") + ".")
            return result
        if params["safety_backup"]:
            safety = take_backup(engine, db_size, jobs, "safety", dict(restoring=backup.id))
            result["safety_backup"] = safety["id"]
        started = time.monotonic()
        try:
            how = engine.restore(backup, restore_jobs)
        except BackupError as error:
            keep = (f" The database as it was before is in safety backup"
                    f" {result['safety_backup']}; restore it with backup="
                    f"{result['safety_backup']}." if result["safety_backup"] else "")
            raise BackupError(f"{error}.{keep}", changed=True, restored=None,
                              safety_backup=result["safety_backup"]) from None
    seconds = time.monotonic() - started
    kept = (f"; the database as it was before is in safety backup {result['safety_backup']}"
            if result["safety_backup"] else "")
    result["msg"] = (f"Restored {backup.id} ({backup.created_at}) into {engine.db!r} {how} in"
                     f" {seconds:.1f} s{kept}.")
    return result


def execute(params: dict, check_mode: bool) -> dict:
    """The module: its result, or BackupError with a message for the user.

    The result also carries ``warnings`` for the module to pass on."""
    errors = option_errors(params)
    if errors:
        raise BackupError("Invalid options: " + "; ".join(errors) + ".")
    if params["action"] == "list":
        return {**empty_result(), **list_backups(params)}
    try:
        if params["action"] == "prune":
            return run_prune(params, check_mode)
        engine = ENGINES[params["engine"]](params)
        engine.open()
        try:
            engine.find_tools()
            if params["action"] == "backup":
                return run_backup(engine, check_mode)
            return run_restore(engine, check_mode)
        finally:
            engine.close()
    except OSError as error:
        raise access_error(error, params["dest_dir"], f"action={params['action']}") from None
