"""The scheduled backup's units: a hardened oneshot service as an unprivileged user, whose
configuration and secrets are systemd credentials, and a persistent timer."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

TEMPLATES = (Path(__file__).resolve().parents[3]
             / "roles" / "app" / "templates" / "etc" / "systemd" / "system")
COPY = {"host": "backup1", "path": "/srv/backups/shop", "address": "backup1", "port": 22,
        "user": "shop-backup"}
VARIABLES = {
    "ansible_managed": "managed", "app_name": "shop", "app_db_engine": "postgresql",
    "app_backup_schedule_user": "shop-backup", "app_backup_schedule": "*-*-* 03:00:00",
    "app_backup_schedule_dir": "/var/backups/shop-scheduled",
    "app_backup_schedule_random_delay": "15min", "__app_backup_unit": "shop-backup",
    "__app_backup_etc": "/etc/slipway/backup/shop",
    "__app_backup_code_dir": "/opt/slipway/backup/shop",
}


def render(name: str, **overrides) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),  # noqa: S701
                                     undefined=jinja2.StrictUndefined, trim_blocks=True)
    return environment.get_template(name).render(**{**VARIABLES, **overrides})


def settings(unit: str) -> list:
    return [line for line in unit.splitlines() if line and not line.startswith(("#", "["))]


@pytest.mark.parametrize("copy", [{}, COPY])
def test_the_service_runs_db_backup_s_code_hardened_as_its_user(copy):
    unit = render("app-backup.service.j2", __app_backup_copy=copy)
    lines = settings(unit)
    assert "Type=oneshot" in lines and "User=shop-backup" in lines
    assert ("ExecStart=/usr/bin/python3 -I /opt/slipway/backup/shop/slipway_backup.py run"
            in lines)
    assert "ReadWritePaths=/var/backups/shop-scheduled" in lines
    # The app units' hardening (the shared template, with its default umask), as is.
    hardening = settings(render("hardening.j2"))
    assert hardening and all(line in lines for line in hardening)
    credentials = [line for line in lines if line.startswith("LoadCredential=")]
    expected = ["config:/etc/slipway/backup/shop/config.json",
                "db_password:/etc/slipway/backup/shop/db_password"]
    if copy:
        expected += ["ssh_key:/etc/slipway/backup/shop/id_ed25519",
                     "known_hosts:/etc/slipway/backup/shop/known_hosts"]
    assert credentials == [f"LoadCredential={item}" for item in expected]
    # No secret or setting reaches it through the environment.
    assert not [line for line in lines if line.startswith(("Environment", "PassEnvironment"))]


def test_the_timer_is_persistent_and_spread():
    lines = settings(render("app-backup.timer.j2"))
    assert "OnCalendar=*-*-* 03:00:00" in lines
    assert "Persistent=true" in lines and "RandomizedDelaySec=15min" in lines
    assert "Unit=shop-backup.service" in lines and "WantedBy=timers.target" in lines
