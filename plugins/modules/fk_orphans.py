#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fk_orphans
short_description: Find and clean foreign-key orphans on PostgreSQL and MySQL/MariaDB
description:
  - Finds rows whose foreign-key column points at a parent row that does not exist (an
    I(orphan)), for the relations given in O(relations) or, with O(discover=true), for every
    foreign key declared in the database (rows loaded while checks were disabled).
  - Reports them (the default), or deletes them, sets their reference to NULL, or archives
    them into a table before deleting them; then optionally adds the missing foreign key.
  - Everything is checked before anything changes - unknown tables or columns, type mismatches,
    tables without a single-column primary key, and the O(max_fraction) guard - so bad input
    fails with no change.
  - Orphans are cleaned in batches of O(batch_size) rows walked in primary-key order; each
    batch is its own short transaction and re-checks every row's parent, so a row whose parent
    appears meanwhile is kept, and concurrent inserts and updates keep flowing. On MySQL the
    session runs at READ COMMITTED so that no gap lock blocks inserts.
  - After any change the module counts the orphans again and fails if any is left.
  - NULL references are never orphans.
  - Tables are looked up in the current schema (PostgreSQL) or in O(login_db) (MySQL).
version_added: "0.1.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - slipway.django.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Check mode counts and lists the orphans and returns exactly what would be deleted,
      nullified, archived or added, without changing anything.
  diff_mode:
    support: full
    details: The diff shows each relation's orphan count and foreign key before and after.
  platform:
    platforms: posix
options:
  relations:
    description:
      - The relations to check, with or without a declared foreign key.
      - Mutually exclusive with O(discover); one of the two is required.
    type: list
    elements: dict
    suboptions:
      table:
        description: The child table, which holds the reference.
        type: str
        required: true
      column:
        description: The referencing column of O(relations[].table).
        type: str
        required: true
      references_table:
        description: The parent table.
        type: str
        required: true
      references_column:
        description: The referenced column of O(relations[].references_table).
        type: str
        default: id
      archive_table:
        description:
          - Where O(action=archive) copies the orphans. Created when missing, with the child's
            columns plus C(archived_at); an existing table must have those columns.
          - Defaults to C(<table>_orphans).
        type: str
      constraint_name:
        description:
          - Name of the foreign key O(add_constraint=true) adds.
          - Defaults to C(<table>_<column>_fk_<references_table>_<references_column>),
            shortened with a hash suffix when longer than the engine allows.
        type: str
      on_delete:
        description: The C(ON DELETE) rule of the foreign key O(add_constraint=true) adds.
        type: str
        choices: [no_action, restrict, cascade, set_null]
        default: no_action
  discover:
    description:
      - Check every foreign key declared in the database instead of O(relations).
      - Composite foreign keys and keys that reference another schema or database are skipped
        and listed in RV(skipped_foreign_keys).
    type: bool
    default: false
  action:
    description:
      - V(report) counts orphans and changes nothing (the seed script's C(--stats)).
      - V(delete) deletes them.
      - V(nullify) sets their reference to NULL; only for nullable columns.
      - V(archive) copies them, with the time they were archived, into the archive table and
        deletes them in the same transaction, so nothing is lost.
    type: str
    choices: [report, delete, nullify, archive]
    default: report
  add_constraint:
    description:
      - After cleaning, add the foreign key when the database does not declare it yet.
      - On PostgreSQL it is added C(NOT VALID), then validated with C(VALIDATE CONSTRAINT), each
        under O(lock_timeout) with O(lock_retries) retries, since even C(NOT VALID) briefly
        takes C(SHARE ROW EXCLUSIVE) on both tables. It is created C(DEFERRABLE INITIALLY
        DEFERRED), as Django creates its own. An existing C(NOT VALID) key is validated.
      - On MySQL it is added only once the rows are verified clean, in place without copying the
        table (C(ALGORITHM=INPLACE, LOCK=NONE) with foreign key checks off for that statement),
        and the rows are verified again afterwards.
      - Needs a cleaning O(action); with V(report) the module fails.
    type: bool
    default: false
  batch_size:
    description: Rows changed per batch; each batch is one short transaction.
    type: int
    default: 5000
  max_fraction:
    description:
      - Refuse, before changing anything, to change more than this fraction of any table's rows
        (summed over the relations on that table). Raise it explicitly when that is intended.
    type: float
    default: 0.1
  lock_timeout:
    description:
      - Seconds each foreign key statement may wait for its locks before it is retried
        (PostgreSQL C(lock_timeout); MySQL C(lock_wait_timeout), rounded to whole seconds).
    type: float
    default: 2.0
  lock_retries:
    description: How many times a foreign key statement is retried after a lock timeout, with
      a doubling pause.
    type: int
    default: 5
notes:
  - The orphans' primary keys of a cleaning action are held in memory while it runs (about 40
    bytes per orphan).
  - Each relation's child table needs a single-column primary key.
