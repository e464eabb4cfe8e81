"""Issue 16: deploys on a push. A real console, with the webhook of staging (and of production,
which needs approvals) configured, answers what GitHub, GitLab, Gitea and Forgejo send."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import ROOT, Site

sys.path.insert(0, str(ROOT / "src"))

from slipway.console.config import ConfigError, load_config  # noqa: E402

SECRET = "s3cret-shared-with-the-forge"
WEBHOOK = ("webhook:", "  secret_file: webhook-secret", "  branches: [main, 'release/*']")


def write_secret(root: Path, secret: str = SECRET, mode: int = 0o600) -> Path:
    path = root / "webhook-secret"
    path.write_text(secret + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("webhooks")
    write_secret(root)
    site = Site(root, grace=3.0, more={"staging": WEBHOOK, "production": WEBHOOK})
    site.add_user("root", "admin")
    site.start()
    site.add_user_by_api("second", "admin")
    yield site
    site.stop()


def sha() -> str:
    return os.urandom(20).hex()


def payload(commit: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": commit,
                       "repository": {"full_name": "acme/shop"}}).encode()


def github(body: bytes, secret: str = SECRET, event: str = "push",
           delivery: str | None = None) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json"}


def post(site: Site, environment: str, body: bytes, headers: dict[str, str]):
    with site.api() as client:
        return client.post(f"/api/v1/deploy/webhook/{environment}", content=body,
                           headers=headers)


def webhook_runs(site: Site, environment: str = "staging") -> list[dict]:
    return [run for run in site.runs(environment=environment)
            if run["deployed_by"] == f"webhook:{environment}"]


def audit(site: Site) -> list[dict]:
    with site.api("root") as client:
        return client.get("/api/v1/audit", params={"action": "webhook", "per_page": 100}
                          ).json()["audit"]


def test_a_signed_github_push_deploys_the_pushed_commit(site):
    commit = sha()
    body = payload(commit)
    response = post(site, "staging", body, github(body))
    assert response.status_code == 201, response.text
    run = site.wait_for(response.json()["id"])
    assert run["status"] == "success", run
    recorded = site.store().get_run(run["id"])
    assert recorded["deployed_by"] == "webhook:staging"
    assert recorded["commit_hash"] == commit
    # The playbook got the commit, as data, to deploy.
    request = json.loads((site.output / f"deploy-{recorded['run_uuid']}.json").read_text())
    assert request["app_version"] == commit
    assert "github push to main" in request["description"]


def test_a_replayed_delivery_is_ignored_and_deploys_once(site):
    commit = sha()
    body = payload(commit)
    headers = github(body)
    first = post(site, "staging", body, headers)
    assert first.status_code == 201, first.text
    site.wait_for(first.json()["id"])
    again = post(site, "staging", body, headers)
    # The same signed body under a new delivery id: a replay too (the id is not signed).
    renamed = post(site, "staging", body, github(body))
    for response in (again, renamed):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "duplicate"
    assert [run["commit_hash"] for run in webhook_runs(site)].count(commit) == 1
    assert any(row["outcome"] == "duplicate" and row["detail"]["delivery"] ==
               headers["X-GitHub-Delivery"] for row in audit(site))


def test_a_gitlab_token_is_accepted_and_a_wrong_one_is_not(site):
    commit = sha()
    body = payload(commit)
    headers = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook",
               "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    response = post(site, "staging", body, headers)
    assert response.status_code == 201, response.text
    run = site.wait_for(response.json()["id"])
    assert run["status"] == "success"
    assert site.store().get_run(run["id"])["commit_hash"] == commit
    wrong = post(site, "staging", payload(sha()), {**headers, "X-Gitlab-Token": SECRET + "x"})
    assert wrong.status_code == 401


@pytest.mark.parametrize("forge", ["Gitea", "Forgejo"])
def test_a_gitea_or_forgejo_signature_is_accepted(site, forge):
    commit = sha()
    body = payload(commit, "refs/heads/release/2.1")
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = post(site, "staging", body, {f"X-{forge}-Signature": signature,
                                            f"X-{forge}-Event": "push",
                                            f"X-{forge}-Delivery": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    run = site.wait_for(response.json()["id"])
    assert run["status"] == "success"
    recorded = site.store().get_run(run["id"])
    assert recorded["commit_hash"] == commit
    assert recorded["description"].startswith(f"{forge.lower()} push to release/2.1")


def test_a_bad_or_missing_signature_is_401_audited_and_starts_nothing(site):
    before = len(site.runs())
    body = payload(sha())
    forged = post(site, "staging", body, github(body, secret="not-the-secret"))
    tampered = post(site, "staging", payload(sha()), github(body))
    unsigned = post(site, "staging", body, {"X-GitHub-Event": "push"})
    assert [forged.status_code, tampered.status_code, unsigned.status_code] == [401, 401, 401]
    assert "does not match" in forged.json()["detail"]
    assert "no signature" in unsigned.json()["detail"]
    assert len(site.runs()) == before
    refused = [row for row in audit(site) if row["outcome"] == "refused"]
    assert any(row["actor"] == "webhook:staging" and "does not match" in row["detail"]["reason"]
               for row in refused)
    assert any("no signature" in row["detail"]["reason"] for row in refused)


def test_a_push_to_another_branch_is_ignored_and_audited(site):
    before = len(site.runs())
    body = payload(sha(), "refs/heads/feature/login")
    response = post(site, "staging", body, github(body))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    assert "feature/login is not one of main, release/*" in response.json()["reason"]
    assert len(site.runs()) == before
    assert any(row["outcome"] == "ignored" and "feature/login" in row["detail"]["reason"]
               for row in audit(site))


def test_a_ping_or_a_tag_is_ignored(site):
    before = len(site.runs())
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    response = post(site, "staging", ping, github(ping, event="ping"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    tag = payload(sha(), "refs/tags/v1.0")
    response = post(site, "staging", tag, github(tag))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert len(site.runs()) == before


def test_unknown_environment_or_one_without_a_webhook_is_404(site):
    body = payload(sha())
    assert post(site, "nowhere", body, github(body)).status_code == 404
    assert post(site, "slow", body, github(body)).status_code == 404


@pytest.mark.parametrize("commit", [
    "{{ lookup('pipe', 'touch MARKER') }}",
    "--upload-pack=touch MARKER",
    "main",
    "A" * 40,
])
def test_a_commit_that_is_not_40_hex_digits_is_refused(site, tmp_path, commit):
    marker = tmp_path / "PWNED-webhook"
    before = len(site.runs())
    body = payload(commit.replace("MARKER", str(marker)))
    response = post(site, "staging", body, github(body))
    assert response.status_code == 422, response.text
    assert "40 hexadecimal digits" in response.json()["detail"]
    assert len(site.runs()) == before
    assert not marker.exists()


def test_a_body_over_a_mebibyte_is_413(site):
    body = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert post(site, "staging", body, github(body)).status_code == 413


def test_a_push_to_an_environment_that_needs_approval_waits_for_an_admin(site):
    commit = sha()
    body = payload(commit)
    response = post(site, "production", body, github(body))
    assert response.status_code == 202, response.text
    held = response.json()
    assert held["status"] == "pending_approval"
    with site.api("root") as client:
        approved = client.post(f"/api/v1/approvals/{held['approval_id']}/approve")
    assert approved.status_code == 201, approved.text
    run = site.wait_for(approved.json()["id"])
    assert run["status"] == "success"
    recorded = site.store().get_run(run["id"])
    assert recorded["deployed_by"] == "webhook:production"
    assert recorded["commit_hash"] == commit


def test_a_secret_file_others_may_read_stops_the_console_from_starting(tmp_path):
    site = Site(tmp_path, more={"staging": WEBHOOK})
    write_secret(tmp_path, mode=0o644)
    with pytest.raises(ConfigError, match="make it 0600"):
        load_config(site.config)
    write_secret(tmp_path, secret="")
    with pytest.raises(ConfigError, match="empty"):
        load_config(site.config)
    write_secret(tmp_path)
    assert load_config(site.config).environments["staging"].webhook.branches == (
        "main", "release/*")
