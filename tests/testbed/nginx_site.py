"""Render the nginx role's templates as its tasks do, without a host (role_templates for the
nginx role):

    render("etc/nginx/sites-available/site.conf.j2", app_name="shop", app_server="uvicorn")

Variables named with two leading underscores are the role's facts (set_fact during a run, such
as __nginx_http2_directive): they override the role's vars, as set_fact does.
"""

from __future__ import annotations

import role_templates

ROLE = role_templates.ROLES / "nginx"
SITE = "etc/nginx/sites-available/site.conf.j2"


def role_variables(**variables) -> dict:
    """The variables a task of the role sees: defaults < the given (inventory) < role vars <
    the given facts."""
    return role_templates.role_variables("nginx", **variables)


def value(name: str, **variables):
    """One variable of the role as templated for a host with these variables."""
    return role_templates.value("nginx", name, **variables)


def render(template: str = SITE, source: str | None = None, **variables) -> str:
    """The file the role writes from one of its templates (a path under roles/nginx/templates);
    source: that template's text instead of the file's (an older version of it)."""
    return role_templates.render("nginx", template, source, **variables)
