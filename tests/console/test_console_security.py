"""The holes of issue 11, each tried as the attack: a cancel of a finished run, approvals for
users who lost their rights, API tokens, passwords, failed logins from many addresses, huge
integers, huge bodies and the work files of ansible-runner."""

from __future__ import annotations

import sqlite3
import stat
import threading
from contextlib import closing
from datetime import datetime, timedelta

import httpx
import pytest
from console_helpers import PASSWORD, Site, csrf_of, login, wait_for_pid_in_store

BIG = (2**63, -1, 10**30)


def audit(site: Site, **filters: str) -> list[dict]:
    with site.api("root") as client:
        response = client.get("/api/v1/audit", params={**filters, "per_page": 500})
    assert response.status_code == 200, response.text
    return response.json()["audit"]


def console_db(site: Site) -> closing[sqlite3.Connection]:
    """The console's database, opened as an operator would (closed at the end of a with)."""
    return closing(sqlite3.connect(site.root / "console.sqlite3", isolation_level=None))


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def start_slow_run(site: Site, user: str = "alice") -> dict:
    with site.api(user) as client:
        started = client.post("/api/v1/deploy/trigger", json={"environment": "slow"})
    assert started.status_code == 201, started.text
    site.wait_for_file(f"sleep-{started.json()['run_uuid']}.pid")
    wait_for_pid_in_store(site, started.json()["id"])
    return started.json()


# Cancel

def test_cancelling_a_finished_run_is_a_409_and_audited(site):
    with site.api("alice") as client:
        run_id = client.post("/api/v1/deploy/trigger", json={"environment": "staging"}
                             ).json()["id"]
    assert site.wait_for(run_id)["status"] == "success"

    with site.api("alice") as client:
        again = client.post(f"/api/v1/deploy/cancel/{run_id}")
    assert again.status_code == 409
    assert again.json()["detail"] == f"run {run_id} is not running (it is success)"
    assert again.json()["run_status"] == "success"
    page = login(site, "alice")[0]
    with closing(page):
        form = page.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_of(page)})
    assert form.status_code == 409 and "is not running" in form.text
    refused = [row for row in audit(site, action="cancel") if row["run_id"] == run_id]
    assert [row["outcome"] for row in refused] == ["refused", "refused"]
    assert refused[0]["detail"]["reason"] == f"run {run_id} is not running (it is success)"
    assert site.wait_for(run_id)["status"] == "success"


