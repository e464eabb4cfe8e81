"""Generate a Django project the way its users build one, in three versions, from PyPI.

    python tests/testbed/real_django_project.py OUTDIR

OUTDIR/v1       `django-admin startproject uptime` of the newest Django 5.2 LTS, two apps from
                `startapp` and the edits of a real project: settings from the environment with
                django-environ (`env.db()` reads DATABASE_URL), a hard-coded
                STATIC_ROOT = BASE_DIR / "static-collected", STATICFILES_DIRS with a CSS and a JS
                asset, django-compressor with offline compression, a custom user model that
                logs in by email (`accounts`), and `monitor`: a home page at / (a template with
                {% compress %} and a database query), a database-only /status/ and the
                management command `sendalerts`, which runs until SIGTERM and writes a heartbeat
                row. requirements.txt is `pip freeze` of what it installs: no gunicorn.
OUTDIR/v2       v1 with a visible change on the home page and in its CSS, and a new migration.
OUTDIR/broken   v2 whose pages answer 500 (a mistyped URL name in the home page's template),
                while `check`, `compress` and the database-only /status/ still pass.
OUTDIR/realdjango.json  the Django and Python versions, and the login field of the user model.

Nothing in it is written for slipway. Each version is checked here before it is written, in the
throw-away virtualenv, on SQLite: `check`, `migrate`, `collectstatic`, `compress`, and what
Django's test client gets from /, /status/ and /admin/login/.
Django 5.2 runs on Python 3.10 to 3.14: this script's Python generates it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT_NAME = "uptime"
REQUIREMENTS = ["Django>=5.2,<5.3", "django-compressor>=4.5", "django-environ>=0.12",
                "psycopg[binary]>=3.2", "redis>=5"]
V1_HEADING = "Uptime monitor"
V2_HEADING = "Status overview"

# (pattern in the generated settings.py, what the project's author writes instead)
SETTINGS_EDITS = [
    (r"^from pathlib import Path$",
     "from pathlib import Path\n\nimport environ\n\nenv = environ.Env()"),
    (r"^(BASE_DIR = Path\(__file__\)\.resolve\(\)\.parent\.parent)$",
     "\\1\n\n# A .env file for development; in production the environment is set.\n"
     'environ.Env.read_env(BASE_DIR / ".env")'),
    (r"^SECRET_KEY = .*$", 'SECRET_KEY = env("SECRET_KEY")'),
    (r"^DEBUG = True$", 'DEBUG = env.bool("DEBUG", default=False)'),
    (r"^ALLOWED_HOSTS = \[\]$", 'ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])'),
    (r"^(    (['\"])django\.contrib\.staticfiles\2,)$",
     "\\1\n    \\2compressor\\2,\n    \\2accounts\\2,\n    \\2monitor\\2,"),
    (r"^        (['\"])DIRS\1: \[\],$", "        \\1DIRS\\1: [BASE_DIR / \\1templates\\1],"),
    (r"^DATABASES = \{\n(?:    .*\n)*\}$",
     'DATABASES = {\n    "default": env.db(),\n}\n\n'
     'CACHES = {\n    "default": env.cache("REDIS_URL", default="locmemcache://"),\n}'),
    (r"^(STATIC_URL = (['\"])static/\2)$",
     "\\1\n"
     'STATIC_ROOT = BASE_DIR / "static-collected"\n'
     'STATICFILES_DIRS = [BASE_DIR / "assets"]\n'
     'MEDIA_URL = "media/"\n'
     'MEDIA_ROOT = BASE_DIR / "media"\n'
     "STATICFILES_FINDERS = [\n"
     '    "django.contrib.staticfiles.finders.FileSystemFinder",\n'
     '    "django.contrib.staticfiles.finders.AppDirectoriesFinder",\n'
     '    "compressor.finders.CompressorFinder",\n'
     "]\n\n"
     "# django-compressor: bundles made at deploy time by `manage.py compress`.\n"
     "COMPRESS_ENABLED = True\n"
     "COMPRESS_OFFLINE = True"),
]
SETTINGS_APPENDED = """
AUTH_USER_MODEL = "accounts.User"

