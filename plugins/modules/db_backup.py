#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Take, verify, prune and restore backups of a PostgreSQL or MySQL database
description:
  - Takes a backup of the database O(db) into O(dest_dir) on the managed host (the database
    host), verifies it, and keeps the O(retention) newest; prunes and restores them.
    M(slipway.django.db_backup_info) lists them.
  - PostgreSQL is dumped with C(pg_dump --format=directory) (compressed, one file per table),
    with O(jobs) parallel jobs when the database is larger than O(parallel_threshold_bytes). The
    module picks the oldest installed C(pg_dump) whose major version is not older than the
    server's (C(/usr/lib/postgresql/N/bin), then C(PATH)) and fails, naming the package to
    install, when there is none.
  - MySQL and MariaDB are dumped with C(mysqldump --single-transaction --routines --triggers)
    (C(mariadb-dump) when present), compressed by the module into one gzip file.
  - Before anything is written, the free space on O(dest_dir)'s filesystem must be at least
    the larger of O(min_free_bytes) and O(free_factor) times the database's size; this check
    also runs in check mode. When it fails, nothing is written and the message says how much
    is free and how much is needed.
  - A backup is written under a hidden C(.NAME.partial) name and renamed into place only once
    verified, so a half-written dump never looks like a backup; on any failure the partial
    files are removed (and a run that was killed has its leftovers removed by the next one).
    Each backup is C(ID.pgdump/) or C(ID.sql.gz) plus C(ID.json), its metadata (engine,
    database, time, sizes, duration, table counts, tool versions, the size and SHA-256 of
    every file, and O(metadata)). Backup ids look like C(20261123T101500Z-1a2b3c4d). Every
    file is owned by root with mode 0600, every directory 0700.
  - Verification. PostgreSQL - C(pg_restore --list) reads the dump, every table's data is
    listed and has its file, and every compressed file is a complete gzip stream. MySQL -
    C(mysqldump) succeeded and the dump ends with its C(-- Dump completed) line. A backup
    that fails verification fails the task and is removed.
  - O(action=restore) verifies the chosen backup fully again (SHA-256 of every file, gzip
    streams, table of contents or trailer) before changing anything.
  - O(action=restore) then takes (and verifies) a safety backup of the database as it is,
    unless O(safety_backup=false), and replaces the database's content by the backup's, so
    that objects created after the backup are gone. PostgreSQL - C(DROP OWNED BY
    CURRENT_USER) followed by the dump, in one transaction (the database is unchanged if
    anything fails) unless the backed-up database is larger than O(parallel_threshold_bytes)
    and O(jobs) is above 1; then the drop is followed by C(pg_restore --jobs). MySQL - every
    table, view, sequence, procedure and function of the database is dropped, then the dump
    is loaded with the C(mysql) client (MySQL cannot do this in a transaction).
  - Runs under a lock file (C(.db_backup.lock) in O(dest_dir)), so concurrent runs on one
    directory wait for each other.
version_added: "0.1.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - slipway.django.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Check mode connects, measures the database, checks the free space and the
      tools, verifies the backup to restore, and returns the planned backup id and path and
      the backups that would be pruned, without writing anything (not even O(dest_dir)).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  db:
    description:
      - The database to back up or restore, and the one the module connects to.
      - O(login_db), when given, must be the same.
    type: str
    required: true
  action:
    description:
      - V(backup) takes a backup, then prunes to O(retention).
      - V(list) lists the backups of O(db), as M(slipway.django.db_backup_info) does. It is
        deprecated and will be removed in version 0.3.0 - use
        M(slipway.django.db_backup_info) instead.
      - V(prune) removes the backups of O(db) beyond the O(retention) newest.
      - V(restore) restores the backup O(backup).
    type: str
    choices: [backup, list, prune, restore]
    default: backup
  dest_dir:
    description:
      - The directory that holds the backups (an absolute path), created root:root 0700 when
        missing. Use one per application.
    type: path
    required: true
  retention:
    description:
      - How many backups of O(db) to keep, newest first, after a backup and on
        O(action=prune). V(0) keeps them all.
      - Only backups this module made (with their metadata) are ever removed; other files in
        O(dest_dir) are left alone. O(action=restore) never prunes.
    type: int
    default: 10
  min_free_bytes:
    description: Free bytes needed on O(dest_dir)'s filesystem before a backup, at least.
    type: int
    default: 2147483648
  free_factor:
    description: Free space needed before a backup, as a multiple of the database's size (as
      the server reports it, indexes included).
    type: float
    default: 2.0
  jobs:
    description:
      - Parallel jobs of C(pg_dump) and C(pg_restore) for a database larger than
        O(parallel_threshold_bytes); smaller ones use one. C(pg_dump) opens one connection
        per job plus one.
      - Not used for MySQL (C(mysqldump) has a single stream).
    type: int
    default: 2
  parallel_threshold_bytes:
    description: Databases (for a restore, the backed-up database) larger than this are
      dumped and restored with O(jobs) jobs.
    type: int
    default: 104857600
  metadata:
    description:
      - Free-form values stored with the backup and returned by
        M(slipway.django.db_backup_info) (for example the application, the releases and the
        run id).
    type: dict
    default: {}
  backup:
    description:
      - The id of the backup to restore (as returned by O(action=backup) or
        M(slipway.django.db_backup_info)).
      - Required with O(action=restore), not used otherwise.
    type: str
  safety_backup:
    description:
      - With O(action=restore), first take and verify a backup of the database as it is, so
        that nothing is ever lost. Its id is returned as RV(safety_backup).
    type: bool
    default: true
