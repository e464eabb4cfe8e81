# -*- coding: utf-8 -*-
# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helper run by the app's own virtualenv python for slipway.django.migrations.

The module (running under the host's python, which may lack Django) sends this file's source to
``<virtualenv>/bin/python -c``, writes a JSON request on its stdin and reads one JSON object back
from its stdout. Nothing here imports Django at module level, so the module can also import this
file to read its source, and the unit tests can exercise the pure planning functions.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import io
import json
import os
import sys
import time
import traceback
import zlib

# Operations that only create tables or columns: a migration made of these (plus state-only
# operations) can be proven applied by the presence of what it creates.
CREATING_OPERATIONS = frozenset(('CreateModel', 'AddField'))
STATE_ONLY_OPERATIONS = frozenset(('AlterModelOptions', 'AlterModelManagers'))
# Operations whose database effect cannot be read from the project state.
OPAQUE_OPERATIONS = frozenset(('RunPython', 'RunSQL', 'SeparateDatabaseAndState'))
# Operations that touch one model's table without creating or removing tables or columns.
NEUTRAL_OPERATIONS = frozenset((
    'AlterModelOptions', 'AlterModelManagers', 'AlterModelTableComment', 'AlterUniqueTogether',
    'AlterIndexTogether', 'AlterOrderWithRespectTo', 'AddIndex', 'AddIndexConcurrently',
    'RemoveIndex', 'RemoveIndexConcurrently', 'RenameIndex', 'AddConstraint',
    'AddConstraintNotValid', 'RemoveConstraint', 'ValidateConstraint',
))
# A PostgreSQL table with at least this many rows is "large" for the non-concurrent index check.
LARGE_TABLE_ROWS = 10000
LOCK_NAME = 'slipway.django.migrations'
LOCK_KEY = zlib.crc32(LOCK_NAME.encode('ascii'))
LOCK_WAIT_SECONDS = 600


class HelperError(Exception):
    """A failure the user can act on; ``kind`` tells the module which input was wrong."""

    def __init__(self, kind, msg, **details):
        super().__init__(msg)
        self.kind = kind
        self.details = details


# ---------------------------------------------------------------------------------------------
# Pure helpers: plain data in, plain data out (unit tested without a database).
# ---------------------------------------------------------------------------------------------

def label(key):
    """``('app', '0001_initial')`` -> ``'app.0001_initial'``."""
    return f'{key[0]}.{key[1]}'


def describe_object(obj):
    """An object key as a human string: ``table app_book`` or ``column app_book.title``."""
    if obj[0] == 'table':
        return f'table {obj[1]}'
    return f'column {obj[1]}.{obj[2]}'


def object_exists(obj, schema):
    """Whether a table or column key exists in ``schema`` ({table: set(columns)}, lowercase)."""
    columns = schema.get(obj[1].lower())
    if columns is None:
        return False
    if obj[0] == 'table':
        return True
    return obj[2].lower() in columns


def split_presence(objects, schema):
    """(present, missing) lists of human strings for a list of object keys."""
    present = [describe_object(obj) for obj in objects if object_exists(obj, schema)]
    missing = [describe_object(obj) for obj in objects if not object_exists(obj, schema)]
    return present, missing


def parse_target(text):
    """``'app'`` -> (app, None); ``'app.0002'`` -> (app, '0002'); ``'app.zero'`` kept as is."""
    app_label, name = text.split('.', 1) if '.' in text else (text, '')
    if not app_label:
        raise HelperError('targets', f'Target {text!r} has no app label; use "app" or '
                          '"app.migration".')
    return app_label, (name or None)


class History:
    """The migration graph reduced to plain data, plus the simulated set of recorded rows.

    ``order`` is every migration key in dependency order; ``facts[key]`` holds ``parents``,
    ``children``, ``creates`` and ``removes`` (object keys), ``operations`` (class names) and
    ``opaque`` (whether some operation's database effect is unknown).
    """

    def __init__(self, order, facts, applied):
        self.order = list(order)
        self.facts = facts
        self.applied = set(applied)
        self.position = dict((key, index) for index, key in enumerate(self.order))
        self._removed_at = {}
        for index, key in enumerate(self.order):
            for obj in facts[key]['removes']:
                self._removed_at.setdefault(obj, []).append(index)

    def expected_objects(self, key):
        """Objects ``key`` creates that no later recorded migration removes."""
        here = self.position[key]
        expected = []
        for obj in self.facts[key]['creates']:
            table = ('table', obj[1])
            later = self._removed_at.get(obj, []) + (self._removed_at.get(table, [])
                                                     if obj[0] == 'column' else [])
            if not any(index > here and self.order[index] in self.applied for index in later):
                expected.append(obj)
        return expected

    def expected_gone(self, key):
        """Objects ``key`` removes that no later recorded migration creates again."""
        here = self.position[key]
        recreated = set()
        for index in range(here + 1, len(self.order)):
            if self.order[index] in self.applied:
                recreated.update(self.facts[self.order[index]]['creates'])
        return [obj for obj in self.facts[key]['removes'] if obj not in recreated]

    def fakeable(self, key):
        """Whether presence of its objects proves ``key`` applied (only create-like operations)."""
        operations = self.facts[key]['operations']
        return (any(op in CREATING_OPERATIONS for op in operations)
                and all(op in CREATING_OPERATIONS or op in STATE_ONLY_OPERATIONS
                        for op in operations))

    def blockers(self, key):
        """Operation names that keep ``key`` from being proven by presence alone."""
        return sorted(set(op for op in self.facts[key]['operations']
                          if op not in CREATING_OPERATIONS and op not in STATE_ONLY_OPERATIONS))

    def inconsistent(self):
        """[(dependent, missing dependency)] for recorded migrations whose parent is not."""
        pairs = []
        for key in self.order:
            if key not in self.applied:
                continue
            for parent in self.facts[key]['parents']:
                if parent not in self.applied:
                    pairs.append((key, parent))
        return pairs

    def unapplied_ancestors(self, key):
        """Unrecorded ancestors of ``key``, in dependency order."""
        found, stack = set(), list(self.facts[key]['parents'])
        while stack:
            parent = stack.pop()
            if parent in found or parent in self.applied:
                continue
            found.add(parent)
            stack.extend(self.facts[parent]['parents'])
        return sorted(found, key=self.position.get)

    def applied_descendants(self, key):
        """``key`` and its recorded descendants, in dependency order."""
        found, stack = set(), [key]
        while stack:
            node = stack.pop()
            if node in found or node not in self.applied:
                continue
            found.add(node)
            stack.extend(self.facts[node]['children'])
        return sorted(found, key=self.position.get)

    def parents_applied(self, key):
        return all(parent in self.applied for parent in self.facts[key]['parents'])

    def lost_chain(self, app_label):
        """The app's unrecorded migrations, in order, whose dependencies are recorded or in it.

        Every prefix of it is a set of migrations that migrate could have applied in order.
        """
        chain, inside = [], set()
        for key in self.order:
            if key[0] != app_label or key in self.applied:
                continue
            if all(parent in self.applied or parent in inside
                   for parent in self.facts[key]['parents']):
                chain.append(key)
                inside.add(key)
        return chain


# ---------------------------------------------------------------------------------------------
# Lost chains: an app's unrecorded migrations judged against the state after each of them.
#
# An expected schema is {table: {column: {'null': bool or None, 'unique': bool}}, or None when
# its columns are not checked (auto-created many-to-many tables)}; the live details are
# {table: {'columns': {column: nullable}, 'unique': [column tuples] or None}} for the tables
# that exist. Names are lowercase.
# ---------------------------------------------------------------------------------------------

PROBLEM_TEXT = {
    'missing': '{} is missing',
    'present': '{} exists',
    'nullable': '{} is nullable, NOT NULL expected',
    'not_null': '{} is NOT NULL, nullable expected',
    'not_unique': '{} has no unique constraint, one expected',
}


def chain_universe(states, foreign_tables=()):
    """(tables, columns) that some state of the chain has: what the chain speaks for."""
    tables, columns = set(), set()
    for state in states:
        for table, table_columns in state.items():
            tables.add(table)
            columns.update((table, column) for column in (table_columns or {}))
    tables.difference_update(foreign_tables)
    return tables, set(pair for pair in columns if pair[0] in tables)


def compare_state(state, universe, live):
    """[(problem, object)] where the live schema differs from one expected ``state``.

    Only the chain's ``universe`` is judged: a table or column some state has must exist
    exactly when ``state`` has it (created then removed means expected absent), with the
    nullability and uniqueness ``state`` gives it. Objects no state knows are left alone.
    """
    tables, columns = universe
    found = []
    for table in sorted(tables):
        if table in state and table not in live:
            found.append(('missing', ('table', table)))
        elif table in live and table not in state:
            found.append(('present', ('table', table)))
    for table, column in sorted(columns):
        if table not in state or table not in live or state[table] is None:
            continue
        obj = ('column', table, column)
        want = state[table].get(column)
        have = live[table]['columns']
        if want is None:
            if column in have:
                found.append(('present', obj))
            continue
        if column not in have:
            found.append(('missing', obj))
            continue
        if want['null'] is not None and bool(have[column]) != want['null']:
            found.append(('not_null' if want['null'] else 'nullable', obj))
        unique = live[table].get('unique')
        if want['unique'] and unique is not None and (column,) not in unique:
            found.append(('not_unique', obj))
    return found


def _facet(state, problem, obj):
    """What ``problem`` looks at of ``obj`` in one expected state."""
    if obj[0] == 'table':
        return obj[1] in state
    column = (state.get(obj[1]) or {}).get(obj[2])
    if column is None or problem in ('missing', 'present'):
        return column is not None
    return column['null' if problem in ('nullable', 'not_null') else 'unique']


def responsible(states, labels, n, problem, obj):
    """(migration label or None, verb): the migration whose effect the live schema lacks.

    ``labels[i]`` moves the schema from ``states[i]`` to ``states[i + 1]``; None means the
    migrations recorded before the chain.
    """
    wanted = _facet(states[n], problem, obj)
    if problem == 'present' and not any(_facet(states[i], problem, obj) for i in range(n)):
        for i in range(n + 1, len(states)):
            if _facet(states[i], problem, obj):
                return labels[i - 1], 'only the later, unapplied {} creates it'
        return None, 'no migration creates it'
    i = n
    while i > 0 and _facet(states[i - 1], problem, obj) == wanted:
        i -= 1
    if i == 0:
        return None, 'the migrations recorded before the chain expect it'
    verb = {'missing': 'creates it', 'present': 'removes it', 'nullable': 'makes it NOT NULL',
            'not_null': 'makes it nullable', 'not_unique': 'makes it unique'}[problem]
    return labels[i - 1], f'{{}} {verb}'


def judge_chain(labels, states, live, foreign_tables=()):
    """Which prefix of a lost chain the live schema proves applied.

    ``states[n]`` is the app's expected schema once the first ``n`` migrations of the chain
    (``labels``) ran; ``states[0]`` is the state before it. ``match`` is the latest n whose
    state the live schema matches exactly (None when none does); ``best`` is that n, or else
    the state with the fewest differences (the later on a tie), whose differences
    ``mismatches`` lists with the migration that expects each.
    """
    universe = chain_universe(states, foreign_tables)
    found = [compare_state(state, universe, live) for state in states]
    matching = [n for n, problems in enumerate(found) if not problems]
    match = max(matching) if matching else None
    best = match
    if best is None:
        best = min(range(len(states)), key=lambda n: (len(found[n]), -n))
    mismatches = []
    for problem, obj in found[best]:
        migration, verb = responsible(states, labels, best, problem, obj)
        text = PROBLEM_TEXT[problem].format(describe_object(obj))
        cause = verb.format(migration) if migration else verb
        mismatches.append({'problem': problem, 'object': describe_object(obj),
                           'migration': migration, 'text': f'{text} ({cause})'})
    return {'labels': list(labels), 'match': match, 'best': best, 'mismatches': mismatches}


def chain_refusal(history, schema, verdict):
    """Refusal entries for a lost chain the schema contradicts, one per migration named."""
    labels = verdict['labels']
    best = verdict['best']
    where = f'the state after {labels[best - 1]}' if best else f'the state before {labels[0]}'
    by_key = dict((label(key), key) for key in history.order)
    entries = {}
    for item in verdict['mismatches']:
        name = item['migration'] or labels[0]
        entry = entries.setdefault(name, {'migration': name, 'texts': [], 'present': [],
                                          'missing': []})
        entry['texts'].append(item['text'])
        if item['problem'] == 'missing':
            entry['missing'].append(item['object'])
        elif item['problem'] == 'present' and item['object'] not in entry['present']:
            entry['present'].append(item['object'])
    refused = []
    for name, entry in entries.items():
        key = by_key.get(name)
        created = history.facts[key]['creates'] if key else []
        present = [describe_object(obj) for obj in created if object_exists(obj, schema)]
        present += [obj for obj in entry['present'] if obj not in present]
        reason = (f'{labels[0]} to {labels[-1]} ({len(labels)} migrations) are not recorded, '
                  'and the live schema matches the state after none of them (tables, columns, '
                  f'nullability, unique constraints). Closest is {where}, which differs: '
                  f'{"; ".join(entry["texts"])}. Make the schema match (a backup, or the '
                  'objects by hand) and run again, or record the migrations by hand.')
        refused.append({'migration': name, 'reason': reason, 'present': present,
                        'missing': entry['missing']})
    return refused


def _step(action, key, reason, evidence=None):
    return {'action': action, 'migration': label(key), 'reason': reason,
            'evidence': list(evidence or [])}


def _evidence_lines(present, missing):
    return [f'{item} exists' for item in present] + [f'{item} is missing' for item in missing]


def _absent_and_provable(history, schema, keys):
    """Why un-recording ``keys`` would not be safe, or None when none of their objects exist."""
    for key in keys:
        objects = history.expected_objects(key)
        present = split_presence(objects, schema)[0]
        if present:
            return f'{label(key)} has objects in the database: {", ".join(present)}'
        if history.facts[key]['opaque']:
            blockers = ', '.join(history.blockers(key))
            return f'{label(key)} contains {blockers}, whose effect the schema cannot prove'
        if not objects:
            return f'{label(key)} creates no table or column; the schema cannot prove it unapplied'
    return None


def _repair_missing(history, schema, key, steps, handled, warnings, reapply):
    """Drift entry for a recorded migration whose objects are missing, planning its repair.

    When none of its objects exist it is un-recorded with its recorded descendants so that
    migrate re-applies them in order; when descendants keep it from that but it is made only of
    CreateModel/AddField, it is re-applied in place (un-recorded, then applied on its own).
    """
    present, missing = split_presence(history.expected_objects(key), schema)
    entry = {'migration': label(key), 'recorded': True, 'present': present, 'missing': missing}
    closure = history.applied_descendants(key)
    why_not = 'some of its objects exist' if present else None
    if why_not is None:
        why_not = _absent_and_provable(history, schema, closure)
    if why_not is None:
        for node in reversed(closure):
            node_present, node_missing = split_presence(history.expected_objects(node), schema)
            history.applied.discard(node)
            handled.add(node)
            steps.append(_step('fake_unapply', node, 'recorded as applied but none of its '
                               'tables or columns exist; migrate re-applies it',
                               _evidence_lines(node_present, node_missing)))
        entry.update(reason='recorded as applied but none of its objects exist',
                     repair='fake_unapply')
    elif (reapply and not present and history.fakeable(key)
          and _absent_and_provable(history, schema, [key]) is None):
        evidence = _evidence_lines(present, missing)
        handled.add(key)
        steps.append(_step('fake_unapply', key, 'recorded as applied but none of its tables or '
                           'columns exist', evidence))
        steps.append(_step('apply', key, f'in place: re-creates its missing tables and columns; '
                           f'the recorded migrations after it stay recorded ({why_not})',
                           evidence))
        entry.update(reason='recorded as applied but none of its objects exist; re-applied in '
                     'place because later recorded migrations depend on it', repair='reapply')
    else:
        entry.update(reason=f'recorded as applied but objects are missing; left as is because '
                     f'{why_not}', repair=None)
        warnings.append(f"{label(key)}: {entry['reason']}")
    return entry


def _dependency_evidence(history, schema, dep):
    """Evidence that a missing dependency was applied, or None when the schema does not prove it.

    Every table and column it creates must exist, and every one it removes must be gone.
    """
    objects = history.expected_objects(dep)
    present, missing = split_presence(objects, schema)
    still_there = [describe_object(obj) for obj in history.expected_gone(dep)
                   if object_exists(obj, schema)]
    if not objects or missing or still_there:
        return None
    evidence = _evidence_lines(present, missing)
    evidence += [f'{describe_object(obj)} is gone' for obj in history.expected_gone(dep)]
    if not history.fakeable(dep):
        evidence.append(f'not verifiable from the schema: {", ".join(history.blockers(dep))}; '
                        'the recorded dependent shows it ran')
    return evidence


def _chain_evidence(history, schema, key):
    facts = history.facts[key]
    evidence = [f'{describe_object(obj)} exists' for obj in facts['creates']
                if object_exists(obj, schema)]
    evidence += [f'{describe_object(obj)} is gone' for obj in facts['removes']
                 if not object_exists(obj, schema)]
    return evidence


def _fake_lost_chains(history, schema, judge, apps, state):
    """Judge each app's lost chain and record the longest prefix the live schema matches.

    ``state`` carries ``steps``, ``handled``, ``assumed``, ``verdicts`` (the last verdict per
    app), ``judged`` (verdicts by chain, so a chain is judged once) and ``reasons`` (per faked
    key). Returns whether anything was recorded.
    """
    faked = False
    for app_label in apps:
        chain = history.lost_chain(app_label)
        if not chain:
            continue
        verdict = state['judged'].get(tuple(chain))
        if verdict is None:
            verdict = state['judged'][tuple(chain)] = judge(chain)
        state['verdicts'][app_label] = verdict
        matched = verdict['match'] or 0
        if not matched:
            continue
        last = label(chain[matched - 1])
        reason = (f'lost history: the live schema matches the state after {last} (tables, '
                  'columns, nullability, unique constraints), so every migration of the '
                  'chain up to it ran')
        for key in chain[:matched]:
            history.applied.add(key)
            state['handled'].add(key)
            state['reasons'][key] = reason
            evidence = _chain_evidence(history, schema, key)
            for operation in history.facts[key].get('assumed', []):
                state['assumed'].append({'migration': label(key), 'operation': operation,
                                         'reason': 'assumed applied, cannot be checked'})
                evidence.append(f'{operation}: assumed applied, cannot be checked')
            state['steps'].append(_step('fake_apply', key, reason, evidence))
        faked = True
    return faked


def _lost_chain_apps(keys):
    apps = []
    for key in keys:
        if key[0] not in apps:
            apps.append(key[0])
    return apps


def plan_repair(history, schema, force=False, reapply=True, judge=None):
    """Repair the recorded history against the live schema.

    Mutates ``history.applied`` to the simulated result and returns a dict with ``steps``
    (fake_apply / fake_unapply plan entries), ``inconsistent``, ``drift``, ``refused``,
    ``warnings``, ``assumed`` (RunPython/RunSQL recorded without proof) and ``chain_refused``
    ({app: refusals} for lost chains the schema contradicts; refused once pending).

    ``judge(keys)``, when given, compares an app's lost chain (its unrecorded migrations) with
    the live schema and answers like judge_chain(): migrations whose rows were lost are then
    judged against the state after the whole chain, not one by one.
    """
    steps, refused, warnings, drift = [], [], [], []
    inconsistent = history.inconsistent()
    report = {
        'inconsistent': [{'migration': label(m), 'missing_dependency': label(d)}
                         for m, d in inconsistent],
    }
    handled = set()
    chains = {'steps': steps, 'handled': handled, 'assumed': [], 'verdicts': {}, 'judged': {},
              'reasons': {}}

    # 1. Missing dependencies whose objects are all there: the rows were lost, record them.
    missing_deps = []
    for dependent in [pair[0] for pair in inconsistent]:
        for ancestor in history.unapplied_ancestors(dependent):
            if ancestor not in missing_deps:
                missing_deps.append(ancestor)
    for dep in sorted(missing_deps, key=history.position.get):
        evidence = _dependency_evidence(history, schema, dep)
        if evidence is not None and history.parents_applied(dep):
            history.applied.add(dep)
            handled.add(dep)
            steps.append(_step('fake_apply', dep, 'dependency of a recorded migration; every '
                               'table and column it creates exists', evidence))

    # 2. Dependents none of whose objects exist: un-record them so migrate applies all in order.
    for dependent in [pair[0] for pair in history.inconsistent()]:
        if dependent not in history.applied:
            continue
        closure = history.applied_descendants(dependent)
        if _absent_and_provable(history, schema, closure) is None:
            for key in reversed(closure):
                present, missing = split_presence(history.expected_objects(key), schema)
                history.applied.discard(key)
                handled.add(key)
                steps.append(_step('fake_unapply', key, 'recorded before its dependencies while '
                                   'none of its tables or columns exist; migrate re-applies it '
                                   'in order', _evidence_lines(present, missing)))

    # 2b. Missing dependencies whose whole app lost its rows: judge the app's lost chain.
    while judge is not None and _fake_lost_chains(history, schema, judge, _lost_chain_apps(
            ancestor for pair in history.inconsistent()
            for ancestor in history.unapplied_ancestors(pair[0])), chains):
        pass
    chain_refused, refused_apps = {}, set()
    for app_label, verdict in chains['verdicts'].items():
        if verdict['match'] is None:
            chain_refused[app_label] = chain_refusal(history, schema, verdict)

    # 3. What is left cannot be proven either way.
    for dependent, dep in history.inconsistent():
        if not force and dep[0] in chain_refused:
            if dep[0] not in refused_apps:
                refused_apps.add(dep[0])
                refused.extend(chain_refused[dep[0]])
            handled.update((dependent, dep))
            continue
        dep_present, dep_missing = split_presence(history.expected_objects(dep), schema)
        own_present, own_missing = split_presence(history.expected_objects(dependent), schema)
        if force:
            for ancestor in history.unapplied_ancestors(dependent):
                history.applied.add(ancestor)
                handled.add(ancestor)
                steps.append(_step('fake_apply', ancestor, 'FORCED: recorded without evidence '
                                   f'so that {label(dependent)} is consistent',
                                   _evidence_lines(*split_presence(
                                       history.expected_objects(ancestor), schema))))
            warnings.append(f'repair=force recorded dependencies of {label(dependent)} as '
                            'applied without evidence; their tables may be missing')
            continue
        blockers = ', '.join(history.blockers(dep))
        contains = '' if history.fakeable(dep) else f' (contains {blockers})'
        reason = (f'{label(dependent)} is recorded as applied but its dependency {label(dep)} is '
                  f'not. {label(dep)}: present [{", ".join(dep_present)}], missing '
                  f'[{", ".join(dep_missing)}]{contains}. {label(dependent)}: present '
                  f'[{", ".join(own_present)}], missing [{", ".join(own_missing)}]. Neither "all '
                  "of the dependency's objects exist\" nor \"none of the dependent's objects "
                  'exist" holds, so safe repair will not guess. Inspect the schema, then record '
                  f'or apply {label(dep)} by hand, or use repair=force.')
        refused.append({'migration': label(dependent), 'reason': reason,
                        'present': dep_present + own_present,
                        'missing': dep_missing + own_missing})
        handled.update((dependent, dep))

    # 4. Drift between recorded rows and the schema.
    for key in history.order:
        if key in handled:
            continue
        objects = history.expected_objects(key)
        if not objects:
            continue
        present, missing = split_presence(objects, schema)
        if key in history.applied and missing:
            drift.append(_repair_missing(history, schema, key, steps, handled, warnings,
                                         reapply))
        elif key not in history.applied and present:
            entry = {'migration': label(key), 'recorded': False, 'present': present,
                     'missing': missing, 'repair': None}
            if missing:
                entry['reason'] = ('not recorded and only some of its objects exist; applying '
                                   'it would fail and recording it would hide the missing ones')
            elif not history.fakeable(key):
                blockers = ', '.join(history.blockers(key))
                entry['reason'] = (f'not recorded although its objects exist, but it contains '
                                   f'{blockers}, which the schema cannot prove applied')
            elif any(object_exists(obj, schema) for obj in history.expected_gone(key)):
                entry['reason'] = ('not recorded although its objects exist, but what it '
                                   'removes is still there')
            elif not history.parents_applied(key):
                entry['reason'] = ('not recorded although its objects exist, but its '
                                   'dependencies are not applied yet')
            else:
                history.applied.add(key)
                handled.add(key)
                entry['reason'] = 'not recorded but every table and column it creates exists'
                entry['repair'] = 'fake_apply'
                steps.append(_step('fake_apply', key, entry['reason'],
                                   _evidence_lines(present, missing)))
            drift.append(entry)

    # 5. Unrecorded migrations whose objects partly exist: judge their app's lost chain.
    while judge is not None and _fake_lost_chains(history, schema, judge, _lost_chain_apps(
            _drift_key(entry) for entry in drift if not entry['recorded']
            and entry['repair'] is None and _drift_key(entry) not in history.applied), chains):
        pass
    for entry in drift:
        key = _drift_key(entry)
        if not entry['recorded'] and entry['repair'] is None and key in history.applied:
            entry.update(repair='fake_apply', reason=chains['reasons'][key])
    for entry in drift:
        verdict = chains['verdicts'].get(_drift_key(entry)[0])
        if (not entry['recorded'] and entry['repair'] is None and verdict
                and verdict['match'] is None):
            entry['reason'] += ('; its app\'s unrecorded migrations, judged together, match no '
                                'state of theirs: ' + '; '.join(
                                    item['text'] for item in verdict['mismatches']))
    # Apps already refused in 3. map to no further refusal.
    chain_refused = dict((app_label, [] if app_label in refused_apps
                          else chain_refusal(history, schema, verdict))
                         for app_label, verdict in chains['verdicts'].items()
                         if verdict['match'] is None)

    report.update({'steps': steps, 'drift': drift, 'refused': refused, 'warnings': warnings,
                   'assumed': chains['assumed'], 'chain_refused': chain_refused})
    return report


def _drift_key(entry):
    return tuple(entry['migration'].split('.', 1))


def blocked_pending(drift, pending_labels, chain_refused=None):
    """Refusals for pending migrations that drift shows would fail (objects already there).

    A migration of an app whose lost chain the schema contradicts is refused with the chain's
    differences (``chain_refused``, per app) instead, once per app.
    """
    pending = set(pending_labels)
    chain_refused = chain_refused or {}
    refused, chain_apps = [], []
    for entry in drift:
        app_label = _drift_key(entry)[0]
        if (not entry['recorded'] and entry['repair'] is None and entry['migration'] in pending
                and app_label in chain_refused):
            if app_label not in chain_apps:
                chain_apps.append(app_label)
                refused.extend(chain_refused[app_label])
            continue
        if not entry['recorded'] and entry['repair'] is None and entry['migration'] in pending:
            refused.append({
                'migration': entry['migration'],
                'reason': f'{entry["migration"]} is pending but {entry["reason"]}. Present: '
                          f'[{", ".join(entry["present"])}]; missing: '
                          f'[{", ".join(entry["missing"])}]. Drop or rename the stray objects '
                          'after checking their data, or record the migration by hand once the '
                          'schema matches it.',
                'present': entry['present'], 'missing': entry['missing']})
    return refused


def finding_from_candidate(candidate, rows, null_rows, vendor):
    """Turn a lint candidate plus live row counts into a finding, or None when harmless."""
    kind, table = candidate['kind'], candidate.get('table')
    where = '' if table is None else f' on table {table} ({rows} rows)'
    finding = {'migration': candidate['migration'], 'operation': candidate['operation'],
               'table': table, 'rows': rows}
    if kind == 'review':
        finding.update(risk='review', reason='{} runs arbitrary code or SQL; its effect on a live '
                       'database is unknown: review it'.format(candidate['operation_name']))
    elif kind == 'not_null_no_default':
        if not rows:
            return None
        finding.update(risk='high', reason='adds NOT NULL column {} without a default{}: the '
                       'existing rows make it fail; add a default or make it nullable, then '
                       'backfill'.format(candidate['column'], where))
    elif kind == 'set_not_null':
        if not rows:
            return None
        finding.update(risk='high' if null_rows else 'medium',
                       reason=f'makes column {candidate["column"]} NOT NULL{where}, '
                       f'{null_rows} of them NULL; it fails on NULLs and locks the table while '
                       'checking')
    elif kind in ('remove_column', 'remove_table', 'rename_column', 'rename_table'):
        verb = {'remove_column': 'removes column {}'.format(candidate.get('column')),
                'remove_table': 'drops the table',
                'rename_column': 'renames column {}'.format(candidate.get('column')),
                'rename_table': 'renames the table'}[kind]
        finding.update(risk='high', reason=f'{verb}{where} while older code may still use it '
                       'during a rolling deploy; deploy code that stops using it first')
    elif kind == 'alter_type':
        if not rows:
            return None
        finding.update(risk='high', reason=f'changes the type of column {candidate["column"]}'
                       f'{where}: the table may be rewritten under an exclusive lock, and values '
                       'may not convert')
    elif kind == 'index':
        if vendor != 'postgresql' or (rows or 0) < LARGE_TABLE_ROWS:
            return None
        finding.update(risk='medium', reason=f'adds an index without CONCURRENTLY{where}: '
                       'writes are blocked while it builds; use AddIndexConcurrently in a '
                       'non-atomic migration')
    elif kind == 'unique':
        if not rows:
            return None
        finding.update(risk='medium', reason=f'adds a unique constraint{where}: it fails on '
                       'duplicate values and locks the table while it is built')
    elif kind == 'unapply_data':
        if not rows:
            return None
        finding.update(risk='high',
                       reason=f'unapplying it {candidate["detail"]}{where}: that data is lost')
    else:
        return None
    return finding


# ---------------------------------------------------------------------------------------------
# Reading migrations: operations replayed against the project state before them.
# ---------------------------------------------------------------------------------------------

def _default_table(app_label, model_name, connection):
    from django.db.backends.utils import truncate_name
    return truncate_name(f'{app_label}_{model_name.lower()}',
                         connection.ops.max_name_length())


def _swapped(app_label, model_name, options):
    """Whether a swappable model is replaced in this project (auth.User by AUTH_USER_MODEL):
    Django then creates no table for it."""
    setting = options.get('swappable')
    if not setting:
        return False
    from django.conf import settings
    target = getattr(settings, setting, None) or ''
    return target.lower() != f'{app_label}.{model_name}'.lower()


def _model_table(app_label, model_name, options, connection):
    """The table of a model, or None when the model has none of its own (proxy, unmanaged,
    swapped out)."""
    if (options.get('proxy') or not options.get('managed', True)
            or _swapped(app_label, model_name, options)):
        return None
    return options.get('db_table') or _default_table(app_label, model_name, connection)


def _state_table(state, app_label, model_name, connection):
    model = state.models.get((app_label, model_name.lower()))
    if model is None:
        return None
    return _model_table(model.app_label, model.name, model.options, connection)


def _field_column(name, field):
    """The column a field stores in its model's table, or None (many-to-many, composite)."""
    from django.db import models
    if getattr(field, 'many_to_many', False) or type(field).__name__ in (
            'CompositePrimaryKey', 'ForeignObject', 'GenericRelation'):
        return None
    if field.db_column:
        return field.db_column
    if isinstance(field, models.ForeignKey):
        return f'{name}_id'
    return name


def _m2m_table(table, name, field, connection):
    """The auto-created through table of a many-to-many field, or None if it has its own model."""
    from django.db.backends.utils import truncate_name
    if not getattr(field, 'many_to_many', False) or table is None:
        return None
    if getattr(field.remote_field, 'through', None):
        return None
    if field.db_table:
        return field.db_table
    return truncate_name(f'{table}_{name}', connection.ops.max_name_length())


def _field_objects(table, name, field, connection):
    if table is None:
        return []
    column = _field_column(name, field)
    if column is not None:
        return [('column', table, column)]
    through = _m2m_table(table, name, field, connection)
    return [('table', through)] if through else []


def _has_default(field):
    from django.db.models import NOT_PROVIDED
    return field.has_default() or getattr(field, 'db_default', NOT_PROVIDED) is not NOT_PROVIDED


def _type_signature(field):
    deconstructed = field.deconstruct()
    path, kwargs = deconstructed[1], deconstructed[3]
    return (path, kwargs.get('max_length'), kwargs.get('max_digits'),
            kwargs.get('decimal_places'))


def _lint_add_field(op, table, field):
    candidates = []
    column = _field_column(op.name, field)
    if column is None:
        return candidates
    if not field.null and not _has_default(field) and not getattr(field, 'primary_key', False) \
            and type(field).__name__ != 'GeneratedField':
        candidates.append({'kind': 'not_null_no_default', 'table': table, 'column': column})
    if field.unique and not getattr(field, 'primary_key', False):
        candidates.append({'kind': 'unique', 'table': table, 'column': column})
    elif field.db_index:
        candidates.append({'kind': 'index', 'table': table, 'column': column})
    return candidates


def _lint_alter_field(old_field, new_field, table, name):
    candidates = []
    column = _field_column(name, new_field)
    if column is None or old_field is None:
        return candidates
    if _type_signature(old_field) != _type_signature(new_field):
        candidates.append({'kind': 'alter_type', 'table': table, 'column': column})
    if old_field.null and not new_field.null:
        candidates.append({'kind': 'set_not_null', 'table': table, 'column': column})
    if new_field.unique and not old_field.unique:
        candidates.append({'kind': 'unique', 'table': table, 'column': column})
    elif new_field.db_index and not old_field.db_index:
        candidates.append({'kind': 'index', 'table': table, 'column': column})
    return candidates


def operation_effects(op, app_label, state, connection):
    """What one operation creates and removes, and what the preflight should look at.

    Reads ``state`` (the project state just before ``op``) and does not change it.
    """
    name = type(op).__name__
    creates, removes, lint, unapply = [], [], [], []
    opaque = False
    if name == 'CreateModel':
        table = _model_table(app_label, op.name, op.options, connection)
        if table:
            creates.append(('table', table))
            for field_name, field in op.fields:
                creates.extend(_field_objects(table, field_name, field, connection))
            unapply.append({'kind': 'unapply_data', 'table': table,
                            'detail': 'drops the table'})
    elif name == 'AddField':
        table = _state_table(state, app_label, op.model_name, connection)
        creates.extend(_field_objects(table, op.name, op.field, connection))
        if table:
            lint.extend(_lint_add_field(op, table, op.field))
            column = _field_column(op.name, op.field)
            if column:
                unapply.append({'kind': 'unapply_data', 'table': table,
                                'detail': f'drops column {column}'})
    elif name == 'RemoveField':
        table = _state_table(state, app_label, op.model_name, connection)
        model = state.models.get((app_label, op.model_name_lower))
        field = model.fields.get(op.name) if model else None
        if table and field is not None:
            removes.extend(_field_objects(table, op.name, field, connection))
            lint.append({'kind': 'remove_column', 'table': table,
                         'column': _field_column(op.name, field)})
    elif name in ('RenameField', 'AlterField'):
        table = _state_table(state, app_label, op.model_name, connection)
        model = state.models.get((app_label, op.model_name_lower))
        old_name = op.old_name if name == 'RenameField' else op.name
        new_name = op.new_name if name == 'RenameField' else op.name
        old_field = model.fields.get(old_name) if model else None
        new_field = old_field if name == 'RenameField' else op.field
        if table and old_field is not None:
            old_objects = _field_objects(table, old_name, old_field, connection)
            new_objects = _field_objects(table, new_name, new_field, connection)
            if old_objects != new_objects:
                removes.extend(old_objects)
                creates.extend(new_objects)
                if name == 'RenameField':
                    lint.append({'kind': 'rename_column', 'table': table,
                                 'column': _field_column(old_name, old_field)})
            if name == 'AlterField':
                lint.extend(_lint_alter_field(old_field, new_field, table, new_name))
    elif name == 'DeleteModel':
        table = _state_table(state, app_label, op.name, connection)
        if table:
            removes.append(('table', table))
            model = state.models[(app_label, op.name_lower)]
            for field_name, field in model.fields.items():
                through = _m2m_table(table, field_name, field, connection)
                if through:
                    removes.append(('table', through))
            lint.append({'kind': 'remove_table', 'table': table})
    elif name in ('RenameModel', 'AlterModelTable'):
        model_name = op.old_name if name == 'RenameModel' else op.name
        model = state.models.get((app_label, model_name.lower()))
        old_table = _state_table(state, app_label, model_name, connection)
        if model is not None and old_table:
            if name == 'RenameModel':
                new_table = _model_table(app_label, op.new_name, model.options, connection)
            else:
                new_table = op.table or _default_table(app_label, model.name, connection)
            if new_table != old_table:
                removes.append(('table', old_table))
                creates.append(('table', new_table))
                lint.append({'kind': 'rename_table', 'table': old_table})
    elif name in ('AddIndex', 'AlterIndexTogether'):
        table = _state_table(state, app_label, op.model_name if name == 'AddIndex' else op.name,
                             connection)
        if table:
            lint.append({'kind': 'index', 'table': table})
    elif name in ('AddConstraint', 'AlterUniqueTogether'):
        table = _state_table(state, app_label, op.model_name if name == 'AddConstraint'
                             else op.name, connection)
        constraint = getattr(op, 'constraint', None)
        if table and (name == 'AlterUniqueTogether' or type(constraint).__name__ ==
                      'UniqueConstraint'):
            lint.append({'kind': 'unique', 'table': table})
    elif name in OPAQUE_OPERATIONS:
        opaque = name != 'SeparateDatabaseAndState' or bool(op.database_operations)
        if opaque:
            lint.append({'kind': 'review', 'table': None})
    elif name not in NEUTRAL_OPERATIONS:
        opaque = True
        lint.append({'kind': 'review', 'table': None})
    return {'name': name, 'creates': creates, 'removes': removes, 'lint': lint,
            'unapply': unapply, 'opaque': opaque}


def dependency_order(graph):
    """Every migration key, each after its dependencies (Django's own forwards order)."""
    order, seen = [], set()
    for leaf in sorted(graph.leaf_nodes()):
        for key in graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                order.append(key)
    return order


def _allowed_here(op, app_label, alias):
    """Whether the database routers let ``op`` run on this alias (Django skips it otherwise)."""
    from django.db import router
    model_name = getattr(op, 'model_name', None) or getattr(op, 'name', None)
    hints = getattr(op, 'hints', None) or {}
    if model_name and not hints:
        return router.allow_migrate(alias, app_label, model_name=model_name.lower())
    return router.allow_migrate(alias, app_label, **hints)


def _replay(op, key, migration, state, connection):
    """Effects of one operation (empty when routed elsewhere), then the state moved past it."""
    if _allowed_here(op, migration.app_label, connection.alias):
        effects = operation_effects(op, migration.app_label, state, connection)
    else:
        effects = {'name': type(op).__name__, 'creates': [], 'removes': [], 'lint': [],
                   'unapply': [], 'opaque': False}
    try:
        op.state_forwards(migration.app_label, state)
    except Exception as exc:
        raise _state_error(f'{label(key)}: {type(op).__name__} could not be replayed on the '
                           'project state', exc) from None
    return effects


def _state_error(what, exc):
    """The error for a project state Django cannot build: WHAT failed, and why."""
    return HelperError('graph', f'{what} ({type(exc).__name__}: {exc}); does '
                       '"manage.py migrate --plan" work?')


def read_migrations(loader, connection):
    """Walk every migration in dependency order, replaying its operations on one project state.

    Returns (order, facts, lint) where lint[key] lists preflight candidates per migration.
    """
    from django.db.migrations.state import ProjectState

    graph = loader.graph
    order = dependency_order(graph)
    state = ProjectState(real_apps=loader.unmigrated_apps)
    facts, lint = {}, {}
    for key in order:
        migration = graph.nodes[key]
        node = graph.node_map[key]
        entry = {'parents': sorted(parent.key for parent in node.parents),
                 'children': sorted(child.key for child in node.children),
                 'creates': [], 'removes': [], 'operations': [], 'opaque': False,
                 'assumed': []}
        lint[key] = {'forwards': [], 'backwards': []}
        for op in migration.operations:
            effects = _replay(op, key, migration, state, connection)
            entry['operations'].append(effects['name'])
            entry['creates'].extend(effects['creates'])
            entry['removes'].extend(effects['removes'])
            entry['opaque'] = entry['opaque'] or effects['opaque']
            described = _describe_operation(op)
            if effects['opaque']:
                entry['assumed'].append(described)
            for direction in ('lint', 'unapply'):
                for candidate in effects[direction]:
                    candidate.update(migration=label(key), operation=described,
                                     operation_name=effects['name'])
                    lint[key]['forwards' if direction == 'lint' else 'backwards'].append(
                        candidate)
        facts[key] = entry
    return order, facts, lint


def _expected_null(field, connection):
    """Whether the column of ``field`` is nullable in the database, or None when unknown."""
    if type(field).__name__ == 'GeneratedField':
        return None
    return bool(field.null or (connection.features.interprets_empty_strings_as_nulls
                               and field.empty_strings_allowed))


def expected_schema(state, app_label, connection):
    """An app's tables in a project state, as judge_chain() reads them (see above)."""
    from django.db import router
    tables = {}
    for (app, model_name), model in state.models.items():
        if app != app_label or not router.allow_migrate(connection.alias, app,
                                                        model_name=model_name):
            continue
        table = _model_table(app, model.name, model.options, connection)
        if not table:
            continue
        columns = {}
        for name, field in model.fields.items():
            column = _field_column(name, field)
            if column is not None:
                columns[column.lower()] = {
                    'null': _expected_null(field, connection),
                    'unique': bool(field.unique and not field.primary_key)}
            through = _m2m_table(table, name, field, connection)
            if through:
                tables.setdefault(through.lower(), None)
        tables[table.lower()] = columns
    return tables


def chain_states(loader, connection, history, chain):
    """The app's expected schema before ``chain`` and after each of its migrations.

    Django's own project states: the recorded migrations (but none that descend from the
    chain) give the state before it; each migration of the chain then moves it on.
    """
    graph = loader.graph
    later = set()
    for key in chain:
        later.update(graph.backwards_plan(key))
    app_label = chain[0][0]
    base = [key for key in history.order if key in history.applied and key not in later
            and (key[0] == app_label or any(key in history.facts[member]['parents']
                                            for member in chain))]
    try:
        state = loader.project_state(base, at_end=True) if base else None
        if state is None:
            from django.db.migrations.state import ProjectState
            state = ProjectState(real_apps=loader.unmigrated_apps)
        states = [expected_schema(state, app_label, connection)]
        for key in chain:
            state = graph.nodes[key].mutate_state(state, preserve=False)
            states.append(expected_schema(state, app_label, connection))
    except Exception as exc:
        raise _state_error(f'{app_label}: the project state of its unrecorded migrations could '
                           'not be built', exc) from None
    return states


def live_details(connection, tables):
    """judge_chain()'s live details of those of ``tables`` that exist, by introspection."""
    introspection = connection.introspection
    details = {}
    with connection.cursor() as cursor:
        names = dict((name.lower(), name) for name in introspection.table_names(cursor))
        for table in sorted(tables):
            if table not in names:
                continue
            description = introspection.get_table_description(cursor, names[table])
            try:
                constraints = introspection.get_constraints(cursor, names[table]).values()
                unique = [tuple(column.lower() for column in item['columns'])
                          for item in constraints if item['unique'] or item['primary_key']]
            except Exception:  # a backend that cannot read them: uniqueness is not judged
                unique = None
            details[table] = {'columns': dict((info.name.lower(), bool(info.null_ok))
                                              for info in description),
                              'unique': unique}
    return details


def chain_judge(loader, connection, history):
    """judge(keys) for plan_repair(): a lost chain against the live schema."""
    foreign = set()

    def judge(chain):
        if not foreign:
            final = loader.project_state()
            for app_label in sorted(set(key[0] for key in final.models)):
                foreign.update((app_label, table) for table in expected_schema(
                    final, app_label, connection))
        states = chain_states(loader, connection, history, chain)
        others = set(table for app, table in foreign if app != chain[0][0])
        tables = chain_universe(states, others)[0]
        return judge_chain([label(key) for key in chain], states,
                           live_details(connection, tables), others)

    return judge


def _describe_operation(op):
    try:
        return f'{type(op).__name__}: {op.describe()}'
    except Exception:  # a custom operation's describe() must not break the diagnosis
        return type(op).__name__


# ---------------------------------------------------------------------------------------------
# The live database.
# ---------------------------------------------------------------------------------------------

def live_schema(connection):
    """{table (lowercase): set of column names (lowercase)} for the connection's schema."""
    schema = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor, include_views=True):
            schema[table.lower()] = set()
        if connection.vendor == 'postgresql':
            cursor.execute(
                "SELECT c.relname, a.attname FROM pg_catalog.pg_attribute a "
                "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 "
                "AND NOT a.attisdropped AND pg_catalog.pg_table_is_visible(c.oid)")
            rows = cursor.fetchall()
        elif connection.vendor == 'mysql':
            cursor.execute("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE table_schema = DATABASE()")
            rows = cursor.fetchall()
        else:
            # One query instead of Django's per-table introspection, which parses each DDL.
            cursor.execute("SELECT m.name, p.name FROM sqlite_master AS m "
                           "JOIN pragma_table_info(m.name) AS p WHERE m.type IN ('table', 'view')")
            rows = cursor.fetchall()
        for table, column in rows:
            if table.lower() in schema:
                schema[table.lower()].add(column.lower())
    return schema