def test_a_double_click_on_cancel_stops_the_run_once_and_refuses_the_other_with_409(site):
    run = start_slow_run(site)
    answers: list[httpx.Response] = []
    go = threading.Barrier(2)

    def click() -> None:
        with site.api("alice") as client:
            go.wait()
            answers.append(client.post(f"/api/v1/deploy/cancel/{run['id']}"))

    clicks = [threading.Thread(target=click) for _click in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(120)

    assert sorted(answer.status_code for answer in answers) == [200, 409], \
        [answer.text for answer in answers]
    refusal = next(answer for answer in answers if answer.status_code == 409)
    assert "is not running" in refusal.json()["detail"]
    assert site.wait_for(run["id"])["status"] == "cancelled"
    outcomes = [row["outcome"] for row in audit(site, action="cancel")
                if row["run_id"] == run["id"]]
    assert sorted(outcomes) == ["cancelled", "refused"]
    unlock = next(answer for answer in answers if answer.status_code == 200).json()
    site.wait_for(unlock["unlock_run_id"])


# Approvals

def request_production_deploy(site: Site, user: str) -> int:
    with site.api(user) as client:
        held = client.post("/api/v1/deploy/trigger", json={"environment": "production",
                                                           "description": f"by {user}"})
    assert held.status_code == 202, held.text
    return held.json()["approval_id"]


def approval_state(site: Site, approval_id: int) -> dict:
    with site.api("root") as client:
        rows = client.get("/api/v1/approvals").json()["approvals"]
    return next(row for row in rows if row["id"] == approval_id)


def test_deleting_a_user_cancels_its_pending_requests_and_they_cannot_be_approved(site):
    site.add_user_by_api("dana", "deployer", "production")
    approval_id = request_production_deploy(site, "dana")
    production_runs = len(site.runs(environment="production"))

    with site.api("root") as root:
        deleted = root.delete("/api/v1/users/dana")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["cancelled_approvals"] == [approval_id]
    # The same name comes back with other rights: the old request stays dead.
    site.add_user_by_api("dana", "viewer")
    with site.api("second") as second:
        approved = second.post(f"/api/v1/approvals/{approval_id}/approve")

    assert approved.status_code == 409
    assert "cancelled by root" in approved.json()["detail"]
    state = approval_state(site, approval_id)
    assert state["state"] == "cancelled" and state["run_id"] is None
    assert len(site.runs(environment="production")) == production_runs
    [deletion] = [row for row in audit(site, action="deluser")
                  if row["detail"].get("user") == "dana"]
    assert deletion["detail"]["cancelled_approvals"] == [approval_id]
    assert any(row["actor"] == "second" and row["outcome"] == "refused"
               for row in audit(site, action="approve"))


def test_an_approval_for_a_requester_who_lost_the_environment_starts_nothing(site):
    site.add_user_by_api("ezra", "deployer", "production", "staging")
    approval_id = request_production_deploy(site, "ezra")
    production_runs = len(site.runs(environment="production"))
    # An operator narrows ezra's rights in the console's database after the request.
    with console_db(site) as connection:
        connection.execute("UPDATE users SET environments = '[\"staging\"]' WHERE name = 'ezra'")

    with site.api("second") as second:
        approved = second.post(f"/api/v1/approvals/{approval_id}/approve")
        again = second.post(f"/api/v1/approvals/{approval_id}/approve")

    assert approved.status_code == 409
    assert approved.json()["detail"] == (f"approval request {approval_id} is cancelled: ezra "
                                         "may no longer deploy in environment production")
    assert again.status_code == 409
    assert approval_state(site, approval_id)["state"] == "cancelled"
    assert len(site.runs(environment="production")) == production_runs
    refusals = [row["detail"]["reason"] for row in audit(site, action="approve", actor="second")
                if row["outcome"] == "refused"]
    assert approved.json()["detail"] in refusals


# API tokens

def test_tokens_are_listed_without_secrets_revoked_one_by_one_and_expire(site):
    site.add_user_by_api("tess", "deployer", "staging")
    with site.api("tess") as tess:
        made = tess.post("/api/v1/users/tess/tokens", json={"expires": "2d"})
        assert made.status_code == 201, made.text
        kept = tess.post("/api/v1/users/tess/tokens").json()
    token = made.json()
    expires = datetime.fromisoformat(token["expires_at"].rstrip("Z"))
    assert timedelta(days=1, hours=23) < expires - datetime.utcnow() <= timedelta(days=2)
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {token['token']}"},
                      timeout=60) as client:
        assert client.get("/api/v1/me").json()["name"] == "tess"
        listed = client.get("/api/v1/users/tess/tokens").json()["tokens"]
        assert {row["id"] for row in listed} >= {token["id"], kept["id"]}
        assert all(set(row) == {"id", "created_at", "last_used_at", "expires_at", "expired"}
                   for row in listed)
        mine = next(row for row in listed if row["id"] == token["id"])
        assert mine["last_used_at"] and mine["expires_at"] and not mine["expired"]
        assert client.delete(f"/api/v1/tokens/{token['id']}").status_code == 200
        assert client.get("/api/v1/me").status_code == 401
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {kept['token']}"},
                      timeout=60) as client:
        assert client.get("/api/v1/me").status_code == 200, "only the one token is revoked"
        # Its expiry passes (written into the past, as time would).
        with console_db(site) as connection:
            connection.execute("UPDATE tokens SET expires_at = '2000-01-01 00:00:00.000000' "
                               "WHERE id = ?", (kept["id"],))
        expired = client.get("/api/v1/me")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    revoked = [row for row in audit(site, action="revoke-token") if row["actor"] == "tess"]
    assert revoked[0]["outcome"] == "ok" and revoked[0]["detail"]["token_id"] == token["id"]


