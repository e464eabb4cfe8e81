from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.plugin_utils.history_secrets import (
    MASK,
    SecretScrubber,
    looks_secret,
    mask_secret_names,
    secret_values,
)


@pytest.mark.parametrize(("name", "secret"), [
    ("app_db_password", True),
    ("ansible_become_pass", True),
    ("DJANGO_SECRET_KEY", True),
    ("github_token", True),
    ("ssh_private_key_file", True),
    ("aws_credentials", True),
    ("app_name", False),
    ("release_id", False),
    ("passenger_count", True),  # over-masking is the safe side
])
def test_secret_names_are_recognised(name, secret):
    assert looks_secret(name) is secret


def test_secret_values_are_found_at_any_depth_and_only_under_secret_names():
    variables = {
        "app_name": "shop",
        "db_password": "Sup3rSecret",
        "users": [{"name": "admin", "password": "adm1n-pw"}],
        "vault": {"api_key": ["k-111111", "k-222222"]},
        "short_token": "abc",  # too short to mask safely
        "templated_secret": "{{ lookup('env', 'X') }}",
    }

    assert secret_values(variables) == {"Sup3rSecret", "adm1n-pw", "k-111111", "k-222222"}


def test_templated_secrets_are_rendered_when_a_renderer_is_given():
    variables = {"db_password": "{{ generated }}", "token": "{{ broken }}"}

    def render(text):
        if "broken" in text:
            raise ValueError("undefined")
        return "Generated-Pw-1"

    assert secret_values(variables, render) == {"Generated-Pw-1"}


def test_mask_secret_names_keeps_the_shape_and_hides_the_values():
    assert mask_secret_names({"deploy_description": "x", "db": {"password": "p", "port": 5432},
                              "tokens": ["a"]}) == {
        "deploy_description": "x", "db": {"password": MASK, "port": 5432}, "tokens": MASK}


@pytest.mark.parametrize(("text", "expected"), [
    ("login with hunter2-pw failed", f"login with {MASK} failed"),
    ("hunter2-pw-extended and hunter2-pw", f"{MASK} and {MASK}"),
    ("nothing to hide", "nothing to hide"),
    ("", ""),
])
def test_scrubber_masks_every_occurrence_longest_first(text, expected):
    scrubber = SecretScrubber()
    scrubber.add({"hunter2-pw", "hunter2-pw-extended"})

    assert scrubber.scrub(text) == expected


def test_scrubber_scrubs_nested_payloads_and_leaves_other_values_alone():
    scrubber = SecretScrubber()
    scrubber.add({"s3cr3t-value"})

    assert scrubber.scrub_all({"message": "s3cr3t-value!", "changed": 1,
                               "rows": [{"task": "use s3cr3t-value"}]}) == {
        "message": f"{MASK}!", "changed": 1, "rows": [{"task": f"use {MASK}"}]}