def count_rows(connection, table, column=None):
    """Exact row count of ``table`` (rows where ``column`` IS NULL when given)."""
    quote = connection.ops.quote_name
    sql = f'SELECT COUNT(*) FROM {quote(table)}'
    if column:
        sql += f' WHERE {quote(column)} IS NULL'
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@contextlib.contextmanager
def advisory_lock(connection):
    """Hold a per-database lock for the whole run so two runs never interleave."""
    if connection.vendor == 'postgresql':
        acquire = ('SELECT pg_try_advisory_lock(%s)', [LOCK_KEY])
        release = ('SELECT pg_advisory_unlock(%s)', [LOCK_KEY])
    elif connection.vendor == 'mysql':
        name = ('{}:{}'.format(LOCK_NAME, connection.settings_dict['NAME']))[:64]
        acquire = ('SELECT GET_LOCK(%s, 0)', [name])
        release = ('SELECT RELEASE_LOCK(%s)', [name])
    else:
        with _file_lock(connection):
            yield
        return
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        with connection.cursor() as cursor:
            cursor.execute(*acquire)
            if cursor.fetchone()[0] == 1:
                break
        if time.monotonic() > deadline:
            raise HelperError('lock', 'Another run of slipway.django.migrations has held the '
                              f'migration lock on this database for more than '
                              f'{LOCK_WAIT_SECONDS} seconds; wait for it to finish or find the '
                              'session holding it.')
        time.sleep(0.5)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(*release)


