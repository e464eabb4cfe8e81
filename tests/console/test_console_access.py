"""Who may do what, bad input, sessions with CSRF, approvals and the audit table."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from console_helpers import PASSWORD, csrf_of, login


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/deploy/trigger"),
    ("GET", "/api/v1/deploy/status/1"),
    ("GET", "/api/v1/deploy/logs/1"),
    ("GET", "/api/v1/deploy/logs/1/stream"),
    ("GET", "/api/v1/deploy/history"),
    ("GET", "/api/v1/deploy/history/1"),
    ("POST", "/api/v1/deploy/cancel/1"),
    ("POST", "/api/v1/deploy/rollback"),
    ("GET", "/api/v1/approvals"),
    ("GET", "/api/v1/audit"),
])
def test_api_without_credentials_is_401(site, method, path):
    with site.api() as client:
        response = client.request(method, path, json={"environment": "staging"})
        forged = client.request(method, path, json={"environment": "staging"},
                                headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert forged.status_code == 401
    assert "token" in forged.json()["detail"]


def test_pages_without_a_session_go_to_the_login(site):
    response = httpx.get(site.url + "/runs?environment=staging", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/runs%3Fenvironment%3Dstaging"


def test_deployer_outside_its_environments_gets_403_and_nothing_starts(site):
    before = len(site.runs())
    with site.api("alice") as client:
        trigger = client.post("/api/v1/deploy/trigger", json={"environment": "production"})
        rollback = client.post("/api/v1/deploy/rollback", json={"environment": "production"})
    assert trigger.status_code == 403
    assert trigger.json()["detail"] == ("alice may not deploy in environment production "
                                        "(allowed: broken, paced, phased, slow, staging, stubborn)")
    assert rollback.status_code == 403
    assert len(site.runs()) == before


def test_viewer_reads_but_cannot_trigger_roll_back_or_read_the_audit(site):
    with site.api("victor") as client:
        assert client.get("/api/v1/deploy/history").status_code == 200
        trigger = client.post("/api/v1/deploy/trigger", json={"environment": "staging"})
        rollback = client.post("/api/v1/deploy/rollback", json={"environment": "staging"})
        approvals = client.get("/api/v1/approvals")
        audit = client.get("/api/v1/audit")
    assert trigger.status_code == 403 and trigger.json()["detail"] == "viewers cannot deploy"
    assert rollback.status_code == 403
    assert approvals.status_code == 200
    assert audit.status_code == 403


def test_approval_needs_a_second_admin(site):
    with site.api("root") as root, site.api("second") as second, site.api("alice") as alice:
        held = root.post("/api/v1/deploy/trigger", json={"environment": "production",
                                                         "branch": "release/7"})
        assert held.status_code == 202
        approval_id = held.json()["approval_id"]
        assert held.json()["id"] is None and held.json()["status"] == "pending_approval"
        assert not site.runs(environment="production", status="running")

        own = root.post(f"/api/v1/approvals/{approval_id}/approve")
        assert own.status_code == 403 and "second admin" in own.json()["detail"]
        assert alice.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 403

        approved = second.post(f"/api/v1/approvals/{approval_id}/approve")
        assert approved.status_code == 201, approved.text
        run_id = approved.json()["id"]
        again = second.post(f"/api/v1/approvals/{approval_id}/approve")
        assert again.status_code == 409
        with site.api("victor") as viewer:
            assert viewer.post(f"/api/v1/deploy/cancel/{run_id}").status_code == 403
        assert alice.post(f"/api/v1/deploy/cancel/{run_id}").status_code == 403
        status = site.wait_for(run_id)
        assert status["status"] == "success" and status["deployed_by"] == "root"
        assert status["branch"] == "release/7"
        pending = root.get("/api/v1/approvals", params={"state": "approved"}).json()
        assert pending["approvals"][0]["run_id"] == run_id
        audit = root.get("/api/v1/audit").json()["audit"]
    by_action = {(row["action"], row["outcome"]): row for row in reversed(audit)}  # newest wins
    assert by_action[("deploy", "pending approval")]["actor"] == "root"
    assert by_action[("approve", "approved")]["actor"] == "second"
    assert by_action[("approve", "approved")]["run_id"] == run_id
    refused = [row for row in audit if row["action"] == "approve" and row["outcome"] == "refused"]
    refusals = {(row["actor"], row["detail"]["reason"]) for row in refused}
    assert ("root", "a second admin must approve: you requested this run") in refusals
    assert ("alice", "only admins may approve runs") in refusals


def test_a_rejected_request_never_runs(site):
    with site.api("second") as second, site.api("root") as root:
        held = second.post("/api/v1/deploy/rollback", json={"environment": "production",
                                                            "release": "r-1"}).json()
        assert root.post(f"/api/v1/approvals/{held['approval_id']}/reject").status_code == 200
        late = root.post(f"/api/v1/approvals/{held['approval_id']}/approve")
    assert late.status_code == 409
    assert "rejected by root" in late.json()["detail"]


@pytest.mark.parametrize("branch", [
    "-rf", "--upload-pack=touch /tmp/x", "a..b", "has space", "tab\there", "line\nbreak",
    "ctrl\x01char", "ends/", "/starts", "a//b", "x.lock", "at@{1}", "tilde~1", "caret^",
    "colon:x", "what?", "star*", "bracket[", "back\\slash", ".hidden", "dir/.hidden", "dot.",
    "@",
])
def test_malformed_branches_are_refused_and_start_nothing(site, branch):
    before = len(site.runs())
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/trigger",
                               json={"environment": "staging", "branch": branch})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("malformed branch name")
    assert len(site.runs()) == before


@pytest.mark.parametrize("branch", [
    "main", "feature/login-form", "v1.2.3", "release-2024.06", "0a1b2c3d4e5f", "user@host/x",
    "fix+1", "a..b", "has space", "ends/", "/starts", "a//b", "x.lock", "at@{1}", "tilde~1",
    "caret^", "colon:x", "what?", "star*", "bracket[", "back\\slash", ".hidden", "dir/.hidden",
    "dot.", "{{x}}", "$(id)", "it's", "a%b", "naïve", "semi;colon", "(paren)", "a,b", "a=b",
])
def test_the_branch_check_accepts_only_names_git_accepts(branch):
    """Whatever the check lets through, git accepts too; within the characters real refs use
    (letters, digits, . _ / - + @) the two agree exactly."""
    from slipway.console.security import BRANCH_CHARACTERS, InputError, check_branch

    git = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True,
                         check=False)
    try:
        accepted = check_branch(branch) == branch
    except InputError:
        accepted = False
    if accepted:
        assert git.returncode == 0
    if set(branch) <= BRANCH_CHARACTERS:
        assert accepted == (git.returncode == 0)
    else:
        assert not accepted


@pytest.mark.parametrize(("body", "message"), [
    ({"environment": "nowhere"}, "unknown environment 'nowhere'"),
    ({"environment": "staging", "skip_build": "yes"}, "valid boolean"),
    ({"environment": "staging", "shell": "rm -rf /"}, "Extra inputs are not permitted"),
    ({"branch": "main"}, "Field required"),
    ({"environment": "staging", "description": "x" * 1001}, "longer than 1000"),
])
def test_bad_trigger_bodies_are_refused_with_a_clear_message(site, body, message):
    before = len(site.runs())
    with site.api("root") as client:
        response = client.post("/api/v1/deploy/trigger", json=body)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])
    assert len(site.runs()) == before


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"environment": "staging", "release": "../../etc"}, 422, "malformed release id"),
    ({"environment": "staging", "release": "r-1", "deploy_id": 1}, 422, "not both"),
    ({"environment": "staging", "deploy_id": 999999}, 404, "no run 999999"),
])
def test_bad_rollbacks_are_refused(site, body, status, message):
    with site.api("root") as client:
        response = client.post("/api/v1/deploy/rollback", json=body)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_unknown_run_is_404(site):
    with site.api("victor") as client:
        assert client.get("/api/v1/deploy/status/999999").status_code == 404
        assert client.get("/api/v1/deploy/history/999999").json()["detail"] == (
            "no run 999999 in the deploy history")


def test_session_requests_need_the_csrf_token(site):
    client, response = login(site, "alice")
    try:
        assert response.status_code == 303 and response.headers["location"] == "/runs"
        cookie = client.cookies.get("slipway_session")
        assert cookie
        without = client.post("/api/v1/deploy/trigger", json={"environment": "staging"})
        assert without.status_code == 403 and "X-CSRF-Token" in without.json()["detail"]
        token = csrf_of(client)
        with_token = client.post("/api/v1/deploy/trigger", json={"environment": "staging"},
                                 headers={"X-CSRF-Token": token})
        assert with_token.status_code == 201, with_token.text
        forged_form = client.post("/deploy", data={"environment": "staging",
                                                   "csrf_token": "forged"})
        assert forged_form.status_code == 403
        site.wait_for(with_token.json()["id"])
    finally:
        client.close()


def test_login_is_audited_and_a_wrong_password_refused(site):
    client, response = login(site, "victor", "not the password at all")
    client.close()
    assert response.status_code == 401 and "slipway_session" not in response.cookies
    client, response = login(site, "victor")
    client.close()
    assert response.status_code == 303
    with site.api("root") as admin:
        rows = admin.get("/api/v1/audit", params={"action": "login", "actor": "victor"}).json()
    outcomes = [row["outcome"] for row in rows["audit"]]
    assert outcomes[:2] == ["ok", "failed"]
    assert all(row["at"] and row["remote_addr"] == "127.0.0.1" for row in rows["audit"])


def test_repeated_failed_logins_are_throttled_for_that_name(site):
    site.add_user_by_api("walter", "viewer")
    for attempt in range(5):  # the console's default login_max_failures
        client, response = login(site, "walter", "a wrong password, again")
        client.close()
        assert response.status_code == 401, attempt

    client, response = login(site, "walter")  # the right password, too late
    client.close()
    assert response.status_code == 429
    assert "Too many failed logins" in response.text and "slipway_session" not in response.cookies
    assert 0 < int(response.headers["Retry-After"]) <= 900
    client, other = login(site, "victor")
    client.close()
    assert other.status_code == 303, "another name from the same address may still log in"
    with site.api("root") as admin:
        rows = admin.get("/api/v1/audit", params={"action": "login", "actor": "walter"}).json()
    assert [row["outcome"] for row in rows["audit"]] == ["throttled"] + ["failed"] * 5


def test_tokens_and_passwords_are_stored_hashed(site):
    import sqlite3

    connection = sqlite3.connect(site.root / "console.sqlite3")
    hashes = [row[0] for row in connection.execute("SELECT password_hash FROM users")]
    digests = [row[0] for row in connection.execute("SELECT token_digest FROM tokens")]
    connection.close()
    assert hashes and all(value.startswith("$argon2id$") for value in hashes)
    assert not any(PASSWORD in value for value in hashes)
    assert site.tokens["alice"] not in digests and len(digests[0]) == 64


def test_openapi_describes_the_api(site):
    schema = httpx.get(site.url + "/openapi.json").json()
    for path in ("/api/v1/deploy/trigger", "/api/v1/deploy/status/{run_id}",
                 "/api/v1/deploy/logs/{run_id}", "/api/v1/deploy/logs/{run_id}/stream",
                 "/api/v1/deploy/history", "/api/v1/deploy/history/{run_id}",
                 "/api/v1/deploy/cancel/{run_id}", "/api/v1/deploy/rollback"):
        assert path in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_admin_manages_users_and_others_cannot(site):
    with site.api("root") as root, site.api("alice") as alice:
        created = root.post("/api/v1/users", json={
            "name": "dora", "role": "deployer", "environments": ["staging"],
            "password": "a long enough password"})
        assert created.status_code == 201, created.text
        assert alice.post("/api/v1/users", json={
            "name": "eve", "role": "admin", "password": "a long enough password"}
        ).status_code == 403
        short = root.post("/api/v1/users", json={"name": "fay", "role": "viewer",
                                                 "password": "short"})
        assert short.status_code == 422 and "12 characters" in short.json()["detail"]
        token = root.post("/api/v1/users/dora/tokens").json()["token"]
        assert root.delete("/api/v1/users/dora").status_code == 200
    revoked = httpx.get(site.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
