"""The release role on its own deploys an app that has no Django: a small Flask app (Flask and
gunicorn from PyPI, a requirements.txt, module:callable), released by a playbook that imports
slipway.django.release alone, with release_* variables only (no app_* variable, no app role),
end to end. ansible-playbook runs the collection's roles over podman's connection against a
systemd container of the test bed's Debian 12 image:

- provisioning with the collection's own roles: slipway.django.python (the app's system user,
  Python and venv) and slipway.django.nginx (a site for the app, in front of its slots);
- a deploy (the release role's main entry point: prepare, then release): the web server runs in a
  blue/green slot, nginx answers 200 with the app's page naming the release, the release's
  virtualenv has no Django, the release is recorded (.slipway-release.json);
- the same deploy again changes nothing;
- a changed source: a new release in the other slot, and the slot that served before stops.

Needs podman and localhost/slipway-debian12-systemd:latest (`make host image`; `make integration`
makes both), and the Debian mirror and PyPI from the container.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from ansible_task import run_playbook  # noqa: E402
from testbed_container import Container, debian_container, get, wait_for  # noqa: E402

NAME = "hello"
APP_ROOT = f"/srv/{NAME}"
# The web server's sockets, one per slot (the release role's __release_web_socket).
SOCKET = f"/run/{NAME}/web-%s.sock"

# A Flask app as a project would have it: its page names the release it runs from (the release
# directory its code was unpacked into) and says whether Django is importable; /health/ answers
# the release id for the health gate (release_health_release_field).
APP = '''
import importlib.util
import os
from pathlib import Path

from flask import Flask, jsonify

app = Flask(__name__)
RELEASE = Path(__file__).resolve().parent.name


@app.get("/")
def index():
    return jsonify(greeting=os.environ.get("GREETING", ""), version=VERSION, release=RELEASE,
                   django=importlib.util.find_spec("django") is not None)


@app.get("/health/")
def health():
    return jsonify(status="ok", release=RELEASE)
'''
REQUIREMENTS = "flask==3.1.3\ngunicorn==23.0.0\n"
# From the release's .env (release_environment).
GREETING = "hello from the release role"


def write_app(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.py").write_text(f"VERSION = {version!r}\n" + APP)
    (directory / "requirements.txt").write_text(REQUIREMENTS)
    (directory / "README.md").write_text("A tiny Flask app, deployed without the app role.\n")
    return directory


def provision_play() -> list[dict]:
    """What the release role needs on the host, from the collection's own roles."""
    return [{
        "hosts": "all",
        "gather_facts": True,
        "tasks": [
            {"name": "Provision Python and the app's user",
             "ansible.builtin.import_role": {"name": "slipway.django.python"},
             "vars": {"python_app_user": NAME, "python_app_group": NAME,
                      "python_app_home": APP_ROOT,
                      # No compiler or database client: the app's wheels are pure Python
                      # (pip: Ansible's pip module installs uv for the release's virtualenv).
                      "python_packages": ["python3", "python3-venv", "python3-pip", "acl"]}},
            {"name": "Provision nginx with a site for the app",
             "ansible.builtin.import_role": {"name": "slipway.django.nginx"},
             "vars": {"nginx_site_name": NAME, "nginx_upstream_socket": SOCKET % "blue",
                      # No static or media files served by nginx: the app has none.
                      "nginx_static_url": "", "nginx_media_url": "", "nginx_frontend_url": "",
                      "nginx_static_root": f"{APP_ROOT}/current/static",
                      "nginx_media_root": f"{APP_ROOT}/shared/media",
                      "nginx_frontend_root": f"{APP_ROOT}/current/dist",
                      "nginx_websocket": False, "nginx_strip_prefix": False}},
        ],
    }]


def release_play(source: Path, cache: Path, keep: int = 5) -> list[dict]:
    """The release role alone, with release_* variables only."""
    variables = {
        "release_keep": keep,
        "release_name": NAME,
        "release_source": str(source),
        "release_environment_name": "release-role-test",
        "release_controller_cache": str(cache),
        "release_server": "gunicorn",
        "release_wsgi_application": "hello:app",
        "release_server_workers": 1,
        "release_environment": {"GREETING": GREETING},
        "release_health_release_field": "release",
        "release_health_checks": [{"path": "/", "status": 200, "text": GREETING}],
        "release_health_retries": 15,
        "release_health_delay": 1,
    }
    assert not any(name.startswith("app_") for name in variables)
    return [{
        "hosts": "all",
        "gather_facts": True,
        "vars": variables,
        "tasks": [{"name": "Release the app",
                   "ansible.builtin.import_role": {"name": "slipway.django.release"}}],
    }]