@contextlib.contextmanager
def _file_lock(connection):
    """SQLite: an flock on the database file itself (independent of SQLite's own fcntl locks)."""
    import fcntl
    name = str(connection.settings_dict['NAME'])
    if not name or name == ':memory:' or name.startswith('file:') or not os.path.exists(name):
        yield
        return
    with open(name, 'rb') as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise HelperError('lock', f'Another run holds {handle.name}; wait for it '
                                      'to finish.') from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# One run: diagnose, plan, and apply unless in check mode.
# ---------------------------------------------------------------------------------------------

def setup_django(request):
    project_path = request['project_path']
    sys.path.insert(0, project_path)
    os.chdir(project_path)
    if not os.environ.get('DJANGO_SETTINGS_MODULE'):
        raise HelperError('settings', 'DJANGO_SETTINGS_MODULE is not set; pass settings, e.g. '
                          'settings: config.settings.')
    try:
        import django
    except ImportError as exc:
        raise HelperError('virtualenv', f'Django cannot be imported by {sys.executable} '
                          f'({exc}); point virtualenv at the virtualenv the app runs with.'
                          ) from None
    try:
        django.setup()
    except Exception as exc:
        module_name = os.environ['DJANGO_SETTINGS_MODULE']
        raise HelperError('settings', f'Django settings {module_name!r} failed to load: '
                          f'{type(exc).__name__}: {exc}. Check settings and environment '
                          '(SECRET_KEY, DATABASE_URL...).') from None
    return django.get_version()