notes:
  - Run it as root (C(become=true)) on the database host; the database is reached with the
    given credentials (for example the app's own user over 127.0.0.1). The password reaches
    C(pg_dump), C(pg_restore) and C(psql) through C(PGPASSWORD) in their environment and the
    MySQL tools through a 0600 option file that is removed afterwards, never on a command
    line.
  - A PostgreSQL restore drops what the login user owns in O(db) (C(DROP OWNED BY
    CURRENT_USER)), which also revokes privileges granted to that user on other roles'
    objects. It is refused for a superuser login and when O(db) holds relations of other
    roles. Stop the application first; the drop waits for its locks.
  - A MySQL restore leaves events alone (they are not dumped).
  - The connection options are those of the other slipway.django database modules; the
    module connects to O(db).
seealso:
  - name: pg_dump
    description: The directory format and parallel dumps.
    link: https://www.postgresql.org/docs/15/app-pgdump.html
  - name: mysqldump
    description: MariaDB's dump tool.
    link: https://mariadb.com/kb/en/mariadb-dump/
  - module: slipway.django.db_backup_info
    description: Lists the backups of a database, newest first, with their metadata.
"""

EXAMPLES = r"""
- name: Back up the database before migrating
  slipway.django.db_backup:
    engine: postgresql
    db: shop
    login_host: 127.0.0.1
    login_user: shop
    login_password: "{{ app_db_password }}"
    dest_dir: /var/backups/shop
    retention: 10
    metadata:
      app: shop
      from_release: "{{ previous_release }}"
      to_release: "{{ release_id }}"
  become: true
  register: backup

- name: Restore the backup taken before the failed release (a safety backup is taken first)
  slipway.django.db_backup:
    engine: mysql
    db: shop
    login_host: 127.0.0.1
    login_user: shop
    login_password: "{{ app_db_password }}"
    action: restore
    backup: "{{ backup.backup.id }}"
    dest_dir: /var/backups/shop
  become: true

- name: Keep the three newest backups
  slipway.django.db_backup:
    engine: mysql
    db: shop
    action: prune
    retention: 3
    dest_dir: /var/backups/shop
  become: true
"""

RETURN = r"""
backup:
  description:
    - The backup taken by O(action=backup); in check mode, the one planned (its C(size),
      C(duration) and C(created_at) are null and C(verified) is false). Null for other
      actions.
  returned: always
  type: dict
  sample:
    id: 20261123T101500Z-1a2b3c4d
    path: /var/backups/shop/20261123T101500Z-1a2b3c4d.pgdump
    metadata_path: /var/backups/shop/20261123T101500Z-1a2b3c4d.json
    created_at: "2026-11-23T10:15:00.123456Z"
    kind: backup
    engine: postgresql
    db: shop
    size: 48213377
    db_size: 209715200
    duration: 6.214
    jobs: 2
    toc: {entries: 84, table_data: 21, tables: 21}
    tool_versions: {pg_dump: "pg_dump (PostgreSQL) 15.14", pg_restore: "pg_restore
      (PostgreSQL) 15.14", server: "15.14"}
    verified: true
    problem: null
    metadata: {app: shop, from_release: 3f2a9c1, to_release: 8d0e4b7}
  contains:
    id:
      description: The backup's id.
      type: str
    path:
      description: The dump (a directory for PostgreSQL, a gzip file for MySQL).
      type: str
    metadata_path:
      description: The backup's metadata file.
      type: str
    created_at:
      description: When the backup was started, in UTC.
      type: str
    kind:
      description: V(backup), or V(safety) for a safety backup taken by O(action=restore).
      type: str
    engine:
      description: The database engine.
      type: str
    db:
      description: The database backed up.
      type: str
    size:
      description: Bytes the backup takes on disk.
      type: int
    db_size:
      description: The database's size in bytes when the backup was taken.
      type: int
    duration:
      description: Seconds spent dumping and verifying.
      type: float
    jobs:
      description: Parallel jobs used.
      type: int
    toc:
      description: Counts from the dump - PostgreSQL C(entries), C(table_data) and the
        database's C(tables); MySQL C(tables).
      type: dict
    tool_versions:
      description: The dump tools' and the server's versions.
      type: dict
    verified:
      description: Whether the backup passed verification (for O(action=list), whether all
        its files are present with their recorded sizes).
      type: bool
    problem:
      description: Why the backup is not verified, or null.
      type: str
    metadata:
      description: The O(metadata) given when the backup was taken.
      type: dict
backups:
  description: With O(action=list) (deprecated, see M(slipway.django.db_backup_info)), the
    backups of O(db) in O(dest_dir), newest first, each shaped like RV(backup). Empty for
    other actions.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261123T101500Z-1a2b3c4d
      path: /var/backups/shop/20261123T101500Z-1a2b3c4d.pgdump
      created_at: "2026-11-23T10:15:00.123456Z"
      kind: backup
      verified: true
      metadata: {app: shop, from_release: 3f2a9c1, to_release: 8d0e4b7}
pruned:
  description: Ids of the backups removed (in check mode, that would be removed), newest
    first.
  returned: always
  type: list
  elements: str
  sample: [20261101T090000Z-0f1e2d3c]
safety_backup:
  description: With O(action=restore), the id of the safety backup taken first (in check
    mode, planned); null otherwise.
  returned: always
  type: str
  sample: 20261123T113000Z-9a8b7c6d
restored:
  description: With O(action=restore), the id of the backup restored (or that would be).
  returned: always
  type: str
  sample: 20261123T101500Z-1a2b3c4d
msg:
  description: What was found and done, in one sentence.
  returned: always
  type: str
  sample: "Backed up 'shop' (200.0 MiB) to /var/backups/shop/20261123T101500Z-1a2b3c4d.pgdump
    (46.0 MiB, verified) in 6.2 s; pruned 1 old backups."
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.slipway.django.plugins.module_utils.database import (
    connection_argument_spec,
    missing_driver,
)
from ansible_collections.slipway.django.plugins.module_utils.db_backup import (
    ACTIONS,
    INFO_MODULE,
    BackupError,
    execute,
)

LIST_DEPRECATION = (f"action=list of slipway.django.db_backup is deprecated: list the backups"
                    f" with {INFO_MODULE}, which returns the same backups and needs only engine,"
                    f" db and dest_dir.")


def argument_spec() -> dict:
    spec = connection_argument_spec()
    spec.update(
        db=dict(type="str", required=True),
        action=dict(type="str", choices=list(ACTIONS), default="backup"),
        dest_dir=dict(type="path", required=True),
        retention=dict(type="int", default=10),
        min_free_bytes=dict(type="int", default=2147483648),
        free_factor=dict(type="float", default=2.0),
        jobs=dict(type="int", default=2),
        parallel_threshold_bytes=dict(type="int", default=104857600),
        metadata=dict(type="dict", default={}),
        backup=dict(type="str"),
        safety_backup=dict(type="bool", default=True),
    )
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["action"] == "list":
        module.deprecate(LIST_DEPRECATION, version="0.3.0", collection_name="slipway.django")
    if params["action"] in ("backup", "restore"):
        missing = missing_driver(params["engine"])
        if missing:
            module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    try:
        result = execute(params, module.check_mode)
    except BackupError as error:
        module.fail_json(msg=str(error), **{"changed": False, **error.details})
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
