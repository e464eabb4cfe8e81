"""role_fingerprint: what decides a role's run changes the digest, and nothing else does."""

from __future__ import annotations

import shutil

import pytest
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.slipway.django.plugins.lookup import role_fingerprint

OMIT = "__omit_place_holder__"

BASE = {
    "app_name": "shop",
    "app_db_password": "s3cret",
    "app_version": "v1",
    "nginx_listen_port": "{{ slipway_test_port }}",
    "slipway_test_port": 80,
    "ansible_facts": {"distribution": "Debian", "distribution_major_version": "12",
                      "architecture": "x86_64", "uptime_seconds": 1},
}


def trusted(value):
    """A value as an inventory gives it: its {{ }} are templates."""
    return trust_as_template(value) if isinstance(value, str) else value


def digest(role, omit="1", exclude=(), **changes):
    variables = {name: trusted(value) for name, value in {**BASE, **changes}.items()}
    variables["omit"] = OMIT + omit
    loader = DataLoader()
    lookup = role_fingerprint.LookupModule(
        loader=loader, templar=Templar(loader=loader, variables=variables))
    [value] = lookup.run([role], variables=variables, exclude=list(exclude))
    return value


def test_same_inputs_give_the_same_digest():
    assert digest("nginx") == digest("nginx")
    assert len(digest("nginx")) == 64


def test_a_variable_the_role_names_changes_its_digest_as_templated():
    assert digest("nginx", slipway_test_port=8080) != digest("nginx")
    assert digest("nginx", nginx_listen_port=8080) != digest("nginx")
    # redis names no nginx_ variable
    assert digest("redis", slipway_test_port=8080) == digest("redis")


def test_the_app_server_changes_nginx_digest_through_nginx_websocket_default():
    # The provision play runs the lookup before the nginx role's defaults are loaded: the default
    # of nginx_websocket counts through the variable it names, app_server.
    assert digest("nginx", app_server="uvicorn") != digest("nginx")
    assert digest("nginx", app_server="uvicorn") != digest("nginx", app_server="gunicorn")
    assert digest("nginx", nginx_websocket=False) != digest("nginx", nginx_websocket=True)


def test_a_secret_the_role_uses_changes_its_digest():
    assert digest("postgresql", app_db_password="other") != digest("postgresql")


def test_a_variable_no_file_of_the_role_names_changes_nothing():
    assert digest("nginx", app_version="v2", unrelated_thing=1) == digest("nginx")


def test_the_roles_own_facts_set_during_the_run_do_not_count():
    assert digest("nginx", __nginx_version="1.26") == digest("nginx", __nginx_version="1.22")


def test_the_hosts_release_changes_it_but_volatile_facts_do_not():
    facts = dict(BASE["ansible_facts"])
    assert digest("python", ansible_facts={**facts, "distribution_major_version": "13"}) \
        != digest("python")
    assert digest("python", ansible_facts={**facts, "uptime_seconds": 99}) == digest("python")


def test_omits_placeholder_which_changes_every_run_does_not_count():
    assert digest("nginx", omit="1", nginx_listen_port="{{ omit }}") == \
        digest("nginx", omit="2", nginx_listen_port="{{ omit }}")


def test_an_undefined_value_is_counted_not_raised():
    assert digest("nginx", nginx_listen_port="{{ nothing_here }}") != digest("nginx")


def test_a_change_to_any_file_of_the_role_changes_it(tmp_path, monkeypatch):
    shutil.copytree(role_fingerprint.COLLECTION_ROOT / "roles" / "redis",
                    tmp_path / "roles" / "redis")
    (tmp_path / "galaxy.yml").write_text("version: 1.2.3\n")
    monkeypatch.setattr(role_fingerprint, "COLLECTION_ROOT", tmp_path)
    before = digest("redis")
    handler = tmp_path / "roles" / "redis" / "handlers" / "main.yml"
    handler.write_text(handler.read_text() + "\n# changed\n")
    assert digest("redis") != before
    (tmp_path / "galaxy.yml").write_text("version: 1.2.4\n")
    assert digest("redis") != before


@pytest.mark.parametrize("role", ["../app", "nope", "Nginx"])
def test_a_name_that_is_not_a_role_here_is_refused(role):
    with pytest.raises(AnsibleLookupError, match="role"):
        digest(role)


def test_excluded_variables_do_not_count():
    assert digest("app", app_deploy_run_id="run-1") != digest("app", app_deploy_run_id="run-2")
    assert digest("app", exclude=["app_deploy_run_id"], app_deploy_run_id="run-1") == \
        digest("app", exclude=["app_deploy_run_id"], app_deploy_run_id="run-2")