seealso:
  - name: PostgreSQL ALTER TABLE (NOT VALID, VALIDATE CONSTRAINT)
    description: Adding a foreign key without a long lock.
    link: https://www.postgresql.org/docs/15/sql-altertable.html
"""

EXAMPLES = r"""
- name: Count the orphans left by the old tasks cleanup
  slipway.django.fk_orphans:
    engine: mysql
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: app
    login_password: "{{ app_db_password }}"
    login_db: ai_doc
    relations:
      - {table: ai_outputs, column: task_id, references_table: tasks}
      - {table: issues, column: task_id, references_table: tasks}
      - {table: task_logs, column: task_id, references_table: tasks}
  register: orphans

- name: Archive them, then add the missing foreign keys
  slipway.django.fk_orphans:
    engine: postgresql
    login_host: db.internal
    login_user: app
    login_password: "{{ app_db_password }}"
    login_db: ai_doc
    action: archive
    add_constraint: true
    relations:
      - table: ai_outputs
        column: task_id
        references_table: tasks
        on_delete: cascade

- name: Check every declared foreign key (rows loaded with checks disabled)
  slipway.django.fk_orphans:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    login_db: ai_doc
    discover: true
    action: delete
    max_fraction: 0.25
"""

RETURN = r"""
relations:
  description: One entry per relation, in the order they were checked.
  returned: always
  type: list
  elements: dict
  contains:
    table:
      description: The child table.
      returned: always
      type: str
      sample: ai_outputs
    column:
      description: The referencing column.
      returned: always
      type: str
      sample: task_id
    references_table:
      description: The parent table.
      returned: always
      type: str
      sample: tasks
    references_column:
      description: The referenced column.
      returned: always
      type: str
      sample: id
    action:
      description: The action applied to this relation.
      returned: always
      type: str
      sample: delete
    table_rows:
      description: Rows in the child table before any change.
      returned: always
      type: int
      sample: 5000000
    orphans:
      description: Rows whose parent was missing before any change (NULLs are not counted).
      returned: always
      type: int
      sample: 1204
    sample:
      description: Primary keys of up to five orphans, lowest first.
      returned: always
      type: list
      elements: raw
      sample: [17, 18, 342]
    deleted:
      description: Rows deleted (in check mode, that would be deleted) by O(action=delete).
      returned: always
      type: int
      sample: 1204
    nullified:
      description: Rows whose reference was set to NULL (or would be) by O(action=nullify).
      returned: always
      type: int
      sample: 0
    archived:
      description: Rows moved (or that would be moved) to the archive table by O(action=archive).
      returned: always
      type: int
      sample: 0
    archive_table:
      description: The archive table of O(action=archive); null for other actions.
      returned: always
      type: str
      sample: ai_outputs_orphans
    constraint_name:
      description: The declared foreign key, or the one added; null when there is none.
      returned: always
      type: str
      sample: ai_outputs_task_id_fk_tasks_id
    constraint_added:
      description: Whether the foreign key was (in check mode, would be) added.
      returned: always
      type: bool
      sample: true
    constraint_validated:
      description: Whether an existing C(NOT VALID) foreign key was (or would be) validated.
      returned: always
      type: bool
      sample: false
    seconds:
      description: Time spent on this relation, in seconds.
      returned: always
      type: float
      sample: 3.214
total_orphans:
  description: Orphans found over all relations before any change.
  returned: always
  type: int
  sample: 1204
skipped_foreign_keys:
  description: Declared foreign keys that O(discover=true) did not check, and why.
  returned: always
  type: list
  elements: str
  sample:
    - "order_lines.order_lines_fk: composite foreign key (order_id, shop_id) is not supported;
      skipped."
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.slipway.django.plugins.module_utils.database import (
    ConnectionFailure,
    connect,
    connection_argument_spec,
    driver_error_types,
    missing_driver,
)
from ansible_collections.slipway.django.plugins.module_utils.fk_orphans import (
    ACTIONS,
    CLEANING_ACTIONS,
    ON_DELETE,
    OrphanError,
    Relation,
    apply_plan,
    discover_relations,
    fraction_violations,
    make_dialect,
    plan_relation,
    plan_result,
    resolve_relation,
)


