#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup_info
short_description: List the backups of a PostgreSQL or MySQL database taken by db_backup
description:
  - Lists the backups of the database O(db) that M(slipway.django.db_backup) took into
    O(dest_dir) on the managed host, newest first, each with its metadata.
  - Each backup is C(verified) when it passed verification when it was taken and its files
    are all present with their recorded sizes (a cheap check; restoring a backup with
    M(slipway.django.db_backup) checks every file's SHA-256 too). When it is not,
    C(problem) says why, for instance a missing or truncated file.
  - Only backups M(slipway.django.db_backup) made, with their metadata, of O(db) on O(engine)
    are listed; other files in O(dest_dir) are ignored. A missing O(dest_dir) gives no
    backups.
  - The module reads files only - it does not connect to the database and needs neither the
    connection options nor a database driver.
  - Replaces O(slipway.django.db_backup#module:action=list), which is deprecated.
version_added: "0.2.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode returns the same as a normal run.
  diff_mode:
    support: N/A
    details: The module changes nothing.
  platform:
    platforms: posix
options:
  engine:
    description:
      - The database engine the backups were taken from. V(mysql) covers MySQL and MariaDB.
    type: str
    required: true
    choices: [postgresql, mysql]
  db:
    description:
      - The database whose backups to list.
    type: str
    required: true
  dest_dir:
    description:
      - The directory that holds the backups (an absolute path) - the
        O(slipway.django.db_backup#module:dest_dir) they were taken into.
    type: path
    required: true
notes:
  - M(slipway.django.db_backup) makes O(dest_dir) readable by root only; run this module as
    root (C(become=true)) on the host that holds the backups.
seealso:
  - module: slipway.django.db_backup
    description: Takes, verifies, prunes and restores the backups.
"""

EXAMPLES = r"""
- name: List the backups, newest first
  slipway.django.db_backup_info:
    engine: postgresql
    db: shop
    dest_dir: /var/backups/shop
  become: true
  register: shop_backups

- name: Restore the newest verified backup taken before release 3f2a9c1 was left
  slipway.django.db_backup:
    engine: postgresql
    db: shop
    login_host: 127.0.0.1
    login_user: shop
    login_password: "{{ app_db_password }}"
    action: restore
    backup: >-
      {{ shop_backups.backups | selectattr('verified')
         | selectattr('metadata.from_release', 'defined')
         | selectattr('metadata.from_release', 'equalto', '3f2a9c1')
         | map(attribute='id') | first }}
    dest_dir: /var/backups/shop
  become: true
"""

RETURN = r"""
backups:
  description: The backups of O(db) in O(dest_dir), newest first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261123T101500Z-1a2b3c4d
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
      description:
        - V(backup), or V(safety) for the safety backup taken before a restore by
          M(slipway.django.db_backup).
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
      description:
        - Counts from the dump - PostgreSQL C(entries), C(table_data) and the database's
          C(tables); MySQL C(tables).
      type: dict
    tool_versions:
      description: The dump tools' and the server's versions.
      type: dict
    verified:
      description:
        - Whether the backup passed verification when it was taken and its files are all
          present with their recorded sizes.
      type: bool
    problem:
      description: Why the backup is not verified, or null.
      type: str
    metadata:
      description:
        - The O(slipway.django.db_backup#module:metadata) given when the backup was taken.
      type: dict
msg:
  description: How many backups were found, and how many of them are verified.
  returned: always
  type: str
  sample: "3 backups of 'shop' in /var/backups/shop (3 verified)."
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.slipway.django.plugins.module_utils.database import (
    connection_argument_spec,
)
from ansible_collections.slipway.django.plugins.module_utils.db_backup import (
    BackupError,
    list_backups,
)


def argument_spec() -> dict:
    return dict(
        engine=connection_argument_spec()["engine"],
        db=dict(type="str", required=True),
        dest_dir=dict(type="path", required=True),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = list_backups(module.params)
    except BackupError as error:
        module.fail_json(msg=str(error), **{"changed": False, **error.details})
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
