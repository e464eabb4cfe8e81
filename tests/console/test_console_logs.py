"""The app's logs, read by the environment's fixed logs playbook (a stand-in here)."""

from __future__ import annotations

import re

from console_helpers import login


def test_the_last_lines_of_a_unit_come_back_per_host(site):
    before = len(site.runs())
    with site.api("alice") as client:
        answer = client.get("/api/v1/environments/staging/logs",
                            params={"unit": "workers", "lines": 7, "since": "6h"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["unit"] == "workers" and body["lines"] == 7 and body["rc"] == 0
    [host] = body["hosts"]
    assert host["host"] == "localhost" and host["error"] is None
    lines = host["output"].splitlines()
    assert lines == [f"app workers line {n} of 7 since -6h" for n in range(1, 8)]
    # A read is no deploy: nothing in the history.
    assert len(site.runs()) == before
    # A viewer may read every environment's logs.
    with site.api("victor") as client:
        viewer = client.get("/api/v1/environments/production/logs")
    assert viewer.status_code == 200
    assert viewer.json()["hosts"][0]["output"].splitlines()[-1] == (
        "app web line 100 of 100 since -1h")


def test_bad_values_are_refused_before_anything_runs(site):
    with site.api("alice") as client:
        for params in ({"lines": 501}, {"lines": 0}, {"lines": "10; id"},
                       {"unit": "ssh"}, {"unit": "web --since=-1y"}, {"since": "7d"},
                       {"since": "-1h"}, {"unit": "../../etc"}):
            answer = client.get("/api/v1/environments/staging/logs", params=params)
            assert answer.status_code == 422, (params, answer.text)
        assert client.get("/api/v1/environments/nowhere/logs").status_code == 422


def test_only_those_allowed_to_see_the_environment(site):
    with site.api("alice") as client:
        refused = client.get("/api/v1/environments/production/logs")
    assert refused.status_code == 403
    assert "may not read the logs of environment production" in refused.json()["detail"]
    with site.api() as anonymous:
        assert anonymous.get("/api/v1/environments/staging/logs").status_code == 401
    with site.api("root") as client:
        audit = client.get("/api/v1/audit").json()
    actions = [(row["action"], row["outcome"], row["environment"])
               for row in audit.get("rows", audit.get("audit", []))]
    assert ("logs", "refused", "production") in actions
    assert ("logs", "read", "staging") in actions


def test_the_environment_page_shows_the_logs(site):
    alice, _response = login(site, "alice")
    page = alice.get("/environments/staging")
    assert 'id="logs-form"' in page.text
    shown = alice.get("/environments/staging/logs",
                      params={"unit": "beat", "lines": "3", "since": "15m"})
    assert shown.status_code == 200
    output = re.search(r'<pre class="log" data-host="localhost">(.*?)</pre>', shown.text,
                       re.S).group(1)
    assert output.splitlines() == [f"app beat line {n} of 3 since -15min" for n in (1, 2, 3)]
    too_many = alice.get("/environments/staging/logs", params={"lines": "1000"})
    assert too_many.status_code == 422
    # No form for an environment alice may not see; asking anyway is refused.
    assert 'id="logs-form"' not in alice.get("/environments/production").text
    assert alice.get("/environments/production/logs").status_code == 403
    alice.close()
