"""The redis role's ACL files and the app's REDIS_URL, rendered by Ansible from the roles' own
templates and expressions (tests/testbed/role_templates.py): one line per user holding the
password's SHA-256, the default user off unless a single-password host is being upgraded, a
configuration with aclfile and no requirepass, and a URL that names the app's user."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import role_templates
import yaml

TASKS = Path(role_templates.ROLES) / "redis" / "tasks" / "users.yml"
USER = "etc/redis/users.d/user.acl.j2"
DEFAULT = "etc/redis/users.d/default.acl.j2"
CONFIG = "etc/redis/redis.conf.j2"
REDIS = "redis-server"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task_vars(name: str) -> dict:
    return next(task for task in yaml.safe_load(TASKS.read_text()) if task["name"] == name)


def user_file(user: str, password: str) -> str:
    """users.d/USER.acl as the role's task writes it for the app's user."""
    task = task_vars("Write the app's user's file")
    variables = {"app_name": "shop", "app_redis_password": password, "redis_user": user,
                 "__redis_package": REDIS}
    facts = {name: role_templates.expression("redis", text, **variables)
             for name, text in task["vars"].items()}
    return role_templates.render("redis", USER, **variables, **facts)


def legacy_hash(config: str) -> str:
    """What the role notes of a configuration's requirepass (the SHA-256 of its password)."""
    task = task_vars("Note the password of the single-password configuration, if any")
    content = base64.b64encode(config.encode()).decode()
    variables = {"app_name": "shop", "__redis_current_config": {"content": content}}
    legacy = role_templates.expression("redis", task["vars"]["__legacy"], **variables)
    text = task["ansible.builtin.set_fact"]["__redis_legacy_hash"]
    return role_templates.expression("redis", text, __legacy=legacy, **variables).strip()


def test_an_app_user_is_one_line_with_the_passwords_sha256_and_no_admin_commands():
    password = "pässword with spaces/:@"
    line = user_file("shop", password)
    assert line == f"user shop on #{sha256(password)} ~* &* +@all -@admin\n"
    assert password not in line


def test_the_user_defaults_to_app_redis_user_then_app_name():
    assert role_templates.value("redis", "redis_user", app_name="shop") == "shop"
    assert role_templates.value("redis", "redis_user", app_name="shop",
                                app_redis_user="shop-web") == "shop-web"


@pytest.mark.parametrize("config, expected", [
    ("port 6379\n# requirepass foobared\n", ""),  # Debian's own: commented out
    ("port 6379\nrequirepass s3cret/pw\nmaxmemory 0\n", sha256("s3cret/pw")),
    ("aclfile /etc/redis/users.acl\n", ""),
])
def test_the_single_password_of_an_upgraded_host_is_noted_as_its_hash(config, expected):
    assert legacy_hash(config) == expected


def test_a_new_host_turns_the_default_user_off():
    assert role_templates.render("redis", DEFAULT, __redis_legacy_hash="") == "user default off\n"


def test_an_upgraded_host_keeps_its_password_for_the_default_user_with_app_rights():
    rendered = role_templates.render("redis", DEFAULT, __redis_legacy_hash="ab" * 32)
    assert rendered == f"user default on #{'ab' * 32} ~* &* +@all -@admin\n"


@pytest.mark.parametrize("setting", ["off", "OFF", False])
def test_off_turns_the_default_user_off_even_on_an_upgraded_host(setting):
    rendered = role_templates.render("redis", DEFAULT, redis_default_user=setting,
                                     __redis_legacy_hash="ab" * 32)
    assert rendered == "user default off\n"


@pytest.mark.parametrize("package, directory, socket", [
    ("redis-server", "/etc/redis", "/run/redis/redis-server.sock"),
    ("valkey-server", "/etc/valkey", "/run/valkey/valkey-server.sock"),
])
def test_the_configuration_loads_the_users_file_and_has_no_requirepass(package, directory, socket):
    config = role_templates.render("redis", CONFIG, app_name="shop", app_redis_password="pw",
                                   __redis_package=package).splitlines()
    assert f"aclfile {directory}/users.acl" in config
    assert f"unixsocket {socket}" in config
    assert "unixsocketperm 700" in config
    assert not [line for line in config if line.startswith("requirepass")]
    assert "pw" not in " ".join(line.split("#")[0] for line in config).split()


def test_redis_url_names_the_apps_user_and_encodes_both_parts():
    url = role_templates.app_redis_url(user="shop", password="p@ss:w/rd %", host="cache1",
                                       port=6379, db=2)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("redis", "cache1", 6379, "/2")
    assert unquote(parts.username) == "shop"
    assert unquote(parts.password) == "p@ss:w/rd %"
    assert url == "redis://shop:p%40ss%3Aw%2Frd%20%25@cache1:6379/2"


def test_redis_url_user_defaults_to_app_name():
    text = '{{ app_redis_user }}'
    assert role_templates.expression("app", text, app_name="shop") == "shop"
