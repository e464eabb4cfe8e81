"""The console and notifications (slipway_notifications in an environment's inventory), with a
webhook receiver on 127.0.0.1 that checks signatures: each message links to the run through
the console's public_url, and that link leads a logged-in user to the run's page."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from console_helpers import Site, free_port, login
from notify_receiver import Receiver

from slipway.console.config import ConfigError, load_config

SECRET = "whsec-console-notify-0123"
PUBLIC_URL = "https://deploy.example.test:8443/console"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    yield server
    server.close()


@pytest.fixture(scope="module")
def notified(tmp_path_factory, receiver) -> Iterator[Site]:
    """A console with a public_url whose staging and production inventories send events to the
    receiver, and whose stubborn environment (held for approval here) to a closed port."""
    targets = [{"type": "webhook", "url": receiver.url, "secret": SECRET,
                "events": ["started", "succeeded", "failed", "approval_needed"]}]
    nowhere = [{"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hooks/deploy",
                "secret": SECRET, "events": ["approval_needed"]}]
    site = Site(tmp_path_factory.mktemp("console-notify"), top=(f"public_url: {PUBLIC_URL}/",),
                more={"stubborn": ("requires_approval: true",)},
                host_vars={"staging": {"slipway_notifications": targets},
                           "production": {"slipway_notifications": [
                               {**targets[0], "events": ["approval_needed"]}]},
                           "stubborn": {"slipway_notifications": nowhere}})
    site.add_user("root", "admin")
    site.start()
    site.add_user_by_api("alice", "deployer", "staging", "production", "stubborn")
    yield site
    site.stop()


def test_each_message_links_to_the_run_and_the_link_leads_to_its_page(notified, receiver):
    with notified.api("alice") as client:
        response = client.post("/api/v1/deploy/trigger", json={"environment": "staging"})
    assert response.status_code == 201, response.text
    run_id, run_uuid = response.json()["id"], response.json()["run_uuid"]
    assert notified.wait_for(run_id)["status"] == "success"

    mine = [delivery for delivery in receiver.deliveries
            if delivery["event"] in ("started", "succeeded")]
    assert [delivery["event"] for delivery in mine] == ["started", "succeeded"]
    assert receiver.bad_signatures == 0
    link = f"{PUBLIC_URL}/runs/by-uuid/{run_uuid}"
    assert {delivery["run_url"] for delivery in mine} == {link}

    path = link.removeprefix(PUBLIC_URL)
    browser, logged_in = login(notified, "alice")
    assert logged_in.status_code == 303, logged_in.text
    try:
        followed = browser.get(path)
        unknown = browser.get("/runs/by-uuid/00000000-0000-4000-8000-000000000000")
        malformed = browser.get("/runs/by-uuid/not-a-uuid")
    finally:
        browser.close()
    assert followed.status_code == 303
    assert followed.headers["location"] == f"/runs/{run_id}"
    assert unknown.status_code == 404
    assert malformed.status_code == 422


def notify_audit(site: Site, approval_id: int, timeout: float = 90) -> dict:
    """The audit row of the approval_needed notification of the request, once written."""
    deadline = time.monotonic() + timeout
    with site.api("root") as client:
        while time.monotonic() < deadline:
            rows = [row for row in client.get("/api/v1/audit", params={"action": "notify"})
                    .json()["audit"] if row["detail"].get("approval_id") == approval_id]
            if rows:
                return rows[0]
            time.sleep(0.2)
    raise AssertionError(f"no notify audit row for approval {approval_id}")


def test_a_held_deploy_sends_one_approval_needed_naming_environment_and_requester(
        notified, receiver):
    with notified.api("alice") as client:
        held = client.post("/api/v1/deploy/trigger", json={"environment": "production",
                                                           "branch": "release/7"})
    assert held.status_code == 202, held.text
    approval_id = held.json()["approval_id"]

    audit = notify_audit(notified, approval_id)
    assert audit["outcome"] == "delivered", audit
    assert audit["actor"] == "console" and audit["environment"] == "production"
    asked = [delivery for delivery in receiver.deliveries
             if delivery["event"] == "approval_needed"]
    assert len(asked) == 1, receiver.deliveries
    message = asked[0]
    assert (message["environment"], message["who"], message["branch"]) == (
        "production", "alice", "release/7")
    assert f"approval {approval_id}" in message["detail"]
    assert message["run_url"] == f"{PUBLIC_URL}/approvals"
    assert receiver.bad_signatures == 0
    assert SECRET not in str(audit)
    assert not notified.runs(environment="production"), "the notification is no history run"


def test_an_unreachable_receiver_neither_fails_nor_holds_up_the_request(notified):
    with notified.api("alice") as client:
        held = client.post("/api/v1/deploy/trigger", json={"environment": "stubborn"})
    assert held.status_code == 202, held.text
    assert held.json()["status"] == "pending_approval"

    audit = notify_audit(notified, held.json()["approval_id"])
    assert audit["outcome"] == "not delivered", audit
    [outcome] = audit["detail"]["outcomes"]
    assert outcome["delivered"] is False and outcome["target"].startswith("webhook http://")
    assert "/hooks" not in outcome["target"], "a URL's path may be its credential"
    assert SECRET not in str(audit)


def test_the_run_link_needs_a_login(notified):
    with notified.api() as anonymous:
        response = anonymous.get(f"/runs/by-uuid/{'1' * 8}-1111-4111-8111-{'1' * 12}",
                                 follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].startswith("/login")


@pytest.mark.parametrize("value", ["ftp://deploy.example.org", "https://", "deploy.example.org",
                                   "https://deploy.example.org/?next=1",
                                   "https://deploy.example.org/#top",
                                   "https://user:pw@deploy.example.org", "https://a b.org", 42,
                                   "https://deploy.example.org:99999"])
def test_a_public_url_that_is_no_http_base_url_stops_the_console(tmp_path, value):
    (tmp_path / "inventory").mkdir()
    config = tmp_path / "console.yml"
    config.write_text(yaml.safe_dump({"environments": {"staging": {"inventory": "inventory"}},
                                      "public_url": value}))
    with pytest.raises(ConfigError, match="public_url must be the console's http"):
        load_config(config)


def test_the_public_url_is_kept_without_a_trailing_slash(tmp_path):
    (tmp_path / "inventory").mkdir()
    config = tmp_path / "console.yml"
    config.write_text("environments: {staging: {inventory: inventory}}\n"
                      "public_url: http://127.0.0.1:8000/deploys/\n")
    loaded = load_config(config)
    assert loaded.public_url == "http://127.0.0.1:8000/deploys"
    assert loaded.run_link("abc") == "http://127.0.0.1:8000/deploys/runs/by-uuid/abc"
    config.write_text("environments: {staging: {inventory: inventory}}\n")
    assert load_config(config).public_url is None