def open_connection(alias):
    from django.db import connections
    if alias not in connections.settings:
        known = ', '.join(sorted(connections.settings))
        raise HelperError('database', f'Database alias {alias!r} is not in DATABASES (found: '
                          f'{known}).')
    connection = connections[alias]
    try:
        connection.ensure_connection()
    except Exception as exc:
        settings = connection.settings_dict
        host = settings.get('HOST') or 'localhost'
        where = f"{connection.vendor} {settings.get('NAME')} on {host}"
        raise HelperError('database', f'Cannot connect to database {alias!r} ({where}): '
                          f'{str(exc).strip()}. Check that the server runs and that the '
                          'credentials in the environment are right.') from None
    return connection


def resolve_targets(loader, texts):
    """Migrate targets as executor keys; no texts means every leaf."""
    if not texts:
        return loader.graph.leaf_nodes()
    targets = []
    for text in texts:
        app_label, name = parse_target(text)
        if app_label not in loader.migrated_apps:
            known = ', '.join(sorted(loader.migrated_apps))
            raise HelperError('targets', f'Target {text!r}: app {app_label!r} has no migrations '
                              f'(apps with migrations: {known}).')
        if name is None:
            targets.extend(key for key in loader.graph.leaf_nodes() if key[0] == app_label)
        elif name == 'zero':
            targets.append((app_label, None))
        else:
            try:
                migration = loader.get_migration_by_prefix(app_label, name)
            except Exception as exc:
                raise HelperError('targets', f'Target {text!r}: {exc}') from None
            targets.append((app_label, migration.name))
    return targets