def test_a_user_cannot_list_make_or_revoke_the_tokens_of_another(site):
    with site.api("root") as root:
        roots = root.get("/api/v1/users/root/tokens").json()["tokens"]
        alices = root.get("/api/v1/users/alice/tokens")
    assert alices.status_code == 200, "admins manage anyone's tokens"
    with site.api("alice") as alice:
        listing = alice.get("/api/v1/users/root/tokens")
        making = alice.post("/api/v1/users/root/tokens")
        revoking = alice.delete(f"/api/v1/tokens/{roots[0]['id']}")
        missing = alice.delete(f"/api/v1/tokens/{2**63 - 1}")
    assert [listing.status_code, making.status_code, revoking.status_code] == [403, 403, 403]
    assert missing.status_code == 404
    with site.api("root") as root:
        assert root.get("/api/v1/me").status_code == 200
    outcomes = {(row["action"], row["outcome"]) for row in audit(site, actor="alice")}
    assert {("tokens", "refused"), ("token", "refused"), ("revoke-token", "refused")} <= outcomes


@pytest.mark.parametrize("expires", ["0d", "30m", "3651d", "forever", "1" + "0" * 30 + "d"])
def test_a_token_lifetime_out_of_bounds_is_refused(site, expires):
    with site.api("alice") as alice:
        before = len(alice.get("/api/v1/users/alice/tokens").json()["tokens"])
        response = alice.post("/api/v1/users/alice/tokens", json={"expires": expires})
        after = len(alice.get("/api/v1/users/alice/tokens").json()["tokens"])
    assert response.status_code == 422 and "token expiry" in response.json()["detail"]
    assert after == before


def test_the_command_line_makes_lists_and_revokes_tokens(site):
    made = site.cli("token", "victor", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    listed = site.cli("tokens", "victor")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert secret not in listed.stdout
    newest = rows[-1].split()
    expires = datetime.strptime(" ".join(newest[-2:]), "%Y-%m-%d %H:%M:%S")
    assert timedelta(days=29) < expires - datetime.utcnow() <= timedelta(days=30)
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {secret}"},
                      timeout=60) as client:
        assert client.get("/api/v1/me").status_code == 200
        revoked = site.cli("revoke-token", newest[0])
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/api/v1/me").status_code == 401
    assert site.cli("revoke-token", newest[0]).returncode == 1
    assert site.cli("token", "victor", "--expires", "never").returncode == 1


def test_tokens_from_the_account_page(site):
    client = login(site, "alice")[0]
    with closing(client):
        made = client.post("/account/tokens", data={"csrf_token": csrf_of(client, "/account"),
                                                    "expires": "7d"})
        assert made.status_code == 200
        token_id, secret = (int(made.text.split("New API token #")[1].split()[0]),
                            made.text.split("<pre>")[1].split("</pre>")[0])
        assert httpx.get(site.url + "/api/v1/me", headers={
            "Authorization": f"Bearer {secret}"}).status_code == 200
        assert f'data-token="{token_id}"' in client.get("/account").text
        assert secret not in client.get("/account").text
        others = client.get("/account", params={"user": "root"})
        revoked = client.post(f"/account/tokens/{token_id}/revoke",
                              data={"csrf_token": csrf_of(client, "/account")})
    assert others.status_code == 403
    assert revoked.status_code == 303
    assert httpx.get(site.url + "/api/v1/me", headers={
        "Authorization": f"Bearer {secret}"}).status_code == 401


# Passwords

def test_a_password_change_needs_the_current_password_and_ends_the_other_sessions(site):
    site.add_user_by_api("pat", "viewer")
    new_password = "a brand new passphrase"
    here = login(site, "pat")[0]
    there = login(site, "pat")[0]
    with closing(here), closing(there):
        csrf = {"X-CSRF-Token": csrf_of(here, "/account")}
        wrong = here.post("/api/v1/me/password", headers=csrf, json={
            "current_password": "not the password", "new_password": new_password})
        short = here.post("/api/v1/me/password", headers=csrf, json={
            "current_password": PASSWORD, "new_password": "short"})
        no_csrf = here.post("/api/v1/me/password", json={
            "current_password": PASSWORD, "new_password": new_password})
        assert there.get("/api/v1/me").status_code == 200
        changed = here.post("/api/v1/me/password", headers=csrf, json={
            "current_password": PASSWORD, "new_password": new_password})
        assert changed.status_code == 200, changed.text
        assert changed.json()["ended_sessions"] == 1
        assert here.get("/api/v1/me").status_code == 200, "this session goes on"
        assert there.get("/api/v1/me").status_code == 401, "the other session ended"
    assert wrong.status_code == 403 and wrong.json()["detail"] == "the current password is wrong"
    assert short.status_code == 422 and "12 characters" in short.json()["detail"]
    assert no_csrf.status_code == 403
    old_client, old = login(site, "pat")
    new_client, new = login(site, "pat", new_password)
    old_client.close()
    new_client.close()
    assert old.status_code == 401 and new.status_code == 303
    assert [row["outcome"] for row in audit(site, action="password", actor="pat")] == [
        "changed", "refused", "refused"]


