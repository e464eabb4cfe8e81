"""`slipway.django.migrations action=diagnose` next to `manage.py showmigrations`.

Generates a project of APPS apps x MIGRATIONS migrations (each app's first migration depends on
the previous app, later ones add columns or models), migrates it for real on a throw-away
PostgreSQL server (or SQLite), then times, REPEAT times each and on the same database:

- showmigrations:  `python manage.py showmigrations` in the project's virtualenv;
- helper:          the module's helper alone (`python -c <helper>`, action=diagnose), which is
                   what the module runs on the host;
- module:          the whole module through `ansible-playbook` (adds Ansible's own start-up);
- ansible_ping:    the same play running ansible.builtin.ping: Ansible's fixed start-up cost.

Usage: .venv/bin/python benchmarks/migrations_diagnose.py [--apps 50] [--migrations 20]
       [--repeat 5] [--vendor postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "integration" / "migrations"))

from django_project import (  # noqa: E402
    HOST_PYTHON,
    VENV_BIN,
    App,
    Migration,
    add_field,
    create_model,
    make_django_venv,
    write_project,
)

HELPER = REPO / "plugins" / "module_utils" / "django_migrations_helper.py"


def project_spec(apps: int, migrations: int) -> dict[str, list[Migration]]:
    spec = {}
    for number in range(apps):
        app = f"app{number:02d}"
        first_deps = [(f"app{number - 1:02d}", "0001_initial")] if number else []
        fields = ["('name', models.CharField(max_length=50))"]
        if number:
            fields.append(f"('parent', models.ForeignKey(on_delete=django.db.models.deletion."
                          f"CASCADE, to='app{number - 1:02d}.item'))")
        chain = [Migration("0001_initial", [create_model("Item", *fields)], first_deps)]
        for step in range(2, migrations + 1):
            previous = (app, chain[-1].name)
            if step % 5 == 0:
                name = f"{step:04d}_thing{step}"
                operation = create_model(f"Thing{step}", "('size', models.IntegerField())")
            else:
                name = f"{step:04d}_item_field{step}"
                operation = add_field("item", f"field{step}",
                                      "models.IntegerField(default=0)")
            chain.append(Migration(name, [operation], [previous]))
        spec[app] = chain
    return spec


def timed(argv: list[str], env: dict, cwd: Path, stdin: str | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, input=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def ansible_ping_argv(work: Path) -> tuple[list[str], dict]:
    """ansible-playbook running ping on localhost with the module's interpreter."""
    play = work / "ping.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                 "vars": {"ansible_python_interpreter": HOST_PYTHON},
                                 "tasks": [{"name": "Ping", "ansible.builtin.ping": {}}]}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_LOCALHOST_WARNING": "0"}
    return [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
            str(play)], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--vendor", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="slipway-bench-")))
        if args.vendor == "postgresql":
            import psycopg2
            from dbservers import postgresql_server

            server = stack.enter_context(postgresql_server())
            admin = psycopg2.connect(host=server.host, port=server.port, user=server.user,
                                     password=server.password, dbname="postgres")
            admin.autocommit = True
            admin.cursor().execute("CREATE DATABASE bench")
            admin.close()
            url = server.url("bench")
        else:
            url = f"sqlite:///{work}/db.sqlite3"
        project = write_project(work / "project", project_spec(args.apps, args.migrations))
        app = App(project, make_django_venv(work / "venv"), url, args.vendor)
        started = time.perf_counter()
        migrated = app.manage("migrate")
        if migrated.returncode != 0:
            raise SystemExit(migrated.stderr[-3000:])
        print(f"{args.apps} apps x {args.migrations} migrations on {args.vendor}: migrated in "
              f"{time.perf_counter() - started:.1f}s", flush=True)

        env = {**os.environ, **app.environment, "DJANGO_SETTINGS_MODULE": "config.settings"}
        python = str(app.venv / "bin" / "python")
        request = json.dumps({"project_path": str(project), "action": "diagnose"})
        source = HELPER.read_text()
        answer = subprocess.run([python, "-c", source], input=request, env=env, cwd=project,
                                capture_output=True, text=True)
        report = json.loads(answer.stdout)
        assert not report.get("failed"), report
        assert not report["plan"] and not report["drift"], "a migrated project needs no repair"

        ping_argv, ping_env = ansible_ping_argv(work)
        runs = {"showmigrations": [], "helper": [], "module": [], "ansible_ping": []}
        for _ in range(args.repeat):
            runs["showmigrations"].append(timed([python, "manage.py", "showmigrations"], env,
                                                project))
            runs["helper"].append(timed([python, "-c", source], env, project, request))
            started = time.perf_counter()
            result = app.run_module(action="diagnose")
            runs["module"].append(time.perf_counter() - started)
            assert not result.get("failed"), result.get("msg")
            runs["ansible_ping"].append(timed(ping_argv, ping_env, REPO))

    base = statistics.median(runs["showmigrations"])
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"{name:15s} median {median:6.2f}s  (min {min(values):.2f}s, "
              f"{len(values)} runs)  {median / base:4.2f}x showmigrations")


if __name__ == "__main__":
    main()