def targets_for_state(loader, state):
    """Targets that bring every app with migrations to the recorded ``state``.

    ``state`` lists ``app.name`` labels (a release's recorded migrations). Per app, the target
    is the recorded migration none of whose recorded same-app migrations descends from; an
    app with none recorded goes to zero. Labels of apps or migrations the project does not
    know are ignored: a later release cannot be asked to rebuild what it no longer has.
    """
    recorded = set()
    for text in state:
        key = tuple(text.split('.', 1))
        if len(key) == 2 and key in loader.graph.nodes:
            recorded.add(key)
    targets = []
    for app_label in sorted(loader.migrated_apps):
        mine = [key for key in recorded if key[0] == app_label]
        if not mine:
            targets.append(f'{app_label}.zero')
            continue
        leaves = [key for key in mine
                  if not any(other != key and key in loader.graph.forwards_plan(other)
                             for other in mine)]
        targets.extend(f'{key[0]}.{key[1]}' for key in sorted(leaves))
    return targets


def irreversible_steps(migrate_plan):
    """The migrations the plan would unapply that cannot be reversed, with the reason."""
    found = []
    for migration, backwards in migrate_plan:
        if not backwards:
            continue
        blocking = [_describe_operation(op) for op in migration.operations
                    if not getattr(op, 'reversible', True)]
        if blocking:
            found.append({'migration': label((migration.app_label, migration.name)),
                          'operations': blocking})
    return found