def test_a_password_change_from_the_account_page(site):
    site.add_user_by_api("quinn", "viewer")
    client = login(site, "quinn")[0]
    with closing(client):
        csrf = csrf_of(client, "/account")
        differ = client.post("/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD,
            "new_password": "first new passphrase", "new_password_again": "second one!!"})
        changed = client.post("/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD,
            "new_password": "first new passphrase",
            "new_password_again": "first new passphrase"})
    assert differ.status_code == 422 and "differ" in differ.text
    assert changed.status_code == 200 and "Your password is changed" in changed.text
    relogin, response = login(site, "quinn", "first new passphrase")
    relogin.close()
    assert response.status_code == 303


def test_guessing_the_current_password_is_throttled_like_a_login(site):
    site.add_user_by_api("rory", "viewer")
    client = login(site, "rory")[0]
    with closing(client):
        csrf = {"X-CSRF-Token": csrf_of(client, "/account")}
        guesses = [client.post("/api/v1/me/password", headers=csrf, json={
            "current_password": f"guess number {attempt}", "new_password": "x" * 20}
        ).status_code for attempt in range(6)]
    assert guesses == [403] * 5 + [429]


# Failed logins from many addresses

def test_failed_logins_of_one_name_from_many_addresses_are_throttled(site):
    """Four tries from each of five loopback addresses stay under the per-address limit (5);
    together they reach the name's limit across addresses (20): the right password is then
    refused from a sixth address."""
    site.add_user_by_api("uma", "viewer")
    for address in range(2, 7):
        for attempt in range(4):
            client, response = login(site, "uma", "a wrong password",
                                     transport=httpx.HTTPTransport(
                                         local_address=f"127.0.0.{address}"))
            client.close()
            assert response.status_code == 401, (address, attempt)

    client, response = login(site, "uma", transport=httpx.HTTPTransport(
        local_address="127.0.0.9"))
    client.close()
    assert response.status_code == 429 and "slipway_session" not in response.cookies
    client, other = login(site, "victor", transport=httpx.HTTPTransport(
        local_address="127.0.0.9"))
    client.close()
    assert other.status_code == 303, "other names from that address may still log in"
    rows = audit(site, action="login", actor="uma")
    assert [row["outcome"] for row in rows] == ["throttled"] + ["failed"] * 20
    assert {row["remote_addr"] for row in rows} == {f"127.0.0.{n}" for n in (2, 3, 4, 5, 6, 9)}


# Integers out of range

@pytest.mark.parametrize("number", BIG)
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/deploy/status/{n}"),
    ("GET", "/api/v1/deploy/logs/{n}"),
    ("GET", "/api/v1/deploy/logs/1?offset={n}"),
    ("GET", "/api/v1/deploy/logs/{n}/stream"),
    ("GET", "/api/v1/deploy/logs/1/stream?offset={n}"),
    ("GET", "/api/v1/deploy/history?page={n}"),
    ("GET", "/api/v1/deploy/history?per_page={n}"),
    ("GET", "/api/v1/deploy/history/{n}"),
    ("POST", "/api/v1/deploy/cancel/{n}"),
    ("POST", "/api/v1/approvals/{n}/approve"),
    ("POST", "/api/v1/approvals/{n}/reject"),
    ("GET", "/api/v1/audit?page={n}"),
    ("GET", "/api/v1/audit?per_page={n}"),
    ("DELETE", "/api/v1/tokens/{n}"),
])
def test_integers_out_of_range_in_the_api_are_422(site, method, path, number):
    with site.api("root") as client:
        response = client.request(method, path.format(n=number))
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["msg"].startswith(("Input should be less than or equal to",
                                      "Input should be greater than or equal to"))


