"""The health gate's pages: checks validated, answers judged, failures described."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.slipway.django.plugins.filter.health_checks import (
    health_check_failures,
    health_check_passes,
    health_checks,
)


@pytest.mark.parametrize(("status", "check", "content", "passes"), [
    (200, {"path": "/"}, "", True),
    (302, {"path": "/"}, "", True),
    (404, {"path": "/"}, "", True),
    (499, {"path": "/"}, "", True),
    (500, {"path": "/"}, "", False),
    (503, {"path": "/"}, "", False),
    (-1, {"path": "/"}, "", False),
    (None, {"path": "/"}, "", False),
    (200, {"path": "/", "status": 200}, "", True),
    (302, {"path": "/", "status": 200}, "", False),
    (302, {"path": "/", "status": [200, 302]}, "", True),
    (503, {"path": "/", "status": 503}, "", True),
    (200, {"path": "/", "text": "Log in"}, "<h1>Log in</h1>", True),
    (200, {"path": "/", "text": "Log in"}, "<h1>Oops</h1>", False),
    (500, {"path": "/", "text": "Log in"}, "Log in", False),
])
def test_a_check_passes_on_the_status_and_text_expected(status, check, content, passes):
    assert health_check_passes(status, check, content) is passes


def test_failures_name_the_page_the_answer_and_what_was_expected():
    results = [
        {"item": {"path": "/"}, "status": 200, "content": ""},
        {"item": {"path": "/admin/login/"}, "status": 500, "content": "boom"},
        {"item": {"path": "/ping/", "status": [200, 204]}, "status": 302, "content": ""},
        {"item": {"path": "/about/", "text": "About us"}, "status": 200, "content": "Hi"},
        {"item": {"path": "/down/"}, "status": -1, "msg": "Connection refused"},
    ]
    assert health_check_failures(results, "http://127.0.0.1") == [
        "http://127.0.0.1/admin/login/ answered status 500, expected a status below 500",
        "http://127.0.0.1/ping/ answered status 302, expected status 200 or 204",
        "http://127.0.0.1/about/ answered status 200 without 'About us' in the body, expected a "
        "status below 500 with 'About us' in the body",
        "http://127.0.0.1/down/ answered no answer (Connection refused), expected a status "
        "below 500",
    ]


@pytest.mark.parametrize(("checks", "message"), [
    ([{"path": "admin/"}], "needs a path starting with /"),
    ([{"status": 200}], "needs a path starting with /"),
    ([{"path": "/", "status": "ok"}], "status='ok'"),
    ([{"path": "/", "status": [200, 99]}], "status=[200, 99]"),
    ([{"path": "/", "text": 3}], "text=3"),
    ([{"path": "/", "body": "x"}], "unknown keys: body"),
    ({"path": "/"}, "must be a list"),
])
def test_bad_checks_fail_with_a_message(checks, message):
    with pytest.raises(AnsibleFilterError) as error:
        health_checks(checks)
    assert message in str(error.value)


def test_good_checks_pass_through():
    checks = [{"path": "/"}, {"path": "/admin/login/", "status": [200, 302], "text": "Django"}]
    assert health_checks(checks) == checks
