"""Issue 11, hole 1: a template typed into a console field must never run on the console host.

Written as the attack: a deployer limited to staging types
``{{ lookup('pipe', 'touch ...') }}`` into the branch, the description and the release of a
rollback, against a real console whose stand-in playbooks use all three values in templated
tasks. The marker file must never appear, and the values must reach the playbook as text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from console_helpers import PLAYBOOKS, ROOT, VENV_BIN

sys.path.insert(0, str(ROOT / "src"))

from slipway.console.config import load_config  # noqa: E402
from slipway.console.db import ConsoleDB  # noqa: E402
from slipway.console.runs import RunManager  # noqa: E402


def attack(marker: Path) -> str:
    """The template the issue reported: it creates ``marker`` wherever Ansible renders it."""
    return "{{ lookup('pipe', 'touch${IFS}" + str(marker) + "') }}"


def test_the_attack_works_when_ansible_is_given_the_value_as_a_plain_extra_var(site, tmp_path):
    """The control: the same value given to ansible-playbook as an ordinary extra var runs the
    command. Without this, the tests below could pass because the template was wrong."""
    marker = tmp_path / "PWNED-control"
    inventory = site.root / "inventories" / "staging"
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / "deploy.yml"),
         "-e", json.dumps({"deploy_description": attack(marker), "app_version": "main"})],
        capture_output=True, text=True, env=site.env() | {"ANSIBLE_CONFIG": str(
            ROOT / "ansible.cfg")}, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()


def test_a_template_in_the_description_is_recorded_as_text_and_never_runs(site, tmp_path):
    marker = tmp_path / "PWNED-description"
    description = "hotfix " + attack(marker)
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/trigger", json={
            "environment": "staging", "branch": "main", "description": description})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    run = site.wait_for(run_id)
    assert run["status"] == "success", run
    assert not marker.exists()
    uuid = site.store().get_run(run_id)["run_uuid"]
    recorded = json.loads((site.output / f"deploy-{uuid}.json").read_text())
    assert recorded["description"] == description
    assert site.store().get_run(run_id)["description"] == description


@pytest.mark.parametrize(("template", "named"), [
    ("{{lookup('pipe','touch${IFS}MARKER')}}", "'{'"),
    ("main$(touch MARKER)", "'$'"),
    ("main'quote", "\"'\""),
    ("100%", "'%'"),
    ("naïve", "'ï'"),
])
def test_a_branch_outside_what_git_refs_use_is_a_422_naming_the_character(
        site, tmp_path, template, named):
    marker = tmp_path / "PWNED-branch"
    before = len(site.runs())
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/trigger", json={
            "environment": "staging", "branch": template.replace("MARKER", str(marker))})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("malformed branch name")
    assert named in detail
    assert len(site.runs()) == before
    assert not marker.exists()


def test_a_template_in_a_rollback_release_is_refused(site, tmp_path):
    marker = tmp_path / "PWNED-release"
    before = len(site.runs())
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/rollback", json={
            "environment": "staging", "release": attack(marker)})
    assert response.status_code == 422
    assert "malformed release id" in response.json()["detail"]
    assert len(site.runs()) == before
    assert not marker.exists()


def test_values_that_pass_no_check_still_reach_the_playbook_as_data(site, tmp_path):
    """Below the API's checks: the run manager itself hands every value to Ansible as
    ``!unsafe`` data, so a field added later without a check is not a hole."""
    config = load_config(site.config)
    manager = RunManager(config, ConsoleDB(config.console_db))
    marker = tmp_path / "PWNED-runner"
    branch = attack(marker)
    job = manager.start(config.environments["staging"], "deploy", "alice", branch=branch,
                        description=attack(marker), check_busy=False)
    assert job.done.wait(120)
    assert job.rc == 0
    assert not marker.exists()
    recorded = json.loads((site.output / f"deploy-{job.run_uuid}.json").read_text())
    assert recorded == {"app_version": branch, "description": attack(marker)}
    # ansible-runner's private directory held the run's environment: gone once the run ended.
    assert not (config.work_dir() / job.run_uuid).exists()
    assert not os.path.exists(marker)
