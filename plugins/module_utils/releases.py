# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The releases of an app on a host, as the app role lays them out, read from their records.

ROOT/releases/ID/ holds a release: .slipway-release.json is its build record (written by the
app role once the release is built), .slipway-status.json the outcome of its deploys (written
by slipway.django.releases with action=mark). ROOT/current links to the release that serves.

slipway.django.releases_info returns what describe() reads; slipway.django.releases reads the
same before it marks or prunes.
"""

from __future__ import annotations

import json
import os

BUILD_RECORD = ".slipway-release.json"
STATUS_RECORD = ".slipway-status.json"


def read_json(path: str) -> dict:
    """The JSON object in path; {} when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def current_release(root: str) -> str | None:
    """The release ROOT/current links to, or None."""
    link = os.path.join(root, "current")
    try:
        return os.path.basename(os.path.realpath(link)) if os.path.islink(link) else None
    except OSError:
        return None


def read_releases(root: str) -> tuple[list, str | None]:
    """(every release directory with its build and status records, the current release);
    the most recently deployed (or built) first."""
    base = os.path.join(root, "releases")
    current = current_release(root)
    releases = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        build = read_json(os.path.join(path, BUILD_RECORD))
        status = read_json(os.path.join(path, STATUS_RECORD))
        entry = {"id": name, "status": status.get("status") or
                 ("built" if build else "incomplete"), "current": name == current,
                 "commit": build.get("commit"), "branch": build.get("branch"),
                 "built_at": build.get("built_at"), "wheelhouse": build.get("wheelhouse")}
        entry.update((key, value) for key, value in status.items() if key != "status")
        entry.setdefault("deployed_at", None)
        releases.append(entry)
    releases.sort(key=lambda entry: (entry["deployed_at"] or "", entry["built_at"] or "",
                                     entry["id"]), reverse=True)
    return releases, current


def previous_good(releases: list) -> str | None:
    """The most recently deployed release, other than the current one, whose deploy succeeded
    (the default rollback target), or None."""
    for entry in releases:
        if not entry["current"] and entry["status"] == "succeeded" and entry["deployed_at"]:
            return entry["id"]
    return None


def describe(root: str) -> dict:
    """What slipway.django.releases_info returns: releases, current and previous_good."""
    releases, current = read_releases(root)
    return {"releases": releases, "current": current, "previous_good": previous_good(releases)}