# Behind a proxy that terminates TLS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
"""
URLS_EDITS = [
    (r"^from django\.urls import path$", "from django.urls import include, path"),
    (r"^(    path\((['\"])admin/\2, admin\.site\.urls\),)$",
     "\\1\n    path(\\2\\2, include(\\2monitor.urls\\2)),"),
]

V1_FILES = {
    ".gitignore": """\
        .env
        db.sqlite3
        static-collected/
        __pycache__/
        """,
    ".env.example": """\
        # Copy to .env for development.
        DEBUG=True
        SECRET_KEY=change-me
        ALLOWED_HOSTS=localhost,127.0.0.1
        DATABASE_URL=postgres://uptime:uptime@localhost:5432/uptime
        REDIS_URL=redis://localhost:6379/0
        """,
    "accounts/models.py": '''\
        from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
        from django.db import models
        from django.utils import timezone


        class UserManager(BaseUserManager):
            use_in_migrations = True

            def _create_user(self, email, password, **extra_fields):
                if not email:
                    raise ValueError("Users must have an email address")
                user = self.model(email=self.normalize_email(email), **extra_fields)
                user.set_password(password)
                user.save(using=self._db)
                return user

            def create_user(self, email, password=None, **extra_fields):
                extra_fields.setdefault("is_staff", False)
                extra_fields.setdefault("is_superuser", False)
                return self._create_user(email, password, **extra_fields)

            def create_superuser(self, email, password, **extra_fields):
                extra_fields.setdefault("is_staff", True)
                extra_fields.setdefault("is_superuser", True)
                if extra_fields["is_staff"] is not True or extra_fields["is_superuser"] is not True:
                    raise ValueError("A superuser must have is_staff=True and is_superuser=True")
                return self._create_user(email, password, **extra_fields)


        class User(AbstractBaseUser, PermissionsMixin):
            email = models.EmailField("email address", unique=True)
            full_name = models.CharField(max_length=150, blank=True)
            is_staff = models.BooleanField(default=False)
            is_active = models.BooleanField(default=True)
            date_joined = models.DateTimeField(default=timezone.now)

            objects = UserManager()

            USERNAME_FIELD = "email"
            EMAIL_FIELD = "email"
            REQUIRED_FIELDS = []

            def __str__(self):
                return self.email
        ''',
    "accounts/admin.py": """\
        from django.contrib import admin

        from .models import User


        @admin.register(User)
        class UserAdmin(admin.ModelAdmin):
            list_display = ["email", "full_name", "is_staff", "is_active"]
            search_fields = ["email", "full_name"]
            ordering = ["email"]
        """,
    "monitor/models.py": """\
        from django.db import models


        class Check(models.Model):
            name = models.CharField(max_length=100, unique=True)
            url = models.URLField()
            last_status = models.PositiveSmallIntegerField(null=True, blank=True)
            last_checked = models.DateTimeField(null=True, blank=True)

            def __str__(self):
                return self.name

            @property
            def is_down(self):
                return self.last_status is not None and self.last_status >= 500


        class Heartbeat(models.Model):
            worker = models.CharField(max_length=100, unique=True)
            pid = models.PositiveIntegerField()
            beat_at = models.DateTimeField()

            def __str__(self):
                return f"{self.worker} ({self.pid})"
        """,
    "monitor/admin.py": """\
        from django.contrib import admin

        from .models import Check, Heartbeat

        admin.site.register(Check)
        admin.site.register(Heartbeat)
        """,
    "monitor/views.py": """\
        from django.db import connection
        from django.http import JsonResponse
        from django.shortcuts import render

        from .models import Check


        def home(request):
            checks = Check.objects.order_by("name")
            return render(request, "monitor/home.html", {"checks": checks})


        def status(request):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return JsonResponse({"status": "ok", "checks": Check.objects.count()})
        """,
    "monitor/urls.py": """\
        from django.urls import path

        from . import views

        app_name = "monitor"
        urlpatterns = [
            path("", views.home, name="home"),
            path("status/", views.status, name="status"),
        ]
        """,
    "monitor/management/__init__.py": "",
    "monitor/management/commands/__init__.py": "",
    "monitor/management/commands/sendalerts.py": '''\
        import os
        import signal
        import threading

        from django.core.management.base import BaseCommand
        from django.db import close_old_connections
        from django.utils import timezone

        from monitor.models import Check, Heartbeat


        class Command(BaseCommand):
            help = "Watch the checks and send alerts for those that are down; runs until SIGTERM."

            def add_arguments(self, parser):
                parser.add_argument("--interval", type=float, default=5.0,
                                    help="seconds between two rounds")

            def handle(self, *args, interval, **options):
                self.stopping = threading.Event()
                signal.signal(signal.SIGTERM, self.stop)
                signal.signal(signal.SIGINT, self.stop)
                self.stdout.write(f"sendalerts started (pid {os.getpid()})")
                while not self.stopping.is_set():
                    close_old_connections()
                    Heartbeat.objects.update_or_create(
                        worker="sendalerts",
                        defaults={"pid": os.getpid(), "beat_at": timezone.now()})
                    for check in Check.objects.all():
                        if check.is_down:
                            self.stdout.write(f"ALERT: {check.name} answers {check.last_status}")
                    self.stopping.wait(interval)
                self.stdout.write("sendalerts stopped")

            def stop(self, signum, frame):
                self.stopping.set()
        ''',
    "templates/base.html": """\
        {% load static compress %}<!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <title>{% block title %}Uptime{% endblock %}</title>
          {% compress css %}
          <link rel="stylesheet" href="{% static 'css/site.css' %}">
          {% endcompress %}
        </head>
        <body>
          {% block content %}{% endblock %}
          {% compress js %}
          <script src="{% static 'js/site.js' %}"></script>
          {% endcompress %}
        </body>
        </html>
        """,
    "monitor/templates/monitor/home.html": f"""\
        {{% extends "base.html" %}}
        {{% block content %}}
        <h1>{V1_HEADING}</h1>
        <ul class="checks">
          {{% for check in checks %}}
          <li class="{{% if check.is_down %}}down{{% endif %}}">{{{{ check.name }}}}</li>
          {{% empty %}}
          <li>No checks yet.</li>
          {{% endfor %}}
        </ul>
        <p><a href="{{% url 'monitor:status' %}}">Status</a></p>
        {{% endblock %}}
        """,
    "assets/css/site.css": """\
        body {
            font-family: system-ui, sans-serif;
            margin: 2rem auto;
            max-width: 40rem;
        }

        .checks .down {
            color: #b00020;
        }
        """,
    "assets/js/site.js": """\
        document.addEventListener("DOMContentLoaded", function () {
            document.body.classList.add("js-ready");
        });
        """,
}

# Version 2: a new field shown on the home page (its migration made by makemigrations), a new
# heading and a new CSS rule.
V2_EDITS = {
    "monitor/models.py": [
        ("    last_checked = models.DateTimeField(null=True, blank=True)\n",
         "    last_checked = models.DateTimeField(null=True, blank=True)\n"
         '    description = models.TextField(blank=True, default="")\n'),
    ],
    "monitor/templates/monitor/home.html": [
        (f"<h1>{V1_HEADING}</h1>", f"<h1>{V2_HEADING}</h1>"),
        ("{{ check.name }}</li>", "{{ check.name }} <small>{{ check.description }}</small></li>"),
    ],
    "assets/css/site.css": [
        ("    color: #b00020;\n}\n",
         "    color: #b00020;\n}\n\n.checks small {\n    color: #555;\n}\n"),
    ],
}
# The broken version: a typo in a URL name, which only rendering the page finds.
BROKEN_EDITS = {
    "monitor/templates/monitor/home.html": [
        ("{% url 'monitor:status' %}", "{% url 'monitor:statuss' %}"),
    ],
}

# What each version must answer on Django's test client (path: status, text in the body).
EXPECTED = {
    "v1": {"/": (200, V1_HEADING), "/status/": (200, '"status": "ok"'),
           "/admin/login/": (200, "Email address")},
    "v2": {"/": (200, V2_HEADING), "/status/": (200, '"status": "ok"'),
           "/admin/login/": (200, "Email address")},
    "broken": {"/": (500, ""), "/status/": (200, '"status": "ok"')},
}
PROBE = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
answers = {}
for path in sys.argv[1:]:
    response = client.get(path)
    answers[path] = [response.status_code, response.content.decode()]
print(json.dumps(answers))
"""


