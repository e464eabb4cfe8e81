"""The project's own file settings (tests/testbed/static_app.py hard-codes STATIC_ROOT and
MEDIA_ROOT): nginx serves the current release's STATIC_ROOT at STATIC_URL and the shared media
at MEDIA_URL, the release commands ran, and the release is root's after the switch. Then bad
deploys (real ansible-playbook runs of deploy.yml): each stops before the switch with a message
naming the setting, and the release that ran before still serves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

APP = "shop"
ROOT = f"/srv/{APP}"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
SOURCE = EPHEMERAL / "static-app"
ASSET = "static file of the static-app variant"
# A bound, not an expectation: a playbook that hangs is killed.
RUN_TIMEOUT = 900


def http_get(host, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1PATH on the host through nginx: status and body (the backend strips
    the last line break)."""
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen('http://127.0.0.1' + sys.argv[1], timeout=10)\n"
            "    print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n")
    result = host.run("python3 -c %s %s", code, path)
    assert result.rc == 0, result.stderr
    status, _, body = result.stdout.partition("\n")
    return int(status), body.rstrip("\n")


def current_release(host) -> str:
    return host.check_output(f"readlink {ROOT}/current")


def test_nginx_serves_static_url_from_the_current_releases_hard_coded_static_root(host):
    release = current_release(host)
    collected = host.file(f"{release}/static-collected/slipway-check.txt").content_string
    assert collected == ASSET
    assert host.check_output(f"readlink {release}/.slipway-static") == "static-collected"
    # Nothing was collected where slipway's STATIC_ROOT variable points.
    assert not host.file(f"{release}/static").exists
    status, body = http_get(host, "/static/slipway-check.txt")
    assert (status, body) == (200, ASSET)
    assert http_get(host, "/static/admin/css/base.css")[0] == 200


def test_the_release_command_ran_in_the_new_release_before_the_switch(host):
    release = current_release(host)
    expected = f"built by {os.path.basename(release)}"
    marker = host.file(f"{release}/static-collected/release-command.txt").content_string
    assert marker == expected
    assert http_get(host, "/static/release-command.txt") == (200, expected)


def test_the_release_is_roots_and_read_only_to_the_app_user_after_the_switch(host):
    release = current_release(host)
    not_roots = host.check_output(f"find {release} ! -user root -o ! -group root")
    assert not_roots == ""
    writable = host.check_output(f"find {release} -perm /022 ! -type l")
    assert writable == ""
    touch = host.run(f"runuser -u {APP} -- touch {release}/static-collected/x {release}/x")
    assert touch.rc != 0
    assert "Permission denied" in touch.stderr


def test_media_root_in_the_project_links_to_the_shared_media_which_nginx_serves(host):
    release = current_release(host)
    assert host.check_output(f"readlink {release}/media") == f"{ROOT}/shared/media"
    host.check_output(f"runuser -u {APP} -- sh -c 'echo upload > {ROOT}/shared/media/t.txt'")
    try:
        assert http_get(host, "/media/t.txt") == (200, "upload")
    finally:
        host.check_output(f"rm -f {ROOT}/shared/media/t.txt")


def playbook(*extra: str) -> subprocess.CompletedProcess:
    """deploy.yml on the scenario's inventory (its provisioning plays skipped)."""
    command = ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
               str(PROJECT / "playbooks" / "deploy.yml"), "--skip-tags", "provision", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=PROJECT)


def changed_source(tmp_path: Path, settings: str) -> Path:
    """The deployed project with SETTINGS appended (a new release)."""
    source = tmp_path / "static-app"
    shutil.copytree(SOURCE, source)
    path = source / "config" / "settings.py"
    path.write_text(path.read_text() + settings)
    return source


@pytest.fixture
def running(host):
    """The release that serves before a bad deploy, and its gunicorn."""
    return {"current": current_release(host),
            "pid": host.check_output(f"systemctl show --property MainPID --value {APP}.service")}


def assert_refused_without_change(host, running: dict, result, *messages: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "The deploy stopped before switching" in text, text[-3000:]
    for message in messages:
        assert re.search(message, text), text[-3000:]
    assert current_release(host) == running["current"]
    assert host.check_output(
        f"systemctl show --property MainPID --value {APP}.service") == running["pid"]
    assert http_get(host, "/admin/login/")[0] == 200
    assert http_get(host, "/static/slipway-check.txt") == (200, ASSET)
    assert not host.file(f"/var/lib/slipway/{APP}/deploy.lock").exists


def test_a_static_root_outside_the_release_is_refused(host, running, tmp_path):
    source = changed_source(tmp_path, '\nSTATIC_ROOT = "/var/www/shop-static"\n')
    result = playbook("-e", f"app_source={source}")
    assert_refused_without_change(host, running, result,
                                  r"STATIC_ROOT must be inside the release",
                                  r"settings say /var/www/shop-static")


def test_a_static_root_listed_in_staticfiles_dirs_is_refused(host, running, tmp_path):
    source = changed_source(tmp_path, "\nSTATICFILES_DIRS = [BASE_DIR / 'assets', STATIC_ROOT]\n")
    result = playbook("-e", f"app_source={source}")
    assert_refused_without_change(host, running, result,
                                  r"is also listed in STATICFILES_DIRS")


def test_a_failing_release_command_stops_the_deploy_before_the_switch(host, running, tmp_path):
    source = changed_source(tmp_path, "\n# A new release whose release command fails.\n")
    commands = '{"app_release_commands": ["check", {"shell": "echo failing >&2; exit 3"}]}'
    result = playbook("-e", f"app_source={source}", "-e", commands)
    assert_refused_without_change(host, running, result,
                                  r"Run the release commands in the new release")
