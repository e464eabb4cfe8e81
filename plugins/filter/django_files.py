"""Filters of the app role: where a Django project keeps its files, and its release commands.

django_files(info, release_dir, app_root) turns what the project's settings say (the JSON that
roles/app/files/django_info.py prints) into the paths the deploy uses, or errors that say what
is wrong, what was found and what to do. release_commands(entries) turns app_release_commands
into the argv of manage-release (and the shell script it reads on stdin).

One file holds the two, so each is documented in its own file beside this one
(django_files.yml, release_commands.yml).
"""

from __future__ import annotations

import posixpath
import re
import shlex

from ansible.errors import AnsibleFilterError

# URL prefixes nginx serves: a path of plain characters, starting and ending with a slash.
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,=:@%/-]*$")
_SHELL_CODE = (
    "import os, subprocess, sys; "
    "bin_dir = os.path.join(os.getcwd(), 'venv', 'bin'); "
    "env = dict(os.environ, VIRTUAL_ENV=os.path.dirname(bin_dir), "
    "PATH=bin_dir + os.pathsep + os.environ.get('PATH', '/usr/bin:/bin')); "
    "sys.exit(subprocess.call(['/bin/sh', '-eu', '-c', sys.stdin.read()], env=env))"
)


def _norm(path) -> str:
    return posixpath.normpath(str(path)) if path not in (None, "") else ""


def _inside(path: str, directory: str) -> str | None:
    """PATH relative to DIRECTORY when it lies strictly inside it, else None."""
    if not path.startswith("/"):
        return None
    directory = directory.rstrip("/")
    if path.startswith(directory + "/"):
        return path[len(directory) + 1:]
    return None


def _url(value, setting: str, errors: list[str]) -> str:
    """The URL path nginx serves, or '' for a full URL (another server, e.g. a CDN)."""
    url = str(value or "")
    if re.match(r"^[a-z][a-z0-9+.-]*://", url, re.IGNORECASE) or url.startswith("//"):
        return ""
    if not _URL_PATH.match(url) or not url.endswith("/"):
        errors.append(
            f"{setting} must be a URL path that starts and ends with '/' (or a full URL served "
            f"elsewhere); the project's settings say {url!r}. Set {setting} to e.g. "
            f"'/{setting.split('_')[0].lower()}/'.")
        return ""
    if url == "/":
        errors.append(
            f"{setting} must not be '/': nginx would answer every page of the site from files "
            f"instead of the app; the project's settings say '/'. Set {setting} to its own "
            f"path, e.g. '/{setting.split('_')[0].lower()}/'.")
        return ""
    return url


def django_files(info: dict, release_dir: str, app_root: str) -> dict:
    if not isinstance(info, dict):
        raise AnsibleFilterError("django_files expects the dict that django_info.py printed")
    release_dir = _norm(release_dir)
    shared_media = _norm(f"{app_root}/shared/media")
    errors: list[str] = []

    static_root = _norm(info.get("static_root"))
    static_rel = ""
    if not static_root:
        errors.append(
            "STATIC_ROOT is not set in the project's settings, so collectstatic has nowhere to "
            "collect the static files nginx serves. Set STATIC_ROOT to a directory inside the "
            "project, e.g. STATIC_ROOT = BASE_DIR / 'static-collected', or read it from the "
            "STATIC_ROOT environment variable slipway sets.")
    else:
        static_rel = _inside(static_root, release_dir)
        if static_rel is None:
            errors.append(
                f"STATIC_ROOT must be inside the release ({release_dir}), so that each release "
                f"keeps its own static files and a rollback serves the right ones; the project's "
                f"settings say {static_root}. Set STATIC_ROOT relative to the project, e.g. "
                f"STATIC_ROOT = BASE_DIR / 'static-collected', or read it from the STATIC_ROOT "
                f"environment variable slipway sets.")
            static_rel = ""
        elif static_rel.split("/")[0] in ("venv", ".slipway-static"):
            errors.append(
                f"STATIC_ROOT must not be {static_rel!r} inside the release: that name is "
                f"slipway's. Choose another directory, e.g. BASE_DIR / 'static-collected'.")
            static_rel = ""
    listed = [_norm(entry) for entry in info.get("staticfiles_dirs") or []]
    if static_root and static_root in listed:
        errors.append(
            f"STATIC_ROOT ({static_root}) is also listed in STATICFILES_DIRS "
            f"({', '.join(listed)}): "
            f"collectstatic would copy the directory into itself (Django's staticfiles.E002). "
            f"Keep your source static files in STATICFILES_DIRS and collect into another "
            f"directory, e.g. STATIC_ROOT = BASE_DIR / 'static-collected'.")

    media_root = _norm(info.get("media_root"))
    media_link = ""
    if media_root and media_root != shared_media:
        media_link = _inside(media_root, release_dir) or ""
        if not media_link:
            errors.append(
                f"MEDIA_ROOT must be {shared_media} (the MEDIA_ROOT environment variable slipway "
                f"sets) or a directory inside the project, which slipway links to it: uploads "
                f"must outlive releases and the app's services may write nowhere else; the "
                f"project's settings say {media_root}. Read MEDIA_ROOT from the environment, or "
                f"set it relative to the project, e.g. MEDIA_ROOT = BASE_DIR / 'media'.")
        elif static_rel and (media_link == static_rel or media_link.startswith(static_rel + "/")):
            errors.append(
                f"MEDIA_ROOT ({media_root}) must not be inside STATIC_ROOT ({static_root}). "
                f"Set MEDIA_ROOT to its own directory, e.g. BASE_DIR / 'media'.")
            media_link = ""

    return {
        "static_root": static_root,
        "static_rel": static_rel,
        "static_url": _url(info.get("static_url"), "STATIC_URL", errors),
        "media_root": media_root or shared_media,
        "media_link": media_link,
        # Without MEDIA_ROOT the project keeps no uploads (Django then reports MEDIA_URL as the
        # script prefix, '/'): nothing to serve.
        "media_url": (_url(info["media_url"], "MEDIA_URL", errors)
                      if media_root and info.get("media_url") else ""),
        "errors": errors,
    }


def release_commands(entries) -> list[dict]:
    """app_release_commands as manage.py argv: a string is split like a shell would (shlex),
    {shell: SCRIPT} runs SCRIPT with /bin/sh in the release, read from stdin."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError(
            f"app_release_commands must be a list of manage.py commands (strings) or "
            f"{{shell: SCRIPT}} entries; found {type(entries).__name__}: {entries!r}.")
    commands = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            try:
                argv = shlex.split(entry)
            except ValueError as error:
                raise AnsibleFilterError(
                    f"app_release_commands[{index}] ({entry!r}) cannot be split into arguments: "
                    f"{error}. Fix its quoting.") from error
            if not argv:
                raise AnsibleFilterError(
                    f"app_release_commands[{index}] is empty. Give a manage.py command, e.g. "
                    f"'createcachetable'.")
            commands.append({"label": entry, "argv": argv, "stdin": None})
        elif (isinstance(entry, dict) and set(entry) == {"shell"}
              and isinstance(entry["shell"], str) and entry["shell"].strip()):
            commands.append({"label": "shell: " + entry["shell"].strip().splitlines()[0],
                             "argv": ["shell", "--command", _SHELL_CODE],
                             "stdin": entry["shell"]})
        else:
            raise AnsibleFilterError(
                f"app_release_commands[{index}] must be a manage.py command (a string, e.g. "
                f"'createcachetable') or {{shell: SCRIPT}}; found {entry!r}.")
    return commands


class FilterModule:
    def filters(self):
        return {"django_files": django_files, "release_commands": release_commands}