def play(container: Container, plays: list[dict], expect_failure: bool = False) -> dict:
    report = run_playbook(plays, host=container.name, connection="containers.podman.podman",
                          extra_vars={"ansible_python_interpreter": "/usr/bin/python3"})
    stats = report["stats"][container.name]
    failed = [f"{task['task']['name']}: {result.get('msg')}"
              for run in report["plays"] for task in run["tasks"]
              for result in task["hosts"].values() if result.get("failed")
              and not result.get("ignore_errors")]
    if expect_failure:
        assert stats["failures"] > 0
        return {**stats, "failed": failed}
    assert stats["failures"] == 0 and stats["unreachable"] == 0, "\n".join(failed)
    changed = [task["task"]["name"] for run in report["plays"] for task in run["tasks"]
               if any(result.get("changed") for result in task["hosts"].values())]
    return {**stats, "changed_tasks": changed}


def live_slot(container: Container) -> str:
    return container.sh(f"readlink {APP_ROOT}/slots/live").stdout.strip()


def current_release(container: Container) -> str:
    return container.sh(f"basename \"$(readlink {APP_ROOT}/current)\"").stdout.strip()


def unit_state(container: Container, unit: str) -> str:
    return container.sh(f"systemctl is-active {unit}", check=False).stdout.strip()


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    work = tmp_path_factory.mktemp("release-role")
    with pytest.MonkeyPatch.context() as patch:
        # The runs' deploy history goes to the test's own database, not the user's.
        patch.setenv("SLIPWAY_HISTORY_DB", str(work / "history.sqlite3"))
        with debian_container("release-role", systemd=True, publish=[80]) as container:
            play(container, provision_play())
            yield container, container.port(80), work


def test_the_release_role_alone_deploys_an_app_without_django(testbed):
    container, port, work = testbed
    source = write_app(work / "src", "1")
    play(container, release_play(source, work / "cache"))

    release = current_release(container)
    slot = live_slot(container)
    assert slot in ("blue", "green")
    assert unit_state(container, f"{NAME}@{slot}.service") == "active"
    # Through nginx, from outside the container: the app of this release, with its .env.
    status, body = get(port)
    assert status == 200
    assert body == {"greeting": GREETING, "version": "1",
                    "release": release, "django": False}
    assert get(port, "/health/") == (200, {"status": "ok", "release": release})
    # The release's own virtualenv, with the app's dependencies and no Django.
    venv = f"{APP_ROOT}/releases/{release}/venv/bin/python"
    assert container.sh(f"{venv} -c 'import flask, gunicorn'", check=False).returncode == 0
    no_django = container.sh(f"{venv} -c 'import django'", check=False)
    assert no_django.returncode != 0 and "No module named 'django'" in no_django.stderr
    record = json.loads(container.sh(
        f"cat {APP_ROOT}/releases/{release}/.slipway-release.json").stdout)
    assert record["release_id"] == release and record["dependencies"] == "requirements"
    assert container.sh(f"stat -c '%a %U' {APP_ROOT}/shared/.env").stdout.split() == ["600", NAME]
    # Released: recorded as succeeded, the lock given back.
    assert container.sh(f"test -e /var/lib/slipway/{NAME}/deploy.lock",
                        check=False).returncode != 0


def test_the_same_release_again_changes_nothing(testbed):
    container, port, work = testbed
    release, slot = current_release(container), live_slot(container)
    stats = play(container, release_play(work / "src", work / "cache"))
    assert stats["changed"] == 0, stats["changed_tasks"]
    assert (current_release(container), live_slot(container)) == (release, slot)
    assert get(port)[1]["release"] == release


