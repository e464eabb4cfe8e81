"""Render a role's templates and variables as its tasks do, without a host: the role's defaults
under the given variables, its vars above them, templated by Ansible itself the way the template
module does (trim_blocks on, lstrip_blocks off).

    render("redis", "etc/redis/users.d/user.acl.j2", __redis_acl_user="shop", ...)
    value("redis", "redis_user", app_name="shop")

Variables named with two leading underscores are the role's facts (set_fact during a run): they
override the role's vars, as set_fact does.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
# Roles a play loads together: the app role imports the release role's phases (import_role is
# static, so both roles' defaults and vars are the play's), and the release role's defaults read
# the app role's variables.
TOGETHER = {"app": ("release", "app"), "release": ("app", "release")}


def _trusted(value):
    """A value as an inventory or a role's files give it: its {{ }} are templates."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def _load(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def role_variables(role: str, **variables) -> dict:
    """The variables a task of the role sees: defaults < the given (inventory) < role vars <
    the given facts."""
    roles = TOGETHER.get(role, (role,))
    defaults = {name: value for each in roles
                for name, value in _load(ROLES / each / "defaults" / "main.yml").items()}
    role_vars = {name: value for each in roles
                 for name, value in _load(ROLES / each / "vars" / "main.yml").items()}
    inventory = {name: value for name, value in variables.items() if not name.startswith("__")}
    facts = {name: value for name, value in variables.items() if name.startswith("__")}
    return _trusted({"ansible_managed": "Ansible managed", "groups": {},
                     **defaults, **inventory, **role_vars, **facts})


def templar(role: str, **variables) -> Templar:
    return Templar(loader=DataLoader(), variables=role_variables(role, **variables))


def value(role: str, name: str, **variables):
    """One variable of the role as templated for a host with these variables."""
    return templar(role, **variables).template(trust_as_template("{{ " + name + " }}"))


def expression(role: str, text: str, **variables):
    """A role's own template text (a task's value, say), templated as the role would."""
    return templar(role, **variables).template(trust_as_template(text))


def render(role: str, template: str, source: str | None = None, **variables) -> str:
    """The file the role writes from one of its templates (a path under roles/ROLE/templates);
    source: that template's text instead of the file's (an older version of it)."""
    text = (ROLES / role / "templates" / template).read_text() if source is None else source
    rendered = templar(role, **variables).template(
        trust_as_template(text), escape_backslashes=False,
        overrides={"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"})
    return rendered or ""


def app_redis_url(user: str, password: str, host: str, port: int, db: int) -> str:
    """REDIS_URL as the app role writes it into the .env: its own expression, from
    roles/app/vars/main.yml."""
    variables = yaml.safe_load((ROLES / "app" / "vars" / "main.yml").read_text())
    return expression("app", variables["__app_redis_url"], app_name="app",
                      app_redis_user=user, app_redis_password=password, app_redis_host=host,
                      app_redis_port=port, app_redis_db=db).strip()


def app_database_url(engine: str, user: str, password: str, host: str, port: int,
                     name: str) -> str:
    """DATABASE_URL as the app role writes it into the .env (roles/app/vars/main.yml)."""
    environment = value("app", "__app_common_environment", app_name="app", app_db_engine=engine,
                        app_db_user=user, app_db_password=password, app_db_host=host,
                        app_db_port=port, app_db_name=name)
    return environment["DATABASE_URL"].strip()
