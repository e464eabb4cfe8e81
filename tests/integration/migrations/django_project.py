"""Generate small Django projects and run slipway.django.migrations against them for real.

A project is written from a spec: ``{app_label: [Migration(...), ...]}``. Migrations are written
by hand-picked operations (no makemigrations), so each test states exactly the history it needs.
Settings read the database from ``DATABASE_URL`` like a twelve-factor app does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = REPO / ".venv" / "bin"
# The module's own interpreter: the host's python, which has no Django (as on Debian 12).
HOST_PYTHON = "/usr/bin/python3"

SETTINGS = '''\
import os
from urllib.parse import unquote, urlparse

SECRET_KEY = os.environ["SECRET_KEY"]
INSTALLED_APPS = {apps!r}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _database(url):
    parts = urlparse(url)
    if parts.scheme == "sqlite":
        return {{"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path}}
    if parts.scheme == "mysql":
        import pymysql

        pymysql.version_info = (2, 2, 1, "final", 0)
        pymysql.install_as_MySQLdb()
    engine = {{"postgresql": "postgresql", "mysql": "mysql"}}[parts.scheme]
    return {{"ENGINE": "django.db.backends." + engine, "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""), "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname, "PORT": str(parts.port or "")}}


DATABASES = {{"default": _database(os.environ["DATABASE_URL"])}}
'''

MANAGE_PY = '''\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

MIGRATION = '''\
from django.db import migrations, models
import django.db.models.deletion
{code}


class Migration(migrations.Migration):
    initial = {initial!r}
    dependencies = {dependencies!r}
    operations = [
{operations}
    ]
'''


ID = "('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False))"


def create_model(name: str, *fields: str, options: str = "") -> str:
    """A CreateModel operation with a BigAutoField id and the given ``(name, field)`` sources."""
    extra = f", options={options}" if options else ""
    return f"migrations.CreateModel(name={name!r}, fields=[{', '.join((ID, *fields))}]{extra})"


def add_field(model: str, name: str, field: str) -> str:
    return f"migrations.AddField(model_name={model!r}, name={name!r}, field={field})"


@dataclass
class Migration:
    """One migration file: its name, dependencies and operations as Python source."""

    name: str
    operations: list[str]
    dependencies: list[tuple[str, str]] = field(default_factory=list)
    # Module-level source before the Migration class (functions for RunPython).
    code: str = ""


def write_project(root: Path, spec: dict[str, list[Migration]]) -> Path:
    """Write manage.py, config/settings.py and one package per app; returns the project path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manage.py").write_text(MANAGE_PY)
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "__init__.py").write_text("")
    (root / "config" / "settings.py").write_text(SETTINGS.format(apps=list(spec)))
    for app, migrations in spec.items():
        package = root / app / "migrations"
        package.mkdir(parents=True, exist_ok=True)
        (root / app / "__init__.py").write_text("")
        (root / app / "models.py").write_text("")
        (package / "__init__.py").write_text("")
        for index, migration in enumerate(migrations):
            operations = "\n".join(textwrap.indent(op.strip() + ",", " " * 8)
                                   for op in migration.operations)
            dependencies = [tuple(dep) for dep in migration.dependencies]
            code = f"\n\n{textwrap.dedent(migration.code).strip()}\n" if migration.code else ""
            (package / f"{migration.name}.py").write_text(MIGRATION.format(
                initial=index == 0, dependencies=dependencies, operations=operations,
                code=code))
    return root