def dedent_files(files: dict[str, str]) -> dict[str, str]:
    return {name: textwrap.dedent(content) for name, content in files.items()}


def substitute(path: Path, edits: list[tuple[str, str]], regex: bool) -> None:
    text = path.read_text()
    for old, new in edits:
        if regex:
            text, count = re.subn(old, new, text, flags=re.MULTILINE)
        else:
            count = text.count(old)
            text = text.replace(old, new)
        if count != 1:
            raise SystemExit(f"{path}: expected one match of {old!r}, found {count}: "
                             "the generated file changed; update this script")
    path.write_text(text)


def write_files(project: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(content)


def development_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "SECRET_KEY": "generator-only-" + "x" * 40, "DEBUG": "False",
            "ALLOWED_HOSTS": "testserver", "DATABASE_URL": f"sqlite:///{workdir}/db.sqlite3",
            "DJANGO_SETTINGS_MODULE": f"{PROJECT_NAME}.settings"}


def manage(venv: Path, project: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(venv / "bin" / "python"), "manage.py", *args], cwd=project,
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{project.name}: manage.py {' '.join(args)} failed:\n"
                         f"{result.stdout}{result.stderr}")
    return result.stdout


def make_v1(venv: Path, project: Path, env: dict[str, str]) -> None:
    project.mkdir(parents=True)
    subprocess.run([str(venv / "bin" / "django-admin"), "startproject", PROJECT_NAME,
                    str(project)], check=True)
    for app in ("accounts", "monitor"):
        manage(venv, project, env, "startapp", app)
    substitute(project / PROJECT_NAME / "settings.py", SETTINGS_EDITS, regex=True)
    with (project / PROJECT_NAME / "settings.py").open("a") as settings:
        settings.write(SETTINGS_APPENDED)
    substitute(project / PROJECT_NAME / "urls.py", URLS_EDITS, regex=True)
    write_files(project, dedent_files(V1_FILES))
    freeze = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    (project / "requirements.txt").write_text(freeze)
    manage(venv, project, env, "makemigrations", "accounts", "monitor")


