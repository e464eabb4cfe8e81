"""A throwaway podman container of the test bed's Debian image, for integration tests that need
real Debian packages (nginx, redis-server...): started for a test module, always removed.

    with debian_container("websocket-proxy", publish=[8080]) as container:
        container.apt_install("nginx-light")
        container.sh("nginx")
        port = container.port(8080)

Needs podman and the image (`make host image`; `make integration` makes both).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

DEBIAN12 = "localhost/slipway-debian12-systemd:latest"


def run(*argv: str, timeout: float = 120, check: bool = True, stdin: str | None = None):
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv[:6])}... failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


class Container:
    def __init__(self, name: str, systemd: bool = False):
        self.name = name
        self.systemd = systemd

    def sh(self, script: str, timeout: float = 120, check: bool = True, stdin: str | None = None):
        interactive = ["-i"] if stdin is not None else []
        return run("podman", "exec", *interactive, self.name, "sh", "-euc", script,
                   timeout=timeout, check=check, stdin=stdin)

    def write(self, path: str, content: str) -> None:
        run("podman", "exec", "-i", self.name, "sh", "-euc",
            f'mkdir -p "$(dirname {path})" && cat > {path}', stdin=content)

    def port(self, port: int) -> int:
        mapped = run("podman", "port", self.name, f"{port}/tcp").stdout.split()[0]
        return int(mapped.rsplit(":", 1)[1])

    def apt_install(self, *packages: str, timeout: float = 300) -> None:
        """Debian packages from the mirror. Without systemd in the container, no service is
        started by their scripts (there is no init to start it)."""
        policy = ("" if self.systemd else
                  "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; "
                  "chmod 0755 /usr/sbin/policy-rc.d; ")
        self.sh(f"{policy}apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install "
                f"-y -qq {' '.join(packages)} >/dev/null", timeout=timeout)


def wait_for(check, what: str, container: Container, log: str, attempts: int = 100) -> None:
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.2)
    output = container.sh(f"cat {log} 2>&1 || true", check=False).stdout
    pytest.fail(f"{what} never happened; {log}:\n{output}")


@contextmanager
def debian_container(label: str, publish: list[int] = (), systemd: bool = False,
                      image: str = DEBIAN12) -> Iterator[Container]:
    """A container of ``image`` (sleeping, or booted with systemd as its init), its ``publish``
    ports mapped to free ports on 127.0.0.1; removed on the way out, whatever happened."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: `make host` installs it (this test runs Debian "
                    "packages in a container)")
    if run("podman", "image", "exists", image, check=False).returncode != 0:
        pytest.fail(f"the test bed's image {image} is missing: `make image` builds it")
    name = f"slipway-test-{label}-{uuid.uuid4().hex[:10]}"
    ports = [arg for port in publish for arg in ("-p", f"127.0.0.1::{port}")]
    command = ["--systemd=always", image, "/sbin/init"] if systemd else [image, "sleep", "infinity"]
    try:
        run("podman", "run", "-d", "--name", name, "--label", f"slipway.test={label}", *ports,
            *command)
        container = Container(name, systemd=systemd)
        if systemd:
            wait_for(lambda: container.sh("systemctl is-system-running", check=False)
                     .stdout.strip() in ("running", "degraded"),
                     "systemd's start", container, "/dev/null")
        yield container
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)


def get(port: int, path: str = "/") -> tuple[int, dict]:
    """GET 127.0.0.1:PORT/PATH: the status, and the JSON body of a 200 ({} otherwise)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, (json.loads(body) if response.status == 200 else {})
    finally:
        connection.close()
