# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of slipway.django.notify: sends one event to the notification targets from
the controller (slipway.notify), and reports each target's outcome without its secrets. A
receiver that is down is an outcome, never a failure of the play."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible.plugins.action import ActionBase

try:
    from slipway.notify import EVENTS, Event, NotifyConfigError, deliver, parse_targets, secrets_of
except ImportError as exc:  # the collection's Python package is not installed
    IMPORT_ERROR = exc
else:
    IMPORT_ERROR = None

MASK = "********"


def _plain(value):
    """Templated options as plain data: vaulted and lazy strings become str."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _safe_label(target):
    """How a result names a target: its type and host, no path, query or credentials."""
    if target.type == "email":
        return target.label
    parts = urlsplit(target.url)
    port = f":{parts.port}" if parts.port else ""
    return f"{target.type} {parts.scheme}://{parts.hostname}{port}"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("event", "targets", "environment", "who", "branch", "detail",
                             "run_url"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        result["changed"] = False
        if IMPORT_ERROR is not None:
            result.update(failed=True, msg="slipway.django.notify needs the collection's Python "
                          f"package (slipway) on the controller: {IMPORT_ERROR}")
            return result
        args = self._task.args
        unknown = sorted(set(args) - self._VALID_ARGS)
        if unknown:
            result.update(failed=True, msg=f"unknown options {', '.join(unknown)}")
            return result
        event = args.get("event")
        if event not in EVENTS:
            result.update(failed=True, msg=f"event must be one of {', '.join(EVENTS)}")
            return result
        texts = {}
        for name in ("environment", "who", "branch", "detail", "run_url"):
            value = args.get(name)
            if value is not None and not isinstance(value, str):
                result.update(failed=True, msg=f"{name} must be a string")
                return result
            texts[name] = str(value or "")
        try:
            targets = parse_targets(_plain(args.get("targets") or []))
        except NotifyConfigError as exc:
            # A bad configuration is reported, like the callback does; the play goes on.
            result.update(outcomes=[], delivered=0, warnings=[f"no notification is sent: {exc}"])
            return result
        secrets = secrets_of(targets)

        def scrub(text):
            for secret in sorted(secrets, key=len, reverse=True):
                text = text.replace(secret, MASK)
            return text

        # Named by type and host alone: a Slack or WeCom URL's path or query is its credential.
        names = {target.label: _safe_label(target) for target in targets}
        outcomes = deliver(targets, Event(event=event, **texts), scrub=scrub)
        reported = [{"target": scrub(names.get(outcome.target, outcome.target.split()[0])),
                     "event": outcome.event, "delivered": outcome.delivered,
                     "attempts": outcome.attempts, "detail": scrub(outcome.detail)}
                    for outcome in outcomes]
        result["outcomes"] = reported
        result["delivered"] = sum(1 for entry in reported if entry["delivered"])
        warnings = [f"notification {entry['event']} -> {entry['target']}: NOT delivered after "
                    f"{entry['attempts']} attempts ({entry['detail']})"
                    for entry in reported if not entry["delivered"]]
        if warnings:
            result["warnings"] = warnings
        return result
