"""Generate a Django 6 project the way its users start one, then edit it the way they do.

    python tests/testbed/django6_project.py OUTDIR

OUTDIR/django6       `django-admin startproject mysite` of the newest Django 6.0.x on the index,
                     with settings read from the environment (SECRET_KEY, DEBUG as "True",
                     ALLOWED_HOSTS, the database as DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD,
                     STATIC_ROOT) and a requirements/ tree (requirements.txt ->
                     requirements/production.txt -> requirements/base.txt) that names no app
                     server (no gunicorn: the deploy tool brings its own);
OUTDIR/django6.json  the Django and Python versions that generated it.

Nothing in it is written for slipway: the edits are those of the usual deployment checklist.
Django 6 needs Python 3.12 or later: the project is generated in a throw-away virtualenv of
the Python running this script if it is new enough (the debian13 scenario runs it on its
Debian 13 host), else of pyenv's or one on PATH.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DJANGO = "Django==6.0.*"
PROJECT_NAME = "mysite"
NEWER_PYTHONS = ("3.14", "3.13", "3.12")
REQUIREMENTS = {
    "requirements.txt": "-r requirements/production.txt\n",
    "requirements/production.txt": "-r base.txt\npsycopg[binary]>=3.2\n",
    "requirements/base.txt": "Django==6.0.*\n",
}
# (pattern in the generated settings.py, what a project's author writes instead)
SETTINGS_EDITS = [
    (r"^from pathlib import Path$", "import os\nfrom pathlib import Path"),
    (r"^SECRET_KEY = .*$", 'SECRET_KEY = os.environ["SECRET_KEY"]'),
    (r"^DEBUG = True$", 'DEBUG = os.environ.get("DEBUG", "False") == "True"'),
    (r"^ALLOWED_HOSTS = \[\]$",
     'ALLOWED_HOSTS = [host for host in os.environ.get("ALLOWED_HOSTS", "").split(",") if host]'),
    (r"^DATABASES = \{\n(?:    .*\n)*\}$",
     "DATABASES = {\n"
     '    "default": {\n'
     '        "ENGINE": "django.db.backends.postgresql",\n'
     '        "HOST": os.environ["DB_HOST"],\n'
     '        "PORT": os.environ.get("DB_PORT", "5432"),\n'
     '        "NAME": os.environ["DB_NAME"],\n'
     '        "USER": os.environ["DB_USER"],\n'
     '        "PASSWORD": os.environ["DB_PASSWORD"],\n'
     '        "CONN_MAX_AGE": 600,\n'
     "    },\n"
     "}"),
]
SETTINGS_APPENDED = """
STATIC_ROOT = os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles")

# Behind nginx, which terminates TLS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
"""


def newer_python() -> str:
    """A Python that Django 6 supports: this one, else pyenv's newest 3.12+, else one on PATH."""
    if sys.version_info >= (3, 12):
        return sys.executable
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                    check=True).stdout.strip()
    for version in NEWER_PYTHONS:
        # pyenv's shims on PATH answer only for the selected version: take its real ones.
        found = sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"))
        found += [path for path in [shutil.which(f"python{version}")]
                  if path and "/shims/" not in path]
        if found:
            return found[0]
    raise SystemExit("Django 6 needs Python 3.12 or later: found no "
                     f"python{'/'.join(NEWER_PYTHONS)} under {pyenv_root}/versions or on PATH; "
                     "install one (pyenv install 3.13)")


def edit_settings(path: Path) -> None:
    text = path.read_text()
    for pattern, replacement in SETTINGS_EDITS:
        text, count = re.subn(pattern, replacement.replace("\\", "\\\\"), text,
                              flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"{path}: expected one match of {pattern!r}, found {count}: "
                             "startproject's template changed; update this script")
    path.write_text(text + SETTINGS_APPENDED)


def generate(outdir: Path) -> dict:
    python = newer_python()
    project = outdir / "django6"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="django6-venv-") as venv:
        subprocess.run([python, "-m", "venv", venv], check=True)
        subprocess.run([f"{venv}/bin/pip", "install", "--quiet", "--disable-pip-version-check",
                        DJANGO], check=True)
        subprocess.run([f"{venv}/bin/django-admin", "startproject", PROJECT_NAME, str(project)],
                       check=True)
        versions = json.loads(subprocess.run(
            [f"{venv}/bin/python", "-c", "import django, json, platform; print(json.dumps("
             "{'django': django.get_version(), 'python': platform.python_version()}))"],
            capture_output=True, text=True, check=True).stdout)
    edit_settings(project / PROJECT_NAME / "settings.py")
    for name, content in REQUIREMENTS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(content)
    (outdir / "django6.json").write_text(json.dumps(versions) + "\n")
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    print(json.dumps(generate(parser.parse_args().outdir)))


if __name__ == "__main__":
    main()