def test_a_changed_source_switches_to_a_new_release_and_stops_the_old_slot(testbed):
    container, port, work = testbed
    old_release, old_slot = current_release(container), live_slot(container)
    source = write_app(work / "src", "2")
    play(container, release_play(source, work / "cache"))

    release, slot = current_release(container), live_slot(container)
    assert release != old_release
    assert slot == {"blue": "green", "green": "blue"}[old_slot]
    assert unit_state(container, f"{NAME}@{slot}.service") == "active"
    status, body = get(port)
    assert (status, body["release"], body["version"], body["django"]) == (200, release, "2", False)
    # The old slot is told to stop without the deploy waiting for it: it stops once its requests
    # are done.
    wait_for(lambda: unit_state(container, f"{NAME}@{old_slot}.service") in ("inactive", "failed"),
             f"{NAME}@{old_slot}.service's stop", container, f"/var/log/{NAME}/gunicorn-error.log")
    assert unit_state(container, f"{NAME}@{old_slot}.service") == "inactive"
    # The release that served before is kept (for a rollback), recorded as succeeded.
    kept = container.sh(f"ls {APP_ROOT}/releases").stdout.split()
    assert sorted(kept) == sorted([old_release, release])


def test_a_release_that_cannot_serve_is_refused_and_the_running_one_still_serves(testbed):
    container, port, work = testbed
    release, slot = current_release(container), live_slot(container)
    source = write_app(work / "src", "3")
    with (source / "hello.py").open("a") as module:
        module.write("\nimport slipway_missing_module  # noqa: E402,F401\n")
    outcome = play(container, release_play(source, work / "cache"), expect_failure=True)
    messages = " ".join(" ".join(str(message).split()) for message in outcome["failed"])
    # Named with the variable this caller sets (release_*, not the app role's).
    assert ("gunicorn cannot serve this release: importing release_wsgi_application hello:app "
            "failed: ModuleNotFoundError: No module named 'slipway_missing_module'") in messages
    assert "the deploy lock is released" in messages
    assert (current_release(container), live_slot(container)) == (release, slot)
    assert unit_state(container, f"{NAME}@{slot}.service") == "active"
    status, body = get(port)
    assert (status, body["release"], body["version"]) == (200, release, "2")


def test_pruning_takes_old_releases_their_wheelhouses_and_the_build_caches_copies(testbed):
    container, port, work = testbed

    def wheelhouses() -> list[str]:
        return sorted(container.sh(f"ls {APP_ROOT}/shared/wheelhouse").stdout.split())

    def build_cache() -> list[str]:
        # (Beside the archives: the build's own virtualenv, buildenv-PYTHON.)
        names = container.sh(f"ls /var/cache/slipway/{NAME}/wheelhouse").stdout.split()
        return sorted(name.removesuffix(".tar") for name in names if name.endswith(".tar"))

    def wheelhouse_of(release: str) -> str:
        record = json.loads(container.sh(
            f"cat {APP_ROOT}/releases/{release}/.slipway-release.json").stdout)
        return Path(record["wheelhouse"]).name

    first = wheelhouse_of(current_release(container))
    assert first in wheelhouses() and first in build_cache()
    older = [name for name in container.sh(f"ls {APP_ROOT}/releases").stdout.split()
              if name != current_release(container)]
    releases = []
    # Each a new dependency tree (a pin more), so a new wheelhouse; keep 1: the current release
    # and the last good one stay.
    for version, pin in (("4", "markupsafe==3.0.3"), ("5", "blinker==1.9.0")):
        source = write_app(work / "src", version)
        (source / "requirements.txt").write_text(REQUIREMENTS + pin + "\n")
        play(container, release_play(source, work / "cache", keep=1))
        releases.append(current_release(container))
        assert get(port)[1]["version"] == version
    keys = [wheelhouse_of(release) for release in releases]
    assert len({first, *keys}) == 3
    assert sorted(container.sh(f"ls {APP_ROOT}/releases").stdout.split()) == sorted(releases)
    assert not set(older) & set(releases)
    assert wheelhouses() == sorted(keys)
    assert build_cache() == sorted(keys)


# The collection's namespace is slipway.django: apart from it, Django is only named in the role's
# comments and its documentation (meta/), never in anything it runs or writes.
DJANGO = re.compile(r"django|manage\.py|collectstatic", re.I)


def test_the_release_role_runs_nothing_of_django():
    checked = 0
    for path in sorted((ROOT / "roles" / "release").rglob("*")):
        if not path.is_file() or "meta" in path.relative_to(ROOT / "roles" / "release").parts:
            continue
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            code = re.sub(r"slipway\.django\b", "", line)
            assert not DJANGO.search(code), f"{path}:{number}: {line}"
            checked += 1
    assert checked > 1000