def preflight(connection, lint, migrate_plan):
    """Findings for every dangerous operation in the plan, with live row counts. An empty
    database (no table at all: a first deploy) holds no data that RunPython/RunSQL could harm."""
    schema_tables = set(connection.introspection.table_names())
    counts, findings = {}, []
    for migration, backwards in migrate_plan:
        key = (migration.app_label, migration.name)
        for candidate in lint[key]['backwards' if backwards else 'forwards']:
            table = candidate.get('table')
            if table is not None and table not in schema_tables:
                continue
            if not schema_tables and candidate['kind'] == 'review':
                continue
            rows = null_rows = None
            if table is not None:
                if table not in counts:
                    counts[table] = count_rows(connection, table)
                rows = counts[table]
                if candidate['kind'] == 'set_not_null' and rows:
                    null_rows = count_rows(connection, table, candidate['column'])
            finding = finding_from_candidate(candidate, rows, null_rows, connection.vendor)
            if finding:
                findings.append(finding)
    return findings


def record_rows(recorder, loader, key, applied):
    """Add or remove django_migrations rows for one migration (and what it replaces)."""
    migration = loader.graph.nodes[key]
    keys = list(migration.replaces or []) + [key]
    for app_label, name in keys:
        if applied:
            recorder.record_applied(app_label, name)
        else:
            recorder.record_unapplied(app_label, name)


