"""The project's own file settings, after test_realdjango.py (v2 serves): the release is root's
and read-only to the app after the switch, the release command's output (compress) is served,
and bad deploys each stop before the switch with a message naming the setting, while the
release that ran before still serves, with the same gunicorn.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_realdjango import (
    APP,
    ROOT,
    SOURCES,
    current_release,
    deploy,
    fetch,
    plain,
)


def changed_source(tmp_path: Path, settings: str) -> Path:
    """v2 of the project with SETTINGS appended to its settings module (a new release)."""
    source = tmp_path / "uptime"
    shutil.copytree(SOURCES / "v2", source)
    path = source / "uptime" / "settings.py"
    path.write_text(path.read_text() + settings)
    return source


def main_pid(host) -> str:
    """The MainPID of the web server in the slot that serves."""
    unit = f"{APP}@{host.check_output(f'readlink /srv/{APP}/slots/live')}.service"
    return host.check_output(f"systemctl show --property MainPID --value {unit}")


@pytest.fixture
def running(host) -> dict:
    """The release that serves before a bad deploy, and its gunicorn."""
    return {"current": current_release(host), "pid": main_pid(host)}


def assert_refused_without_change(host, running: dict, result, *messages: str) -> None:
    text = plain(result)
    assert result.returncode != 0, text[-3000:]
    assert "The deploy stopped before switching" in text, text[-3000:]
    for message in messages:
        assert re.search(message, text), text[-3000:]
    assert current_release(host) == running["current"]
    assert main_pid(host) == running["pid"]
    assert fetch(host, "/")["status"] == 200
    assert fetch(host, "/static/admin/css/base.css")["status"] == 200
    assert not host.file(f"/var/lib/slipway/{APP}/deploy.lock").exists


def test_the_release_is_roots_and_read_only_to_the_app_user_after_the_switch(host):
    release = current_release(host)
    assert host.check_output(f"readlink {release}/.slipway-static") == "static-collected"
    # Nothing was collected where slipway's own STATIC_ROOT variable points.
    assert not host.file(f"{release}/static").exists
    # compress (app_release_commands) wrote its bundles into the project's STATIC_ROOT.
    assert host.file(f"{release}/static-collected/CACHE/manifest.json").exists
    assert host.check_output(f"find {release} ! -user root -o ! -group root") == ""
    assert host.check_output(f"find {release} -perm /022 ! -type l") == ""
    touch = host.run(f"runuser -u {APP} -- touch {release}/static-collected/x {release}/x")
    assert touch.rc != 0
    assert "Permission denied" in touch.stderr


def test_a_static_root_outside_the_release_is_refused(host, running, tmp_path):
    source = changed_source(tmp_path, '\nSTATIC_ROOT = "/var/www/uptime-static"\n')
    result = deploy("--skip-tags", "provision", "-e", f"app_source={source}")
    assert_refused_without_change(host, running, result,
                                  r"STATIC_ROOT must be inside the release",
                                  r"settings say /var/www/uptime-static")


def test_a_static_root_listed_in_staticfiles_dirs_is_refused(host, running, tmp_path):
    source = changed_source(tmp_path, "\nSTATICFILES_DIRS = [BASE_DIR / 'assets', STATIC_ROOT]\n")
    result = deploy("--skip-tags", "provision", "-e", f"app_source={source}")
    assert_refused_without_change(host, running, result, r"is also listed in STATICFILES_DIRS")


def test_a_failing_release_command_stops_the_deploy_before_the_switch(host, running, tmp_path):
    source = changed_source(tmp_path, "\n# A new release whose release command fails.\n")
    commands = '{"app_release_commands": ["compress", {"shell": "echo failing >&2; exit 3"}]}'
    result = deploy("--skip-tags", "provision", "-e", f"app_source={source}", "-e", commands)
    assert_refused_without_change(host, running, result,
                                  r"Run the release commands in the new release")



def test_media_root_in_the_project_links_to_the_shared_media_which_nginx_serves(host):
    release = current_release(host)
    assert host.check_output(f"readlink {release}/media") == f"{ROOT}/shared/media"
    host.check_output(f"runuser -u {APP} -- sh -c 'echo upload > {ROOT}/shared/media/t.txt'")
    try:
        answer = fetch(host, "/media/t.txt")
        assert (answer["status"], answer["body"]) == (200, "upload\n")
    finally:
        host.check_output(f"rm -f {ROOT}/shared/media/t.txt")
