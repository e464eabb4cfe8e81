# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fk_orphans_summary
short_description: Lines and a record of what slipway.django.fk_orphans found and did
version_added: "0.2.0"
description:
  - Given the C(relations) that M(slipway.django.fk_orphans) returned, C(fk_orphans_lines) gives
    one line per relation (orphans found of the table's rows, a few of their primary keys, and
    what was deleted, set to NULL or archived), and C(fk_orphans_record) the counts kept in the
    release's record.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The C(relations) the module returned.
    type: list
    elements: dict
    required: true
  after:
    description: (C(fk_orphans_record) only) The C(relations) of a count after the cleaning.
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Report the orphans found
  ansible.builtin.debug:
    msg: "{{ __orphans.relations | slipway.django.fk_orphans_lines }}"
"""

RETURN = r"""
_value:
  description: The lines, or the record (one entry per relation).
  type: list
"""

from ansible.errors import AnsibleFilterError


def _relation(entry):
    if not isinstance(entry, dict) or "table" not in entry or "orphans" not in entry:
        raise AnsibleFilterError(f"fk_orphans: not a relation of the module's result: {entry!r}")
    return (f"{entry['table']}.{entry['column']} -> "
            f"{entry['references_table']}.{entry.get('references_column', 'id')}")


def fk_orphans_lines(relations):
    lines = []
    for entry in relations or []:
        rows = entry.get("table_rows", "?")
        line = f"{_relation(entry)}: {entry['orphans']} orphans of {rows} rows"
        if entry["orphans"] and entry.get("sample"):
            line += f" (first: {', '.join(map(str, entry['sample']))})"
        done = [f"{verb} {entry[key]}" for key, verb in (
            ("deleted", "deleted"), ("nullified", "set to NULL"), ("archived", "archived"))
            if entry.get(key)]
        if done:
            line += "; " + ", ".join(done)
            if entry.get("archived") and entry.get("archive_table"):
                line += f" into {entry['archive_table']}"
        lines.append(line)
    return lines


def fk_orphans_record(relations, after=None):
    left = {_relation(entry): entry["orphans"] for entry in after or []}
    record = []
    for entry in relations or []:
        name = _relation(entry)
        item = {"relation": name, "orphans": entry["orphans"],
                "rows": entry.get("table_rows")}
        item.update({key: entry[key] for key in ("deleted", "nullified", "archived")
                     if entry.get(key)})
        if name in left:
            item["left"] = left[name]
        record.append(item)
    return record


class FilterModule:
    def filters(self):
        return {"fk_orphans_lines": fk_orphans_lines, "fk_orphans_record": fk_orphans_record}