@pytest.mark.parametrize("number", BIG)
def test_integers_out_of_range_in_bodies_and_headers_are_422(site, number):
    with site.api("root") as client:
        rollback = client.post("/api/v1/deploy/rollback",
                               json={"environment": "staging", "deploy_id": number})
        resumed = client.get("/api/v1/deploy/logs/1/stream",
                             headers={"Last-Event-ID": str(number)})
    assert rollback.status_code == 422, rollback.text
    assert resumed.status_code == 422 and "Last-Event-ID" in resumed.json()["detail"]


@pytest.mark.parametrize("number", BIG)
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/runs?page={n}"),
    ("GET", "/runs/{n}"),
    ("POST", "/runs/{n}/cancel"),
    ("POST", "/runs/{n}/rollback"),
    ("POST", "/approvals/{n}/approve"),
    ("GET", "/audit?page={n}"),
    ("POST", "/account/tokens/{n}/revoke"),
])
def test_integers_out_of_range_in_pages_are_422(site, method, path, number):
    client = login(site, "root")[0]
    with closing(client):
        data = {"csrf_token": csrf_of(client)} if method == "POST" else None
        response = client.request(method, path.format(n=number), data=data)
    assert response.status_code == 422, response.text
    assert "Malformed request" in response.text


def test_the_largest_log_offset_reads_nothing(site):
    with site.api("alice") as client:
        run_id = client.post("/api/v1/deploy/trigger", json={"environment": "staging"}
                             ).json()["id"]
    site.wait_for(run_id)
    with site.api("root") as client:
        response = client.get(f"/api/v1/deploy/logs/{run_id}", params={"offset": 2**31 - 2})
    assert response.status_code == 200, response.text
    assert response.json()["logs"] == ""


# Request bodies

def test_a_body_over_the_limit_is_413_before_authentication(site):
    limit = 1048576  # the console's default max_body_bytes
    body = b"{" + b" " * limit + b"}"
    with httpx.Client(base_url=site.url, timeout=60) as client:
        small = client.post("/api/v1/deploy/trigger", content=b"{}",
                            headers={"Content-Type": "application/json"})
        declared = client.post("/api/v1/deploy/trigger", content=body,
                               headers={"Content-Type": "application/json"})
        forged = client.post("/api/v1/deploy/trigger", content=body,
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer not-a-token"})
        streamed = client.post("/api/v1/deploy/trigger",
                               content=(b"x" * 65536 for _chunk in range(limit // 65536 + 2)),
                               headers={"Content-Type": "application/json"})
        login_form = client.post("/login", content=(b"name=" + b"a" * 65536
                                                    for _chunk in range(limit // 65536 + 2)),
                                 headers={"Content-Type":
                                          "application/x-www-form-urlencoded"})
    assert small.status_code == 401, "a small body reaches authentication"
    for response in (declared, forged, streamed, login_form):
        assert response.status_code == 413, response.text
        assert response.json()["detail"] == f"the request body is larger than {limit} bytes"
    assert "transfer-encoding" not in declared.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"


# ansible-runner's work files

def test_a_runs_work_files_are_private_and_removed_when_it_ends(site):
    work_dir = site.root / "runner"
    run = start_slow_run(site)
    run_dir = work_dir / run["run_uuid"]
    assert mode(work_dir) == 0o700 and mode(run_dir) == 0o700
    assert (run_dir / "env" / "extravars").is_file()

    with site.api("alice") as client:
        cancelled = client.post(f"/api/v1/deploy/cancel/{run['id']}")
    assert cancelled.status_code == 200, cancelled.text
    site.wait_for(run["id"])
    assert not run_dir.exists(), "removed after a cancel"
    site.wait_for(cancelled.json()["unlock_run_id"])
    with site.api("alice") as client:
        done = client.post("/api/v1/deploy/trigger", json={"environment": "staging"}).json()
    site.wait_for(done["id"])
    assert not (work_dir / done["run_uuid"]).exists(), "removed after a run that ended"
    assert not (work_dir / run["run_uuid"]).exists()


def test_the_work_directory_and_the_parents_it_needs_are_made_0700(tmp_path):
    site = Site(tmp_path)
    with site.config.open("a") as config:
        config.write("runner_dir: state/private/runner\n")
    site.add_user("root", "admin")
    site.start()
    try:
        for path in ("state", "state/private", "state/private/runner"):
            assert mode(tmp_path / path) == 0o700, path
    finally:
        site.stop()