def step_key(step):
    return tuple(step['migration'].split('.', 1))


def rows_after(loader, recorded, plan):
    """The django_migrations rows once ``plan`` has run."""
    after = set(recorded)
    for step in plan:
        key = step_key(step)
        keys = list(loader.graph.nodes[key].replaces or []) + [key]
        if step['action'] in ('fake_apply', 'apply'):
            after.update(keys)
        else:
            after.difference_update(keys)
    return [label(key) for key in sorted(after)]


def diagnose(request, connection, executor):
    """Everything the module reports, with the plan; changes nothing."""
    from django.db.migrations.recorder import MigrationRecorder

    loader = executor.loader
    recorder = MigrationRecorder(connection)
    recorded = sorted(recorder.applied_migrations()) if recorder.has_table() else []
    order, facts, lint = read_migrations(loader, connection)
    history = History(order, facts, [key for key in loader.applied_migrations if key in facts])
    repair = plan_repair(history, live_schema(connection),
                         force=request.get('repair') == 'force',
                         reapply=request.get('action') != 'repair',
                         judge=chain_judge(loader, connection, history))
    migrate_plan = []
    if request.get('action') != 'repair':
        if request.get('target_state') is not None:
            request['targets'] = targets_for_state(loader, request['target_state'])
        targets = resolve_targets(loader, request.get('targets') or [])
        loader.applied_migrations = dict((key, None) for key in history.applied)
        migrate_plan = executor.migration_plan(targets)
        if request.get('target_state') is not None:
            # Only the apps that move need a migrate call.
            moving = set(step[0].app_label for step in migrate_plan)
            request['targets'] = [text for text in request['targets']
                                  if parse_target(text)[0] in moving]
    plan = list(repair['steps'])
    for migration, backwards in migrate_plan:
        plan.append(_step('unapply' if backwards else 'apply',
                          (migration.app_label, migration.name),
                          'target is before it' if backwards else 'pending', []))
    pending = [label((m.app_label, m.name)) for m, backwards in migrate_plan if not backwards]
    return {
        'inconsistent': repair['inconsistent'], 'drift': repair['drift'], 'plan': plan,
        'pending': pending,
        'refused': repair['refused'] + blocked_pending(repair['drift'], pending,
                                                       repair['chain_refused']),
        'assumed': repair['assumed'],
        'warnings': repair['warnings'], 'unsafe': preflight(connection, lint, migrate_plan),
        'irreversible': irreversible_steps(migrate_plan),
        'applied': [], 'repair_steps': len(repair['steps']),
        'recorded_before': [label(key) for key in recorded],
        'recorded_after': rows_after(loader, recorded, plan),
    }


