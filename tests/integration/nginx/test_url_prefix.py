"""Several apps behind one nginx server name and port (app_url_prefix), end to end: the real
nginx role, run by ansible-playbook over podman's connection against a systemd container of the
test bed's Debian 12 image, once per app as each app's provisioning runs it, in an order where
no app serves / at first:

- shop (gunicorn, WSGI, SCRIPT_NAME=/shop) at /shop/ on port 8080: no app serves / there yet, so
  slipway's server of mounts answers, 404 outside the prefix;
- tasks (uvicorn) at / on port 8080: its site takes the server over (the server of mounts is
  removed) and includes shop's mount;
- api (uvicorn --root-path /api/v2, nginx takes the prefix off) at /api/v2/ on port 8080;
- solo (gunicorn) at /cynow/ on port 8081, alone there: the server of mounts serves it.

Maintenance mode of the app at / leaves the mounted apps alone, and a mounted app's its own.

Each app server answers with the path and the prefix it was given (WSGI's PATH_INFO and
SCRIPT_NAME, ASGI's path and root_path), which is what the app routes on and builds its URLs
from. A second run of the four changes nothing, and a prefix nginx cannot serve is refused
before anything changes.

Needs podman and localhost/slipway-debian12-systemd:latest (`make host image`; `make integration`
makes both), and the Debian mirror and PyPI from the container.
"""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests" / "testbed"))

from ansible_task import run_playbook  # noqa: E402
from testbed_container import Container, debian_container, wait_for  # noqa: E402

SERVERS = yaml.safe_load((ROOT / "roles" / "app" / "defaults" / "main.yml").read_text())[
    "app_server_packages"]
# app -> (its port, its prefix, its server)
APPS = {
    "shop": (8080, "/shop/", "gunicorn"),
    "tasks": (8080, "/", "uvicorn"),
    "api": (8080, "/api/v2/", "uvicorn"),
    "solo": (8081, "/cynow/", "gunicorn"),
}

WSGI = '''
import json
import os


def application(environ, start_response):
    body = json.dumps({"app": os.environ["APP"], "script_name": environ.get("SCRIPT_NAME", ""),
                       "path_info": environ.get("PATH_INFO", "")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
ASGI = '''
import json
import os


