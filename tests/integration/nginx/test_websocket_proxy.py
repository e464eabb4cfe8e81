"""WebSocket through the app's nginx site (nginx_websocket), end to end on a real nginx: a podman
container of the test bed's Debian 12 image runs Debian's nginx and uvicorn (the version the app
role pins) serving a small ASGI app on a Unix socket, behind sites rendered from the nginx role's
own templates by Ansible (tests/testbed/nginx_site.py):

- ws-on (nginx_websocket on, from app_server uvicorn): a WebSocket handshake gets 101 and a
  message comes back echoed; a plain GET still works and reaches the app without Connection
  or Upgrade headers (the upstream keepalive is kept);
- ws-on-2 (on too): a second site with its own map, in the same nginx (nginx -t passes);
- ws-off (nginx_websocket off): the handshake is not upgraded, the app sees a plain GET;
- other: a site of nginx_sites (not the app's) in the same nginx, proxying to the same socket.

Needs podman and localhost/slipway-debian12-systemd:latest (`make host image`; `make integration`
makes both), and the Debian mirror and PyPI from the container.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "testbed"))

import nginx_site  # noqa: E402
from testbed_container import debian_container, get, run, wait_for  # noqa: E402

APP_DEFAULTS = yaml.safe_load((ROOT / "roles" / "app" / "defaults" / "main.yml").read_text())
UVICORN = APP_DEFAULTS["app_server_packages"]["uvicorn"]
WEBSOCKETS = "websockets==15.0.1"
SOCKET = "/run/wsapp/app.sock"
# site name -> (port in the container, the variables it is rendered with beyond the common ones)
SITES = {
    "ws-on": (8080, {"app_server": "uvicorn"}),
    "ws-on-2": (8082, {"app_server": "gunicorn+uvicorn-worker"}),
    "ws-off": (8081, {"app_server": "uvicorn", "nginx_websocket": False}),
}
# A site of nginx_sites (not the app's): a proxy to the same socket, with a location of its own.
OTHER = {"name": "other", "listen_port": 8083, "upstream": [f"unix:{SOCKET}"],
         "hide_headers": ["X-Frame-Options"],
         "locations": [{"match": "~ ^/events/", "buffering": False, "read_timeout": "10m"}]}
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept

# A pure ASGI app: HTTP answers with the connection headers it was given, a WebSocket echoes.
APP = '''
import json


async def app(scope, receive, send):
    if scope["type"] == "http":
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        body = json.dumps({"path": scope["path"], "connection": headers.get("connection", ""),
                           "upgrade": headers.get("upgrade", "")}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
'''


def site_files(site: str, variables: dict) -> dict[str, str]:
    """What the nginx role writes for one site, rendered from its templates."""
    return {
        f"/etc/nginx/sites-available/{site}.conf": nginx_site.render(nginx_site.SITE, **variables),
        f"/etc/nginx/slipway/{site}-upstream.conf":
            nginx_site.render("etc/nginx/slipway/upstream.conf.j2", **variables),
        f"/etc/nginx/slipway/{site}-maintenance.conf":
            nginx_site.render("etc/nginx/slipway/maintenance-state.conf.j2",
                              __nginx_maintenance_state="off", **variables),
        f"/etc/nginx/slipway/{site}-maintenance-allow.conf":
            nginx_site.render("etc/nginx/slipway/maintenance-allow.conf.j2", **variables),
        f"/etc/nginx/snippets/{site}-files.conf":
            nginx_site.render("etc/nginx/snippets/files.conf.j2", **variables),
    }


@pytest.fixture(scope="module")
def testbed():
    with debian_container("websocket-proxy",
                           publish=[port for port, _ in SITES.values()]
                           + [OTHER["listen_port"]]) as container:
        container.apt_install("nginx-light", "python3-venv")
        container.sh(f"python3 -m venv /opt/wsapp && /opt/wsapp/bin/pip install -q "
                     f"--disable-pip-version-check {UVICORN} {WEBSOCKETS}", timeout=300)
        container.write("/opt/wsapp/wsapp.py", APP)
        run("podman", "exec", "-d", container.name, "sh", "-c",
            f"mkdir -p /run/wsapp && cd /opt/wsapp && exec bin/uvicorn --uds {SOCKET} "
            "--lifespan off --ws websockets wsapp:app > /var/log/wsapp.log 2>&1")
        wait_for(lambda: container.sh(f"test -S {SOCKET}", check=False).returncode == 0,
                 "uvicorn's socket", container, "/var/log/wsapp.log")

        container.sh("rm -f /etc/nginx/sites-enabled/default")
        for site, (port, variables) in SITES.items():
            common = {"app_name": site, "nginx_listen_port": port, "nginx_upstream_socket": SOCKET}
            for path, content in site_files(site, {**common, **variables}).items():
                container.write(path, content)
            container.sh(f"ln -sf /etc/nginx/sites-available/{site}.conf /etc/nginx/sites-enabled/")
        other = {**nginx_site.role_variables()["__nginx_site_defaults"], **OTHER, "tls": False,
                 "certificate_file": "", "certificate_key_file": ""}
        container.write("/etc/nginx/sites-available/other.conf",
                        nginx_site.render(nginx_site.SITE, __nginx_site=other))
        container.sh("ln -sf /etc/nginx/sites-available/other.conf /etc/nginx/sites-enabled/")
        test = container.sh("nginx -t", check=False)
        assert test.returncode == 0, f"nginx -t refused the sites:\n{test.stderr}"
        container.sh("nginx")
        ports = {site: container.port(port) for site, (port, _) in SITES.items()}
        ports["other"] = container.port(OTHER["listen_port"])

        def answers() -> bool:
            try:
                return all(get(port)[0] == 200 for port in ports.values())
            except OSError:
                return False

        wait_for(answers, "nginx answering on every site", container, "/var/log/nginx/error.log")
        yield container, ports


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def websocket(port: int, message: str) -> dict:
    """A WebSocket client by hand (RFC 6455): the handshake, one masked text frame, the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError(f"closed during the response head: {head!r}")
            head += chunk
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, header_lines):
            field, _, value = line.partition(":")
            headers[field.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        result = {"status": status, "headers": headers}
        if status != 101:
            length = int(headers.get("content-length", "0"))
            result["body"] = read_exactly(sock, length).decode() if length else ""
            return result
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # noqa: S324
        result["accept_ok"] = headers.get("sec-websocket-accept") == expected
        payload = message.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
        first, second = read_exactly(sock, 2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", read_exactly(sock, 2))
        result["opcode"] = first & 0x0F
        result["echo"] = read_exactly(sock, length).decode()
        # Close (1000, masked, no reason); the server answers with its own close.
        code = struct.pack("!H", 1000)
        sock.sendall(struct.pack("!BB", 0x88, 0x82) + mask
                     + bytes(byte ^ mask[index] for index, byte in enumerate(code)))
        return result


@pytest.mark.parametrize("site", ["ws-on", "ws-on-2"])
def test_a_websocket_handshake_through_nginx_is_upgraded_and_echoes(testbed, site):
    _, ports = testbed
    result = websocket(ports[site], f"hello from {site}")
    assert result["status"] == 101, result
    assert result["headers"].get("upgrade", "").lower() == "websocket"
    assert result["accept_ok"], result["headers"]
    assert result["opcode"] == 0x1
    assert result["echo"] == f"echo: hello from {site}"


@pytest.mark.parametrize("site", ["ws-on", "ws-off"])
def test_a_plain_get_reaches_the_app_with_no_connection_header(testbed, site):
    # Connection "" (off) or the map's '' (on): nginx sends the app no Connection header, so the
    # upstream connection stays open for the next request (keepalive).
    _, ports = testbed
    status, seen = get(ports[site], "/plain")
    assert status == 200
    assert seen == {"path": "/plain", "connection": "", "upgrade": ""}


def test_off_the_handshake_is_not_upgraded(testbed):
    _, ports = testbed
    result = websocket(ports["ws-off"], "hello")
    assert result["status"] != 101, result
    # nginx passed it on as a plain request: the app answered it and saw no Upgrade.
    assert result["status"] == 200
    assert json.loads(result["body"]) == {"path": "/ws", "connection": "", "upgrade": ""}


@pytest.mark.parametrize("path", ["/page", "/events/1"])
def test_a_site_of_nginx_sites_proxies_to_its_own_upstream(testbed, path):
    # Written from the app's site template beside the app's sites (nginx -t passed them all):
    # its location of its own and location / both reach the app, the security headers once.
    _, ports = testbed
    connection = http.client.HTTPConnection("127.0.0.1", ports["other"], timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        seen = json.loads(response.read())
        frame_options = [value for name, value in response.getheaders()
                         if name.lower() == "x-frame-options"]
    finally:
        connection.close()
    assert response.status == 200
    assert seen["path"] == path
    assert frame_options == ["DENY"]
