"""Notifications of real ansible-playbook runs (slipway_notifications in the inventory), sent by
the deploy_history callback to a receiver on 127.0.0.1 that checks the webhook's signature:
exactly the expected messages for a run that succeeds, fails or is cancelled; none for check
mode; an unreachable receiver never fails a run; no secret reaches a message."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from deploy_history_helpers import ROOT, VENV_BIN, Project, closed_port, new_run_uuid, wait_for_log
from notify_receiver import Receiver
from test_deploy_history_playbooks import FAILING, PUBLISHING, SLOW

SECRET = "whsec-notify-test-0123"
DB_PASSWORD = "db-pass-never-in-a-message-42"


@pytest.fixture
def receiver():
    server = Receiver(SECRET)
    yield server
    server.close()


def project_for(tmp_path, url: str, events: list[str]) -> Project:
    return Project(tmp_path / "project", str(tmp_path / "history.sqlite3"), group_vars={
        "slipway_environment": "production",
        "app_db_password": DB_PASSWORD,
        "notify_secret": SECRET,
        "slipway_notifications": [{"type": "webhook", "url": url,
                                   "secret": "{{ notify_secret }}", "events": events}],
    })


def test_a_run_that_succeeds_sends_started_then_succeeded(tmp_path, receiver):
    project = project_for(tmp_path, receiver.url, ["started", "succeeded", "failed"])

    result = project.run(project.playbook("deploy", PUBLISHING))

    assert result.returncode == 0, result.stdout + result.stderr
    assert receiver.bad_signatures == 0
    assert receiver.events() == ["started", "succeeded"]
    done = receiver.deliveries[1]
    assert (done["environment"], done["who"], done["playbook"]) == (
        "production", "alice", "deploy.yml")
    assert (done["release"], done["commit"], done["branch"], done["app"]) == (
        "r20260101", "0123456789abcdef0123456789abcdef01234567", "main", "shop")
    assert isinstance(done["duration_seconds"], int)
    log = project.only_run()["logs"]
    assert f"notification succeeded -> webhook {receiver.url}: delivered (HTTP 204)" in log
    assert SECRET not in log


def test_a_run_that_fails_sends_failed_with_its_error_and_no_secret(tmp_path, receiver):
    project = project_for(tmp_path, receiver.url, ["failed"])
    failing = FAILING.replace('"the release is broken on {{ inventory_hostname }}"',
                              '"the database refused {{ app_db_password }} on '
                              '{{ inventory_hostname }}"')

    result = project.run(project.playbook("deploy", failing))

    assert result.returncode == 2
    assert receiver.events() == ["failed"]
    detail = receiver.deliveries[0]["detail"]
    assert "the database refused" in detail and "on web2" in detail
    assert DB_PASSWORD not in json.dumps(receiver.deliveries)


def test_a_cancelled_run_sends_cancelled(tmp_path, receiver):
    project = project_for(tmp_path, receiver.url, ["cancelled", "failed", "succeeded"])
    run_uuid = new_run_uuid()
    process = project.start(project.playbook("slow", SLOW), run_uuid)
    wait_for_log(project, run_uuid, "TASK [Wait for the operator]")

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    assert receiver.events() == ["cancelled"]


def test_check_mode_sends_nothing(tmp_path, receiver):
    project = project_for(tmp_path, receiver.url, ["started", "succeeded"])

    result = project.run(project.playbook("deploy", PUBLISHING), "--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert receiver.deliveries == []


def test_an_unreachable_receiver_never_fails_the_run(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/hooks/deploy"
    project = project_for(tmp_path, url, ["succeeded"])

    result = project.run(project.playbook("deploy", PUBLISHING))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT delivered after 2 attempts" in " ".join(result.stderr.split())
    log = project.only_run()["logs"]
    assert f"notification succeeded -> webhook {url}: NOT delivered after 2 attempts" in log


def test_a_bad_configuration_is_a_warning_not_a_failure(tmp_path):
    project = Project(tmp_path / "project", str(tmp_path / "history.sqlite3"), group_vars={
        "slipway_notifications": [{"type": "teams", "url": "https://example.invalid/x"}]})

    result = project.run(project.playbook("deploy", PUBLISHING))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no notification is sent: slipway_notifications[0]: type must be one of" \
        in " ".join(result.stderr.split())


def notify_project(tmp_path, url: str) -> Project:
    """The collection's playbooks/notify.yml on an inventory whose webhook secret is vaulted."""
    project = Project(tmp_path / "project", str(tmp_path / "history.sqlite3"),
                      extra_hosts="[app:children]\nweb\n", group_vars={
                          "slipway_notifications": [{"type": "webhook", "url": url,
                                                     "secret": "{{ notify_secret }}",
                                                     "events": ["approval_needed"]}]})
    project.vault_password = tmp_path / "vault-password"
    project.vault_password.write_text("vault-pass-for-the-test\n")
    project.vault_password.chmod(0o600)
    vaulted = subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(project.vault_password), "--name", "notify_secret", SECRET],
        capture_output=True, text=True, check=True, timeout=60).stdout
    (project.inventory.parent / "group_vars" / "web.yml").write_text("---\n" + vaulted)
    return project


def run_notify(project: Project) -> subprocess.CompletedProcess:
    return project.run(ROOT / "playbooks" / "notify.yml", "--vault-password-file",
                       str(project.vault_password), "-e", json.dumps({
                           "slipway_notify_event": "approval_needed",
                           "slipway_notify_environment": "production",
                           "slipway_notify_who": "alice", "slipway_notify_branch": "main",
                           "slipway_notify_detail": "deploy of main waits for approval 3"}))


def test_the_notify_playbook_sends_one_event_with_a_vaulted_secret(tmp_path, receiver):
    project = notify_project(tmp_path, receiver.url)

    result = run_notify(project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert receiver.bad_signatures == 0
    assert receiver.events() == ["approval_needed"]
    message = receiver.deliveries[0]
    assert (message["environment"], message["who"], message["branch"], message["detail"]) == (
        "production", "alice", "main", "deploy of main waits for approval 3")
    assert SECRET not in result.stdout + result.stderr


def test_the_notify_playbook_does_not_fail_when_the_receiver_is_down(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/hooks/deploy"
    project = notify_project(tmp_path, url)

    result = run_notify(project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT delivered after 2 attempts" in " ".join((result.stdout + result.stderr).split())