def execute(request, connection, executor, result):
    """Record the repairs, re-apply in place what needs it, then migrate; fills ``applied``."""
    from django.core.management import call_command
    from django.db import transaction
    from django.db.migrations.recorder import MigrationRecorder

    loader = executor.loader
    recorder = MigrationRecorder(connection)
    repairs = result['plan'][:result['repair_steps']]
    fakes = [step for step in repairs if step['action'].startswith('fake_')]
    if fakes:
        recorder.ensure_schema()
        with transaction.atomic(using=connection.alias):
            for step in fakes:
                record_rows(recorder, loader, step_key(step), step['action'] == 'fake_apply')
    output = io.StringIO()
    try:
        for step in repairs:
            if step['action'] == 'apply':
                state = loader.project_state(step_key(step), at_end=False)
                executor.apply_migration(state, loader.graph.nodes[step_key(step)])
        if len(repairs) < len(result['plan']):
            targets = request.get('targets')
            if not targets and request.get('target_state') is None:
                targets = [None]
            for target in targets:
                args = [] if target is None else list(parse_target(target))
                call_command('migrate', *[arg for arg in args if arg is not None],
                             database=connection.alias, interactive=False, verbosity=1,
                             stdout=output, stderr=output)
    except Exception as exc:
        result['applied'] = applied_by_plan(recorder, result['plan'])
        raise HelperError('migrate', f'migrate failed after applying '
                          f'[{", ".join(result["applied"])}]: {type(exc).__name__}: {exc}',
                          result=result, output=output.getvalue()) from None
    result['output'] = output.getvalue()
    result['applied'] = applied_by_plan(recorder, result['plan'])
    result['unapplied'] = unapplied_by_plan(recorder, result['plan'])
    result['recorded_after'] = [label(key) for key in sorted(recorder.applied_migrations())]


def applied_by_plan(recorder, plan):
    done = set(recorder.applied_migrations())
    return [step['migration'] for step in plan
            if step['action'] == 'apply' and step_key(step) in done]


def unapplied_by_plan(recorder, plan):
    done = set(recorder.applied_migrations())
    return [step['migration'] for step in plan
            if step['action'] == 'unapply' and step_key(step) not in done]


def run(request):
    version = setup_django(request)
    from django.db.migrations.executor import MigrationExecutor

    connection = open_connection(request.get('database') or 'default')
    with advisory_lock(connection):
        try:
            executor = MigrationExecutor(connection)
        except Exception as exc:
            raise HelperError('graph', f'Django could not load the migration graph: '
                              f'{type(exc).__name__}: {exc}. Fix the migration files (a missing '
                              'or renamed dependency?) before migrating.') from None
        result = diagnose(request, connection, executor)
        result.update(django_version=version, vendor=connection.vendor)
        if (request.get('action') == 'diagnose' or request.get('check_mode')
                or result['refused'] or result['irreversible']
                or (result['unsafe'] and request.get('unsafe_operations') == 'fail')):
            return result
        result['repaired'] = True
        execute(request, connection, executor, result)
        return result


def main():
    """Read the request from stdin, answer with one JSON object on the original stdout."""
    answer = os.fdopen(os.dup(1), 'w')
    # Anything the project prints while loading goes to stderr, keeping stdout for the answer.
    os.dup2(2, 1)
    try:
        result = run(json.load(sys.stdin))
    except HelperError as exc:
        result = dict(exc.details.pop('result', {}))
        result.update(exc.details)
        result.update(failed=True, error=exc.kind, msg=str(exc))
    except Exception as exc:
        result = {'failed': True, 'error': 'unexpected',
                  'msg': f'{type(exc).__name__}: {exc}',
                  'traceback': traceback.format_exc()}
    json.dump(result, answer)
    answer.flush()


if __name__ == '__main__':
    main()