def make_django_venv(path: Path) -> Path:
    """A virtualenv distinct from the controller's, seeing Django through a .pth file."""
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        site = subprocess.run([str(path / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              check=True, capture_output=True, text=True).stdout.strip()
        import django

        Path(site, "slipway-test-django.pth").write_text(
            str(Path(django.__file__).resolve().parents[1]) + "\n")
    return path


def django_version(venv: Path) -> str:
    """The Django version a virtualenv's python imports."""
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import django; print(django.get_version())"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{venv}/bin/python cannot import Django:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip()


@dataclass
class App:
    """A generated project on one database, with the means to run the module and SQL on it."""

    project: Path
    venv: Path
    url: str
    vendor: str

    @property
    def environment(self) -> dict[str, str]:
        return {"SECRET_KEY": "test-secret-not-for-production", "DATABASE_URL": self.url}

    def run_module(self, check: bool = False, diff: bool = False, **args) -> dict:
        """Run slipway.django.migrations through ansible-playbook; the task's result."""
        params = {"project_path": str(self.project), "virtualenv": str(self.venv),
                  "settings": "config.settings", "environment": self.environment, **args}
        return run_playbook_task(params, check=check, diff=diff)

    def manage(self, *argv: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.environment, "DJANGO_SETTINGS_MODULE": "config.settings"}
        return subprocess.run([str(self.venv / "bin" / "python"), "manage.py", *argv],
                              cwd=self.project, env=env, capture_output=True, text=True)

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        """Run one statement on the app's database directly; rows for a SELECT."""
        connection = self._connect()
        try:
            cursor = connection.cursor()
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return [tuple(row) for row in rows]
        finally:
            connection.close()

    def recorded(self) -> set[str]:
        return {f"{app}.{name}" for app, name in
                self.sql("SELECT app, name FROM django_migrations")}

    def record(self, *migrations: str) -> None:
        """Insert django_migrations rows the way hand-written "fix" commands do."""
        code = ("from django.db import connection\n"
                "from django.db.migrations.recorder import MigrationRecorder\n"
                "recorder = MigrationRecorder(connection)\n"
                "recorder.ensure_schema()\n")
        code += "".join(f"recorder.record_applied(*{m.split('.', 1)!r})\n" for m in migrations)
        proc = self.manage("shell", "-c", code)
        assert proc.returncode == 0, proc.stderr

    def unrecord(self, migration: str) -> None:
        app, name = migration.split(".", 1)
        self.sql(f"DELETE FROM django_migrations WHERE app = {self._mark} AND name = "
                 f"{self._mark}", (app, name))

    def tables(self) -> set[str]:
        if self.vendor == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        elif self.vendor == "postgresql":
            query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        else:
            query = "SELECT table_name FROM information_schema.tables " \
                    "WHERE table_schema = DATABASE()"
        return {row[0] for row in self.sql(query)}

    def columns(self, table: str) -> set[str]:
        if self.vendor == "sqlite":
            return {row[1] for row in self.sql(f'PRAGMA table_info("{table}")')}
        schema = "'public'" if self.vendor == "postgresql" else "DATABASE()"
        return {row[0] for row in self.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            f"{self._mark} AND table_schema = {schema}", (table,))}

    @property
    def _mark(self) -> str:
        return "?" if self.vendor == "sqlite" else "%s"

    def _connect(self):
        from urllib.parse import urlparse

        parts = urlparse(self.url)
        if self.vendor == "sqlite":
            return sqlite3.connect(parts.path)
        if self.vendor == "postgresql":
            import psycopg2

            return psycopg2.connect(host=parts.hostname, port=parts.port, user=parts.username,
                                    password=parts.password, dbname=parts.path.lstrip("/"))
        import pymysql

        return pymysql.connect(host=parts.hostname, port=parts.port, user=parts.username,
                               password=parts.password, database=parts.path.lstrip("/"))


def run_playbook_task(params: dict, check: bool = False, diff: bool = False) -> dict:
    """Run the module once, as a real Ansible task under the host's python; its result."""
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": HOST_PYTHON},
             "tasks": [{"name": "Run the module", "slipway.django.migrations": params,
                        "register": "outcome", "ignore_errors": True}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", handle.name]
    argv += ["--check"] if check else []
    argv += ["--diff"] if diff else []
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    finally:
        os.unlink(handle.name)
    try:
        report = json.loads(proc.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"ansible-playbook gave no result (rc {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
