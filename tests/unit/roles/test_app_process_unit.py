"""The app's process units: one that overlaps runs in its slot's release (a switch starts the new
slot's instance before the old one stops); a singleton runs the current release."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2
from ansible_collections.slipway.django.plugins.filter.app_processes import app_processes
from ansible_collections.slipway.django.plugins.filter.systemd_exec_shell import (
    systemd_exec_shell,
)

TEMPLATES = (Path(__file__).resolve().parents[3]
             / "roles" / "release" / "templates" / "etc" / "systemd" / "system")
VARIABLES = {
    "ansible_managed": "managed", "release_name": "shop", "release_user": "shop",
    "release_group": "shop",
    "release_root": "/srv/shop", "release_log_dir": "/var/log/shop",
    "release_env_file": "/srv/shop/shared/.env",
    "release_shared_dirs": [{"path": "shared/media"}],
}


def render(entry: dict) -> str:
    [item] = app_processes([entry], "shop", "app1")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),  # noqa: S701
                                     undefined=jinja2.StrictUndefined, trim_blocks=True)
    environment.filters["slipway.django.systemd_exec_shell"] = systemd_exec_shell
    return environment.get_template("app-process.service.j2").render(**VARIABLES, item=item)


def setting(unit: str, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(name + "=")]


def script(unit: str) -> str:
    """The shell script of ExecStart, as systemd hands it to /bin/sh (a %i left for systemd)."""
    [line] = setting(unit, "ExecStart")
    words = shlex.split(line.replace("%%", "\0").replace("$$", "$"))
    assert words[:2] == ["/bin/sh", "-c"]
    return words[2].replace("\0", "%")


def test_an_overlapping_process_runs_in_its_slot_with_a_runtime_directory_per_instance():
    unit = render({"name": "worker",
                   "command": "celery worker --hostname shop-${SLIPWAY_PROCESS}@%h"})
    assert setting(unit, "WorkingDirectory") == ["/srv/shop"]
    assert "SLIPWAY_PROCESS=%i" in setting(unit, "Environment")
    assert setting(unit, "RuntimeDirectory") == ["shop-worker-%i"]
    assert script(unit) == ('cd "slots/${SLIPWAY_PROCESS%%-*}" && PATH="$(pwd -P)/venv/bin:$PATH" '
                            '&& exec celery worker --hostname shop-${SLIPWAY_PROCESS}@%h')


def test_instances_of_an_overlapping_process_know_their_number():
    unit = render({"name": "rq", "command": "rq worker", "instances": 2})
    assert 'export SLIPWAY_INSTANCE="${SLIPWAY_PROCESS#*-}"' in script(unit)


def test_a_singleton_runs_the_current_release():
    unit = render({"name": "clock", "command": "python clock.py", "overlap": False})
    assert setting(unit, "WorkingDirectory") == ["/srv/shop/current"]
    assert setting(unit, "RuntimeDirectory") == ["shop-clock"]
    assert script(unit) == 'PATH="$(pwd -P)/venv/bin:$PATH" && exec python clock.py'
