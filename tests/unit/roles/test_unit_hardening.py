"""Every unit slipway.django installs is hardened by one template (the release role's
hardening.j2, which the app and console roles link to): the app's units and the console's may
differ in their umask alone."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from ansible_collections.slipway.django.plugins.filter.app_processes import app_processes
from ansible_collections.slipway.django.plugins.filter.systemd_exec_shell import (
    systemd_exec_shell,
)

ROLES = Path(__file__).resolve().parents[3] / "roles"
UNITS = Path("templates") / "etc" / "systemd" / "system"
APP = {
    "ansible_managed": "managed", "app_name": "shop", "app_user": "shop", "app_group": "shop",
    "app_root": "/srv/shop", "app_log_dir": "/var/log/shop", "app_server": "gunicorn",
    "app_gunicorn_workers": 3, "app_gunicorn_threads": 1, "app_gunicorn_timeout": 30,
    "app_gunicorn_graceful_timeout": 30, "app_gunicorn_max_requests": 2000,
    "app_wsgi_application": "config.wsgi:application",
    "app_asgi_application": "config.asgi:application", "__app_web_socket": "/run/shop/web-%i.sock",
    "app_db_engine": "postgresql", "app_backup_schedule_user": "shop-backup",
    "app_backup_schedule_dir": "/var/backups/shop-scheduled", "__app_backup_unit": "shop-backup",
    "__app_backup_etc": "/etc/slipway/backup/shop",
    "__app_backup_code_dir": "/opt/slipway/backup/shop",
    "__app_backup_copy": {},
    # The release role's names of the same (its defaults read the app role's).
    "release_name": "shop", "release_user": "shop", "release_group": "shop",
    "release_root": "/srv/shop", "release_log_dir": "/var/log/shop",
    "release_env_file": "/srv/shop/shared/.env", "release_server": "gunicorn",
    "release_server_workers": 3, "release_server_threads": 1, "release_server_timeout": 30,
    "release_server_graceful_timeout": 30, "release_server_max_requests": 2000,
    "release_wsgi_application": "config.wsgi:application",
    "release_asgi_application": "config.asgi:application",
    "__release_web_socket": "/run/shop/web-%i.sock", "__release_upstream_strips_prefix": False,
    "__release_url_prefix": "", "release_shared_dirs": [{"path": "shared/media"}],
}
CONSOLE = {
    "ansible_managed": "managed", "console_user": "slipway-console",
    "console_group": "slipway-console", "console_state_dir": "/var/lib/slipway-console",
    "console_root": "/opt/slipway-console",
    "__console_config_file": "/etc/slipway-console/console.yml",
    "__console_ansible_cfg": "/etc/slipway-console/ansible.cfg",
    "__console_env_file": "/etc/slipway-console/console.env",
    "__console_command": "/opt/slipway-console/current/venv/bin/slipway-console",
    "console_port": 8100, "console_cancel_grace_seconds": 10, "console_environments": [{}],
}
# systemd's sandboxing and credential settings: the hardening template's to set, no unit's own.
SANDBOXING = ("NoNewPrivileges", "Protect", "Private", "Restrict", "Capability", "Ambient",
              "SystemCall", "LockPersonality", "MemoryDenyWriteExecute", "DevicePolicy",
              "KeyringMode", "RemoveIPC", "UMask", "DynamicUser", "ProcSubset")


def render(role: str, template: str, variables: dict) -> str:
    # As Ansible's template module renders: the role's templates, trim_blocks on, no escaping.
    environment = jinja2.Environment(  # noqa: S701
        loader=jinja2.FileSystemLoader(str(ROLES / role / UNITS)),
        undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters["int"] = int
    environment.filters["slipway.django.systemd_exec_shell"] = systemd_exec_shell
    return environment.get_template(template).render(**variables)


def hardening(unit: str) -> list[str]:
    """The settings from the hardening template's heading to the end of [Service]."""
    lines = unit.splitlines()
    start = lines.index("# Hardening: an unprivileged user, a read-only system, no capabilities,"
                        " a system-call filter.")
    block = []
    for line in lines[start + 1:]:
        if not line or line.startswith("["):
            break
        if not line.startswith("#"):
            block.append(line)
    # Every sandboxing setting of the unit is in it: none set apart, before it.
    apart = [line for line in lines[:start] if line.startswith(SANDBOXING)]
    assert not apart, f"sandboxing set outside the shared hardening: {apart}"
    return block


def without_umask(block: list[str]) -> list[str]:
    return [line for line in block if not line.startswith("UMask=")]


def umask(block: list[str]) -> list[str]:
    return [line for line in block if line.startswith("UMask=")]


def app_units() -> dict[str, str]:
    [process] = app_processes([{"name": "worker", "command": "celery worker"}], "shop", "app1")
    return {
        "web": render("release", "app.service.j2", APP),
        "process": render("release", "app-process.service.j2", {**APP, "item": process}),
        "backup": render("app", "app-backup.service.j2", APP),
    }


@pytest.mark.parametrize("role", ["app", "console"])
def test_the_app_and_the_console_include_the_release_role_s_template_itself(role):
    link = ROLES / role / UNITS / "hardening.j2"
    assert link.is_symlink()
    assert link.resolve() == (ROLES / "release" / UNITS / "hardening.j2").resolve()
    assert not (ROLES / "release" / UNITS / "hardening.j2").is_symlink()
    # A link inside the collection, by a relative path (ansible-galaxy keeps it as a link).
    target = Path(link.readlink())
    assert not target.is_absolute()
    assert ROLES.parent.resolve() in link.resolve().parents


@pytest.mark.parametrize("name", ["web", "process", "backup"])
def test_app_units_and_the_console_are_hardened_alike_but_for_the_umask(name):
    app = hardening(app_units()[name])
    console = hardening(render("console", "slipway-console.service.j2", CONSOLE))
    assert "NoNewPrivileges=yes" in app and "ProtectSystem=strict" in app
    assert "SystemCallFilter=@system-service" in app and "CapabilityBoundingSet=" in app
    assert without_umask(app) == without_umask(console)
    assert umask(app) == ["UMask=0027"]
    assert umask(console) == ["UMask=0077"]


def test_the_umask_defaults_to_0027_and_an_including_template_chooses_it():
    assert umask(render("app", "hardening.j2", {}).splitlines()) == ["UMask=0027"]
    chosen = render("app", "hardening.j2", {"__hardening_umask": "0007"})
    assert umask(chosen.splitlines()) == ["UMask=0007"]