def argument_spec() -> dict:
    spec = connection_argument_spec()
    spec.update(
        relations=dict(type="list", elements="dict", options=dict(
            table=dict(type="str", required=True),
            column=dict(type="str", required=True),
            references_table=dict(type="str", required=True),
            references_column=dict(type="str", default="id"),
            archive_table=dict(type="str"),
            constraint_name=dict(type="str"),
            on_delete=dict(type="str", choices=list(ON_DELETE), default="no_action"),
        )),
        discover=dict(type="bool", default=False),
        action=dict(type="str", choices=list(ACTIONS), default="report"),
        add_constraint=dict(type="bool", default=False),
        batch_size=dict(type="int", default=5000),
        max_fraction=dict(type="float", default=0.1),
        lock_timeout=dict(type="float", default=2.0),
        lock_retries=dict(type="int", default=5),
    )
    return spec


def option_errors(params: dict) -> list:
    """Problems with the options themselves, found before connecting."""
    errors = []
    if bool(params["relations"]) == params["discover"]:
        errors.append("give either relations (a non-empty list) or discover=true, not both")
    if not params["login_db"]:
        errors.append("login_db is required: the tables are looked up in that database")
    if params["batch_size"] < 1:
        errors.append(f"batch_size must be at least 1, got {params['batch_size']}")
    if not 0 <= params["max_fraction"] <= 1:
        errors.append(f"max_fraction must be between 0 and 1, got {params['max_fraction']}")
    if params["add_constraint"] and params["action"] not in CLEANING_ACTIONS:
        errors.append("add_constraint=true changes the schema but action=report changes nothing;"
                      " use action=delete, nullify or archive (no row is touched when there are"
                      " no orphans)")
    if params["lock_timeout"] <= 0 or params["lock_retries"] < 0:
        errors.append("lock_timeout must be positive and lock_retries not negative")
    return errors


def resolve(dialect, params: dict) -> tuple:
    """The relations to work on, validated against the catalog, and the skipped keys."""
    declared = dialect.declared_foreign_keys()
    if params["discover"]:
        relations, skipped = discover_relations(declared)
    else:
        relations, skipped = [Relation(**item) for item in params["relations"]], []
    return [resolve_relation(dialect, rel, params["action"], params["add_constraint"], declared)
            for rel in relations], skipped


def diff_of(plans: list) -> dict:
    before, after = {}, {}
    for plan in plans:
        rel = plan.relation
        existing = rel.existing_constraint.name if rel.existing_constraint else None
        before[rel.label] = dict(orphans=plan.orphans, constraint=existing)
        after[rel.label] = dict(
            orphans=0 if plan.changes_rows else plan.orphans,
            constraint=rel.constraint_name if plan.add_constraint else existing)
    return dict(before=before, after=after)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    missing = missing_driver(params["engine"])
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    errors = option_errors(params)
    if errors:
        module.fail_json(msg="Invalid options: " + "; ".join(errors) + ".")
    try:
        connection = connect(params)
    except ConnectionFailure as error:
        module.fail_json(msg=str(error))

    plans, skipped = [], []

    def results() -> dict:
        if module.check_mode:
            changed = any(plan.changes_anything for plan in plans)
        else:
            changed = any(plan.made_changes for plan in plans)
        return dict(changed=changed, skipped_foreign_keys=skipped,
                    relations=[plan_result(plan, module.check_mode) for plan in plans],
                    total_orphans=sum(plan.orphans for plan in plans))

    try:
        dialect = make_dialect(params["engine"], connection)
        relations, skipped = resolve(dialect, params)
        for rel in relations:
            plans.append(plan_relation(dialect, rel, params["action"], params["add_constraint"]))
        refused = fraction_violations(plans, params["max_fraction"])
        if refused:
            raise OrphanError("Refusing to change so large a share of a table: "
                              + "; ".join(refused) + ". Nothing was changed. Check the relations,"
                              " then raise max_fraction if this is intended.")
        if not module.check_mode:
            for plan in plans:
                apply_plan(dialect, plan, params["batch_size"], params["lock_timeout"],
                           params["lock_retries"])
    except OrphanError as error:
        module.fail_json(msg=str(error), **results())
    except driver_error_types(params["engine"]) as error:
        module.fail_json(msg=f"The database refused a statement: {str(error).strip()}. Rows of"
                             f" batches already committed stay cleaned (see relations);"
                             f" fix the cause and run the module again.", **results())
    finally:
        connection.close()

    result = results()
    if module._diff:
        result["diff"] = diff_of(plans)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