async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = json.dumps({"app": os.environ["APP"], "root_path": scope.get("root_path", ""),
                       "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def socket_of(app: str) -> str:
    return f"/run/{app}/app.sock"


def role_play(apps: list[str], tasks_from: str = "main", **extra) -> list[dict]:
    """The nginx role once per app, each with its own variables, as each app's provisioning."""
    tasks = [{"name": f"Provision nginx for {app}",
              "ansible.builtin.include_role": {"name": "slipway.django.nginx",
                                               "tasks_from": tasks_from},
              "vars": {"app_name": app, "app_server": APPS[app][2], "app_framework": "python",
                       "app_url_prefix": APPS[app][1], "nginx_listen_port": APPS[app][0],
                       "nginx_upstream_socket": socket_of(app), **extra}}
             for app in apps]
    return [{"hosts": "all", "gather_facts": False, "tasks": tasks}]


def provision(container: Container, apps: list[str], expect_failure: bool = False,
              tasks_from: str = "main", **extra) -> dict:
    report = run_playbook(role_play(apps, tasks_from, **extra), host=container.name,
                          connection="containers.podman.podman",
                          extra_vars={"ansible_python_interpreter": "/usr/bin/python3"})
    stats = report["stats"][container.name]
    failed = [result.get("msg") for play in report["plays"] for task in play["tasks"]
              for result in task["hosts"].values() if result.get("failed")]
    if expect_failure:
        assert stats["failures"] > 0
        return {"failed": failed, **stats}
    assert stats["failures"] == 0 and stats["unreachable"] == 0, failed
    return stats


def start_app(container: Container, app: str) -> None:
    port, prefix, server = APPS[app]
    socket = socket_of(app)
    script_name = prefix.rstrip("/")
    if server == "gunicorn":
        command = (f"SCRIPT_NAME={script_name} APP={app} exec /opt/apps/bin/gunicorn "
                   f"--chdir /opt/apps --bind unix:{socket} wsgi_app:application")
    else:
        root = f"--root-path {script_name} " if script_name else ""
        command = (f"APP={app} exec /opt/apps/bin/uvicorn --app-dir /opt/apps --uds {socket} "
                   f"{root}--lifespan off asgi_app:app")
    container.sh(f"mkdir -p /run/{app} && chmod 0755 /run/{app}")
    container.sh(f"systemd-run --unit {app}-test --property=UMask=0000 /bin/sh -c "
                 f"'{command} > /var/log/{app}.log 2>&1'")
    wait_for(lambda: container.sh(f"test -S {socket}", check=False).returncode == 0,
             f"{app}'s socket", container, f"/var/log/{app}.log")


@pytest.fixture(scope="module")
def testbed():
    with debian_container("url-prefix", systemd=True,
                          publish=sorted({port for port, _, _ in APPS.values()})) as container:
        container.apt_install("python3-venv")
        container.sh(f"python3 -m venv /opt/apps && /opt/apps/bin/pip install -q "
                     f"--disable-pip-version-check {SERVERS['gunicorn']} {SERVERS['uvicorn']}",
                     timeout=300)
        container.write("/opt/apps/wsgi_app.py", WSGI)
        container.write("/opt/apps/asgi_app.py", ASGI)
        for app in APPS:
            start_app(container, app)
        ports = {port: container.port(port) for port, _, _ in APPS.values()}
        yield container, ports


def get(port: int, path: str) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        payload = json.loads(body) if response.status == 200 else {}
        return response.status, payload, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def enabled_sites(container: Container) -> set[str]:
    return set(container.sh("ls /etc/nginx/sites-enabled").stdout.split())


def test_an_app_under_a_prefix_alone_on_its_names_gets_slipways_server_of_mounts(testbed):
    container, ports = testbed
    provision(container, ["shop"])
    assert "slipway-mounts-_-8080.conf" in enabled_sites(container)
    status, body, _ = get(ports[8080], "/shop/cart/?page=2")
    assert status == 200
    assert body == {"app": "shop", "script_name": "/shop", "path_info": "/cart/"}
    assert get(ports[8080], "/")[0] == 404
    status, _, headers = get(ports[8080], "/shop")
    assert (status, headers["location"]) == (301, "/shop/")


def test_the_app_at_root_takes_the_server_over_and_serves_the_mounts(testbed):
    container, ports = testbed
    provision(container, ["tasks", "api"])
    assert "slipway-mounts-_-8080.conf" not in enabled_sites(container)
    assert container.sh("test -e /etc/nginx/sites-available/slipway-mounts-_-8080.conf",
                        check=False).returncode == 1
    assert get(ports[8080], "/tasks/1")[1] == {"app": "tasks", "root_path": "", "path": "/tasks/1"}
    assert get(ports[8080], "/shop/cart/")[1] == {"app": "shop", "script_name": "/shop",
                                                  "path_info": "/cart/"}
    # uvicorn gets the path without the prefix and adds it back as the root path.
    assert get(ports[8080], "/api/v2/items")[1] == {"app": "api", "root_path": "/api/v2",
                                                    "path": "/api/v2/items"}
    # A path that only starts like a prefix is the root app's.
    assert get(ports[8080], "/shopping")[1]["app"] == "tasks"


def test_maintenance_mode_of_one_app_leaves_the_others_alone(testbed):
    # From the host, as users' requests through the published port arrive from the container's
    # gateway (not the loopback nginx_maintenance_allow always lets through).
    container, ports = testbed
    provision(container, ["tasks"], tasks_from="maintenance", nginx_maintenance="on")
    assert get(ports[8080], "/tasks/1")[0] == 503
    assert get(ports[8080], "/shop/cart/")[0] == 200
    assert get(ports[8080], "/api/v2/items")[0] == 200
    provision(container, ["tasks"], tasks_from="maintenance", nginx_maintenance="off")
    provision(container, ["shop"], tasks_from="maintenance", nginx_maintenance="on")
    assert get(ports[8080], "/shop/cart/")[0] == 503
    assert get(ports[8080], "/tasks/1")[0] == 200
    provision(container, ["shop"], tasks_from="maintenance", nginx_maintenance="off")
    assert get(ports[8080], "/shop/cart/")[0] == 200


def test_another_port_of_prefixed_apps_only_and_a_second_run_changes_nothing(testbed):
    container, ports = testbed
    provision(container, ["solo"])
    assert get(ports[8081], "/cynow/orders/")[1] == {"app": "solo", "script_name": "/cynow",
                                                     "path_info": "/orders/"}
    assert get(ports[8081], "/")[0] == 404
    stats = provision(container, list(APPS))
    assert stats["changed"] == 0
    assert get(ports[8080], "/shop/")[1]["app"] == "shop"


def test_a_prefix_nginx_cannot_serve_is_refused_before_anything_changes(testbed):
    container, _ = testbed
    files = "find /etc/nginx \\( -type f -o -type l \\) -exec ls -l --time-style=+%s.%N {} + | sort"
    before = container.sh(files).stdout
    play = role_play(["shop"])
    play[0]["tasks"][0]["vars"]["app_url_prefix"] = "/shop/../admin/"
    report = run_playbook(play, host=container.name, connection="containers.podman.podman",
                          extra_vars={"ansible_python_interpreter": "/usr/bin/python3"})
    messages = [result.get("msg", "") for task in report["plays"][0]["tasks"]
                for result in task["hosts"].values() if result.get("failed")]
    assert len(messages) == 1 and '"/shop/../admin/"' in messages[0], messages
    assert "Nothing was changed" in messages[0]
    assert container.sh(files).stdout == before
