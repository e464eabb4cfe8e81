"""Render the nginx role's templates as its tasks do, without a host: the role's defaults under the
given variables, its vars above them, templated by Ansible itself the way the template module
does (trim_blocks on, lstrip_blocks off).

    render("etc/nginx/sites-available/site.conf.j2", app_name="shop", app_server="uvicorn")

Variables named with two leading underscores are the role's facts (set_fact during a run, such
as __nginx_http2_directive): they override the role's vars, as set_fact does.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nginx"
SITE = "etc/nginx/sites-available/site.conf.j2"


def _trusted(value):
    """A value as an inventory or a role's files give it: its {{ }} are templates."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def role_variables(**variables) -> dict:
    """The variables a task of the role sees: defaults < the given (inventory) < role vars <
    the given facts."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    inventory = {name: value for name, value in variables.items() if not name.startswith("__")}
    facts = {name: value for name, value in variables.items() if name.startswith("__")}
    return _trusted({"ansible_managed": "Ansible managed", "groups": {},
                     **defaults, **inventory, **role_vars, **facts})


def value(name: str, **variables):
    """One variable of the role as templated for a host with these variables."""
    templar = Templar(loader=DataLoader(), variables=role_variables(**variables))
    return templar.template(trust_as_template("{{ " + name + " }}"))


def render(template: str = SITE, source: str | None = None, **variables) -> str:
    """The file the role writes from one of its templates (a path under roles/nginx/templates);
    source: that template's text instead of the file's (an older version of it)."""
    text = (ROLE / "templates" / template).read_text() if source is None else source
    templar = Templar(loader=DataLoader(), variables=role_variables(**variables))
    rendered = templar.template(trust_as_template(text), escape_backslashes=False,
                                overrides={"trim_blocks": True, "lstrip_blocks": False,
                                           "newline_sequence": "\n"})
    return rendered or ""
