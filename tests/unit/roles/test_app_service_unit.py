"""The app's web unit (one instance per slot, blue or green) starts the chosen app server of the
slot's release on the slot's own socket, which systemd passes it."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

TEMPLATES = (Path(__file__).resolve().parents[3]
             / "roles" / "release" / "templates" / "etc" / "systemd" / "system")
VARIABLES = {
    "ansible_managed": "managed", "release_name": "shop", "release_user": "shop",
    "release_group": "shop",
    "release_root": "/srv/shop", "release_log_dir": "/var/log/shop",
    "release_env_file": "/srv/shop/shared/.env",
    "release_shared_dirs": [{"path": "shared/media"}], "release_server_workers": 3,
    "release_server_threads": 1, "release_server_timeout": 30,
    "release_server_graceful_timeout": 30,
    "release_server_max_requests": 2000, "release_legacy_socket": "/run/shop/gunicorn.sock",
    "release_wsgi_application": "config.wsgi:application",
    "release_asgi_application": "config.asgi:application",
    "__release_web_socket": "/run/shop/web-%i.sock",
    "__release_url_prefix": "", "__release_upstream_strips_prefix": False,
}


def render(server: str, **variables) -> str:
    # As Ansible's template module renders: trim_blocks on, no HTML escaping (a unit file).
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),  # noqa: S701
                                     undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters["int"] = int
    return environment.get_template("app.service.j2").render(
        **{**VARIABLES, **variables}, release_server=server)


def exec_start(unit: str) -> str:
    lines = unit.split("ExecStart=", 1)[1].splitlines()
    command = []
    for line in lines:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command)


def test_gunicorn_serves_the_wsgi_application_and_notifies_systemd():
    unit = render("gunicorn")
    command = exec_start(unit)
    assert command.startswith(
        "/srv/shop/slots/%i/venv/bin/gunicorn --bind unix:/run/shop/web-%i.sock")
    assert command.endswith(" config.wsgi:application")
    assert "--worker-class" not in command
    # Workers are replaced after 2000 to 3000 requests: far apart, not all at once.
    assert "--max-requests 2000 --max-requests-jitter 1000" in command
    assert "Type=notify" in unit and "ExecReload=" in unit


def test_gunicorn_with_uvicorn_workers_serves_the_asgi_application():
    command = exec_start(render("gunicorn+uvicorn-worker"))
    assert "--worker-class uvicorn_worker.UvicornWorker" in command
    assert command.endswith(" config.asgi:application")


def test_uvicorn_serves_the_asgi_application_on_the_systemd_socket():
    unit = render("uvicorn")
    command = exec_start(unit)
    assert command.startswith("/srv/shop/slots/%i/venv/bin/uvicorn --fd 3 --workers 3")
    assert command.endswith(" config.asgi:application")
    assert "Type=exec" in unit and "Type=notify" not in unit
    assert "ExecReload=" not in unit


def test_uvicorn_under_a_url_prefix_adds_it_back_as_the_root_path():
    # nginx takes /shop off the path (app_url_prefix); gunicorn reads SCRIPT_NAME instead.
    command = exec_start(render("uvicorn", __release_url_prefix="/shop",
                                __release_upstream_strips_prefix=True))
    assert command.endswith(" --no-server-header --root-path /shop config.asgi:application")
    assert "--root-path" not in exec_start(render("gunicorn", __release_url_prefix="/shop"))


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "gunicorn+uvicorn-worker"])
def test_every_server_needs_the_socket(server):
    unit = render(server)
    assert "Requires=shop@%i.socket" in unit
    assert "WorkingDirectory=/srv/shop/slots/%i" in unit
