#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

DOCUMENTATION = r'''
---
module: migrations
short_description: Diagnose, repair and safely apply Django migrations
description:
  - Loads the Django migration graph with the app's own virtualenv python (a helper script that
    talks JSON with the module), compares the recorded history in C(django_migrations) with the
    live schema, and repairs the history only where the schema proves the fix right.
  - The tables and columns a migration creates or removes are found by replaying its operations
    on the project state before it (CreateModel, AddField, many-to-many tables, RemoveField,
    DeleteModel, RenameField, RenameModel, AlterModelTable, column renames by AlterField).
  - Inconsistent history (a migration recorded while a dependency is not) is repaired by
    fake-applying the dependency when every table and column it creates exists (and what it
    removes is gone), or by fake-unapplying the dependent (and its recorded descendants) when
    none of their objects exist, so that migrate applies both in order. Anything in between is
    refused in C(safe) mode, with what exists and what does not.
  - A migration that is not recorded although every table and column it creates exists (the
    "table already exists" failure) is fake-applied when it consists only of CreateModel and
    AddField operations (plus AlterModelOptions/AlterModelManagers), initial or not. Partial
    presence is refused with the list of what is present and missing.
  - When an app's rows were lost for many migrations at once (the "table already exists" failure
    on a whole app), its unrecorded migrations are judged together, against Django's project
    state after each of them rather than each migration alone - objects created and later
    removed are expected absent. The longest prefix whose state the live schema matches (tables,
    columns, nullability, unique constraints) is recorded; the rest stays pending and is
    applied. RunPython/RunSQL steps in the recorded part are listed in RV(assumed).
  - A recorded migration none of whose objects exist (the "column does not exist" failure) is
    un-recorded with its recorded descendants so that migrate re-applies them. When later
    recorded migrations that still have their objects depend on it, and it consists only of
    CreateModel/AddField, it is re-applied in place instead (un-recorded, then applied on its
    own). A recorded migration with only some objects missing is reported and left alone.
  - Before applying, pending migrations are checked for operations that are dangerous on a live
    database (NOT NULL columns without default on tables with rows, removals and renames during
    rolling deploys, type changes, NOT NULL on columns holding NULLs, indexes built without
    CONCURRENTLY on PostgreSQL tables of 10000 rows or more, unique constraints, RunPython and
    RunSQL); each finding names the table and its live row count. Unapplying (backwards
    targets) a migration that drops a table or column holding rows is reported too.
  - Two runs against the same database never interleave; the helper holds an advisory lock
    (PostgreSQL C(pg_try_advisory_lock), MySQL/MariaDB C(GET_LOCK), an C(flock) on the SQLite
    database file) for its whole run, and fails after waiting 600 seconds for it.
  - Migrations are applied with Django's own C(migrate) command (signals included), after the
    repairs are recorded.
  - Works with PostgreSQL, MySQL/MariaDB and SQLite.
version_added: "0.1.0"
author:
  - slipway developers (@slipway)
options:
  project_path:
    description:
      - The directory holding C(manage.py), for instance C(/srv/APP/current).
    type: path
    required: true
  virtualenv:
    description:
      - The virtualenv whose C(bin/python) runs Django, for instance C(/srv/APP/releases/ID/venv).
      - When omitted, C(python3) from C(PATH) is used.
    type: path
  settings:
    description:
      - The Django settings module (C(DJANGO_SETTINGS_MODULE)), for instance C(config.settings).
      - When omitted, C(DJANGO_SETTINGS_MODULE) from O(environment), else the default that
        C(manage.py) sets, is used.
    type: str
  environment:
    description:
      - Extra environment variables for Django, such as the app's C(.env) (C(SECRET_KEY),
        C(DATABASE_URL)). Values are never logged.
    type: dict
    default: {}
  database:
    description:
      - The connection alias in C(DATABASES).
    type: str
    default: default
  action:
    description:
      - V(diagnose) reports the history, drift, plan and preflight findings and changes nothing.
      - V(repair) fixes the recorded history and applies no migration.
      - V(migrate) repairs, then applies the pending migrations.
    type: str
    choices: [diagnose, repair, migrate]
    default: migrate
  repair:
    description:
      - V(safe) acts only where the live schema proves the fix right and refuses (fails, changing
        nothing) otherwise.
      - An app whose history was lost (all or many of its rows) is judged as a chain - for
        migrations that are not recorded, the live schema is compared with the app's state after
        each of them, so that objects created and later removed are expected to be absent. Every
        migration up to the latest state the schema matches is recorded (even those containing
        RunPython/RunSQL, which are then reported in RV(assumed) as "assumed applied, cannot be
        checked"); later ones stay pending. When no state matches, the refusal names each
        table or column that differs and the migration that expects it.
      - V(force) also fake-applies missing dependencies without evidence, as the
        "forced migration" folklore does; the result carries a loud warning, and the dependencies'
        tables may really be missing.
    type: str
    choices: [safe, force]
    default: safe
  unsafe_operations:
    description:
      - What to do when a migration about to run contains operations that are dangerous on a live
        database. V(warn) reports them as warnings (those on an empty table, which harm no data,
        only in RV(unsafe)), V(fail) fails before changing anything, V(ignore) only lists them in
        RV(unsafe).
    type: str
    choices: [warn, fail, ignore]
    default: warn
  targets:
    description:
      - Migrate to these targets instead of every app's latest migration. Each is an app label
        (its latest migration), C(app.migration) (a name or unique prefix, backwards as well as
        forwards), or C(app.zero).
    type: list
    elements: str
    default: []
  target_state:
    description:
      - Migrate to a recorded state instead - the C(app.name) labels of the migrations that were
        applied, as returned in RV(state) by an earlier run (the deploy playbooks store it with
        each release). Every app with migrations goes back (or forward) to its latest migration
        in that list, or to zero when none of its migrations is in it.
      - Run it with the newer release's code, which knows the migrations to unapply.
      - Mutually exclusive with O(targets).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Computes and returns the full plan, changes nothing.
  diff_mode:
    support: full
    description: Shows the C(django_migrations) rows that would be removed and added.
  platform:
    support: full
    platforms: posix
    description: Runs on the app host, with the app's virtualenv.
requirements:
  - On the managed host, a python with Django (the app's virtualenv) and the app's database
    driver. The module's own interpreter needs no Django.
notes:
  - Run it as the app's unprivileged user (C(become_user)) so the project's files are read with
    the app's permissions.
  - Take a backup first; the deploy playbooks run the update issue's backup before this step.
seealso:
  - name: Django migrations
    description: How Django records applied migrations.
    link: https://docs.djangoproject.com/en/stable/topics/migrations/
'''