def derive(venv: Path, source: Path, project: Path, env: dict[str, str],
           edits: dict[str, list[tuple[str, str]]], migrate: bool) -> None:
    shutil.copytree(source, project, ignore=shutil.ignore_patterns("__pycache__"))
    for name, replacements in edits.items():
        substitute(project / name, replacements, regex=False)
    if migrate:
        manage(venv, project, env, "makemigrations", "monitor")


def verify(venv: Path, project: Path, expected: dict[str, tuple[int, str]]) -> None:
    """The version's own deploy steps and pages, in a copy on SQLite."""
    with tempfile.TemporaryDirectory(prefix="realdjango-check-") as work:
        copy = Path(work) / project.name
        shutil.copytree(project, copy)
        env = development_env(Path(work))
        manage(venv, copy, env, "check")
        manage(venv, copy, env, "migrate", "--noinput")
        manage(venv, copy, env, "collectstatic", "--noinput")
        manage(venv, copy, env, "compress")
        answers = json.loads(subprocess.run(
            [str(venv / "bin" / "python"), "-c", PROBE, *expected], cwd=copy, env=env,
            capture_output=True, text=True, check=True).stdout)
    for path, (status, text) in expected.items():
        got_status, body = answers[path]
        if got_status != status or text not in body:
            raise SystemExit(f"{project.name}: {path} answered {got_status} (expected {status} "
                             f"with {text!r}):\n{body[:2000]}")


def generate(outdir: Path) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    for name in EXPECTED:
        shutil.rmtree(outdir / name, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="realdjango-venv-") as work:
        venv = Path(work) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                        "--disable-pip-version-check", *REQUIREMENTS], check=True)
        env = development_env(Path(work))
        make_v1(venv, outdir / "v1", env)
        derive(venv, outdir / "v1", outdir / "v2", env, V2_EDITS, migrate=True)
        derive(venv, outdir / "v2", outdir / "broken", env, BROKEN_EDITS, migrate=False)
        for name, expected in EXPECTED.items():
            verify(venv, outdir / name, expected)
        facts = json.loads(subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import django, json, platform; print(json.dumps("
             "{'django': django.get_version(), 'python': platform.python_version()}))"],
            capture_output=True, text=True, check=True).stdout)
    for name in EXPECTED:
        for cache in (outdir / name).rglob("__pycache__"):
            shutil.rmtree(cache)
    facts["v2_migration"] = sorted(
        path.stem for path in (outdir / "v2" / "monitor" / "migrations").glob("0002_*.py"))[0]
    facts["headings"] = {"v1": V1_HEADING, "v2": V2_HEADING}
    (outdir / "realdjango.json").write_text(json.dumps(facts) + "\n")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    print(json.dumps(generate(parser.parse_args().outdir)))


if __name__ == "__main__":
    main()
