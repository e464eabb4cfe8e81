# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate's filters: health_checks, health_check_passes and health_check_failures.

One file holds the three, so each is documented in its own file beside this one
(health_checks.yml, health_check_passes.yml, health_check_failures.yml).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

KEYS = {"path", "status", "text"}


def _statuses(status):
    if status is None:
        return None
    return [int(status)] if not isinstance(status, list) else [int(code) for code in status]


def health_checks(checks):
    if not isinstance(checks, list):
        raise AnsibleFilterError(f"app_health_checks must be a list of {{path, status, text}}, "
                                 f"found {type(checks).__name__}")
    for position, check in enumerate(checks, start=1):
        if not isinstance(check, dict) or not isinstance(check.get("path"), str) \
                or not check["path"].startswith("/"):
            raise AnsibleFilterError(
                f"app_health_checks: entry {position} ({check!r}) needs a path starting with /, "
                "e.g. {path: /admin/login/}")
        unknown = sorted(set(check) - KEYS)
        if unknown:
            raise AnsibleFilterError(
                f"app_health_checks: entry {position} ({check['path']}) has unknown keys: "
                f"{', '.join(map(str, unknown))}; the keys are path, status and text")
        status = check.get("status")
        codes = status if isinstance(status, list) else [status]
        if status is not None and not all(
                isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599
                for code in codes):
            raise AnsibleFilterError(
                f"app_health_checks: entry {position} ({check['path']}) has status={status!r}; "
                "give an HTTP status (200) or a list of them ([200, 302]), or leave it out "
                "for any status below 500")
        if check.get("text") is not None and not isinstance(check["text"], str):
            raise AnsibleFilterError(
                f"app_health_checks: entry {position} ({check['path']}) has "
                f"text={check['text']!r}; text is a string the body must contain")
    return checks


def expected(check):
    codes = _statuses(check.get("status"))
    status = "a status below 500" if codes is None else "status " + " or ".join(map(str, codes))
    if check.get("text"):
        status += f" with {check['text']!r} in the body"
    return status


def health_check_passes(status, check, content=""):
    try:
        status = int(status)
    except (TypeError, ValueError):
        return False
    codes = _statuses(check.get("status"))
    good = 100 <= status < 500 if codes is None else status in codes
    text = check.get("text")
    return good and (not text or text in (content or ""))


def health_check_failures(results, base_url=""):
    failures = []
    for result in results:
        check = result.get("item", {})
        status = result.get("status", -1)
        if health_check_passes(status, check, result.get("content", "")):
            continue
        try:
            status = int(status)
        except (TypeError, ValueError):
            status = -1
        if status < 100:
            answer = f"no answer ({result.get('msg', 'connection failed')})"
        else:
            answer = f"status {status}"
            if check.get("text") and 100 <= status < 600 and (
                    status in (_statuses(check.get("status")) or range(100, 500))):
                answer += f" without {check['text']!r} in the body"
        failures.append(f"{base_url}{check.get('path', '?')} answered {answer}, "
                        f"expected {expected(check)}")
    return failures


class FilterModule:
    def filters(self):
        return {"health_checks": health_checks, "health_check_passes": health_check_passes,
                "health_check_failures": health_check_failures}