EXAMPLES = r'''
- name: Apply pending migrations, repairing the history only where the schema proves it
  slipway.django.migrations:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/current/venv
    settings: config.settings
    environment:
      SECRET_KEY: "{{ shop_secret_key }}"
      DATABASE_URL: "{{ shop_database_url }}"
  become: true
  become_user: shop

- name: Report the history and what migrate would do, without changing anything
  slipway.django.migrations:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/current/venv
    action: diagnose
  register: shop_migrations

- name: Refuse to deploy migrations that are dangerous on a live database
  slipway.django.migrations:
    project_path: /srv/shop/releases/20250101T120000
    virtualenv: /srv/shop/releases/20250101T120000/venv
    unsafe_operations: fail

- name: Return the database to the migrations recorded with an earlier release
  slipway.django.migrations:
    project_path: /srv/shop/releases/3f2a9c1b7d0e
    virtualenv: /srv/shop/releases/3f2a9c1b7d0e/venv
    target_state: "{{ (lookup('file', 'previous-release.json') | from_json).migrations }}"

- name: Roll the orders app back to its second migration
  slipway.django.migrations:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/current/venv
    targets:
      - orders.0002
'''

RETURN = r'''
inconsistent:
  description: Recorded migrations whose dependency is not recorded, as found before repair.
  returned: always
  type: list
  elements: dict
  sample: [{"migration": "equip.0001_initial", "missing_dependency": "production.0001_initial"}]
  contains:
    migration:
      description: The recorded migration.
      type: str
    missing_dependency:
      description: Its dependency that is not recorded.
      type: str
drift:
  description:
    - Migrations whose recorded state disagrees with the schema - recorded but some of their
      tables/columns are missing (RV(drift[].recorded=true)), or not recorded while some or all
      of them exist. RV(drift[].repair) is the repair chosen, or null with the reason.
  returned: always
  type: list
  elements: dict
  sample:
    - migration: shop.0002_order_note
      recorded: false
      present: ["column shop_order.note"]
      missing: []
      repair: fake_apply
      reason: not recorded but every table and column it creates exists
  contains:
    migration:
      description: The migration.
      type: str
    recorded:
      description: Whether django_migrations records it as applied.
      type: bool
    present:
      description: The tables and columns it creates that exist.
      type: list
      elements: str
    missing:
      description: The tables and columns it creates that do not exist.
      type: list
      elements: str
    repair:
      description:
        - V(fake_apply), V(fake_unapply), V(reapply) (un-recorded and applied again on its own
          because recorded migrations depend on it), or null when it is left as is.
      type: str
    reason:
      description: Why this repair, or why none.
      type: str
plan:
  description:
    - The ordered steps, repairs first. V(fake_apply)/V(fake_unapply) only add or remove
      C(django_migrations) rows; V(apply)/V(unapply) run the migration.
    - In check mode and with O(action=diagnose), what would be done.
  returned: always
  type: list
  elements: dict
  sample:
    - action: fake_apply
      migration: production.0001_initial
      reason: dependency of a recorded migration; every table and column it creates exists
      evidence: ["table production_production exists", "column production_production.id exists"]
    - action: apply
      migration: equip.0002_machine_serial
      reason: pending
      evidence: []
  contains:
    action:
      description: V(fake_apply), V(fake_unapply), V(apply) or V(unapply).
      type: str
    migration:
      description: The migration, as C(app.name).
      type: str
    reason:
      description: Why this step.
      type: str
    evidence:
      description: What exists and what is missing in the live schema.
      type: list
      elements: str
pending:
  description: Migrations the migrate step applies (or would apply), in order.
  returned: always
  type: list
  elements: str
  sample: ["equip.0002_machine_serial"]
unsafe:
  description:
    - Preflight findings for the migrations about to run, with the table and its live row count.
    - RV(unsafe[].risk) is V(high), V(medium) or V(review) (RunPython/RunSQL, effect unknown).
  returned: always
  type: list
  elements: dict
  sample:
    - migration: api.0003_order_user
      operation: "AddField: Add field user to order"
      risk: high
      reason: "adds NOT NULL column user_id without a default on table api_order (120 rows): ..."
      table: api_order
      rows: 120
  contains:
    migration:
      description: The pending migration.
      type: str
    operation:
      description: The operation and its description.
      type: str
    risk:
      description: V(high), V(medium) or V(review).
      type: str
    reason:
      description: What can go wrong, on which table with how many rows, and what to do.
      type: str
    table:
      description: The table concerned, or null for RunPython/RunSQL.
      type: str
    rows:
      description: The table's live row count, or null.
      type: int
refused:
  description: What safe repair refused to do and why (present and missing objects).
  returned: always
  type: list
  elements: dict
  sample: []
assumed:
  description:
    - RunPython/RunSQL (and other operations whose effect the schema cannot show) in migrations
      recorded because their app's lost history matched the live schema; they are assumed
      applied, not checked.
  returned: always
  type: list
  elements: dict
  sample:
    - migration: api.0007_bump_counters
      operation: "RunPython: Raw Python operation"
      reason: assumed applied, cannot be checked
  version_added: "0.2.0"
  contains:
    migration:
      description: The migration recorded.
      type: str
    operation:
      description: The operation and its description.
      type: str
    reason:
      description: Always C(assumed applied, cannot be checked).
      type: str
irreversible:
  description:
    - Migrations the plan would unapply that cannot be reversed (a RunPython without
      reverse_code, a RunSQL without reverse_sql), with those operations. When any is listed,
      O(action=migrate) fails before changing anything.
  returned: always
  type: list
  elements: dict
  sample:
    - migration: shop.0004_fill_totals
      operations: ["RunPython: Raw Python operation"]
  contains:
    migration:
      description: The migration.
      type: str
    operations:
      description: Its operations that cannot be reversed.
      type: list
      elements: str
unapplied:
  description: Migrations this run unapplied (backwards), in order. Empty in check mode.
  returned: always
  type: list
  elements: str
  sample: ["equip.0002_machine_serial"]
state:
  description:
    - The migrations recorded as applied once the run is over (in check mode and with
      O(action=diagnose), once the plan would have run), as C(app.name) labels. Give it back
      as O(target_state) to return the database to this state.
  returned: always
  type: list
  elements: str
  sample: ["admin.0001_initial", "shop.0001_initial"]
state_before:
  description: The migrations recorded as applied before the run, as C(app.name) labels.
  returned: always
  type: list
  elements: str
  sample: ["admin.0001_initial"]
applied:
  description: Migrations this run applied (forwards), in order. Empty in check mode.
  returned: always
  type: list
  elements: str
  sample: ["equip.0002_machine_serial"]
changed:
  description: Whether rows in django_migrations or the schema changed (or would in check mode).
  returned: always
  type: bool
  sample: true
msg:
  description: A one-line summary of what was found and done.
  returned: always
  type: str
  sample: "1 inconsistent, 0 drifted, 1 pending, 0 unsafe; did: 1 apply, 1 fake_apply."
django_version:
  description: The Django version the app's virtualenv runs.
  returned: success
  type: str
  sample: "5.2.19"
vendor:
  description: The database backend of the alias.
  returned: success
  type: str
  sample: postgresql
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.slipway.django.plugins.module_utils.django_migrations import (
    InputError,
    check_project,
    helper_environment,
    helper_source,
    irreversible_message,
    parse_helper_answer,
    python_for,
    refusal_message,
    rows_diff,
    summary,
    unsafe_message,
)

ANSWER_KEYS = ('inconsistent', 'drift', 'plan', 'pending', 'unsafe', 'irreversible', 'refused',
               'assumed', 'applied', 'unapplied', 'django_version', 'vendor')


def argument_spec():
    return dict(
        project_path=dict(type='path', required=True),
        virtualenv=dict(type='path'),
        settings=dict(type='str'),
        environment=dict(type='dict', default={}, no_log=True),
        database=dict(type='str', default='default'),
        action=dict(type='str', default='migrate', choices=['diagnose', 'repair', 'migrate']),
        repair=dict(type='str', default='safe', choices=['safe', 'force']),
        unsafe_operations=dict(type='str', default='warn', choices=['warn', 'fail', 'ignore']),
        targets=dict(type='list', elements='str', default=[]),
        target_state=dict(type='list', elements='str'),
    )


def run_helper(module, params):
    """Run the helper with the app's python; its JSON answer."""
    check_project(params['project_path'])
    python = python_for(params['virtualenv'], module.get_bin_path)
    env = helper_environment(params['project_path'], params['settings'], params['environment'])
    request = {
        'project_path': os.path.abspath(params['project_path']),
        'database': params['database'],
        'action': params['action'],
        'repair': params['repair'],
        'unsafe_operations': params['unsafe_operations'],
        'targets': params['targets'],
        'target_state': params['target_state'],
        'check_mode': module.check_mode,
    }
    rc, stdout, stderr = module.run_command([python, '-c', helper_source()],
                                            data=module.jsonify(request),
                                            environ_update=env, cwd=params['project_path'])
    return parse_helper_answer(python, rc, stdout, stderr)


def build_result(module, params, answer):
    result = dict((key, answer.get(key, [])) for key in ANSWER_KEYS)
    acts = params['action'] != 'diagnose'
    result['state'] = answer.get('recorded_after', [])
    result['state_before'] = answer.get('recorded_before', [])
    result['changed'] = acts and bool(answer.get('plan'))
    result['msg'] = summary(answer, params['action'], module.check_mode)
    if module._diff and acts:
        result['diff'] = rows_diff(answer.get('recorded_before', []),
                                   answer.get('recorded_after', []))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('targets', 'target_state')])
    params = module.params
    try:
        answer = run_helper(module, params)
    except InputError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if answer.get('failed'):
        failure = dict((key, answer[key]) for key in ANSWER_KEYS if key in answer)
        if answer.get('traceback'):
            failure['exception'] = answer['traceback']
        module.fail_json(msg=answer['msg'], error=answer.get('error'),
                         changed=bool(answer.get('repaired') or answer.get('applied')),
                         **failure)
    for warning in answer.get('warnings', []):
        module.warn(warning)
    result = build_result(module, params, answer)
    if params['action'] != 'diagnose' and answer.get('refused'):
        result.update(changed=False, msg=refusal_message(answer['refused']))
        module.fail_json(**result)
    if answer.get('irreversible') and params['action'] == 'migrate':
        result.update(changed=False, msg=irreversible_message(answer['irreversible']))
        module.fail_json(**result)
    if (answer.get('unsafe') and params['action'] == 'migrate'
            and params['unsafe_operations'] == 'fail'):
        result.update(changed=False, msg=unsafe_message(answer['unsafe']))
        module.fail_json(**result)
    if params['unsafe_operations'] == 'warn':
        # A finding on an empty table harms no data: it stays in RV(unsafe), as information.
        for item in answer.get('unsafe', []):
            if item.get('table') is not None and item.get('rows') == 0:
                continue
            module.warn(f"{item['migration']}: {item['operation']}: {item['reason']}")
    if params['repair'] == 'force' and any('FORCED' in step['reason']
                                           for step in answer.get('plan', [])):
        module.warn('repair=force recorded migrations as applied WITHOUT evidence that their '
                    'tables exist; verify the schema by hand.')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
