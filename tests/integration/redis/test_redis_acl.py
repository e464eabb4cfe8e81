"""Two apps on one Redis: the real redis role, run by ansible-playbook over podman's connection
against a systemd container of the test bed's Debian 12 image, gives each app its own ACL user.

The host starts as slipway left it before the ACL users: Debian's redis-server with a single
password (requirepass). The role then runs for two apps (alpha and beta), binding Redis to the
container's own address too, as for an app on another host:

- each app's user authenticates with its password (ACL WHOAMI names it), over TCP to that
  address; one app's password does not authenticate as the other;
- the files on the host hold the passwords' SHA-256, never the passwords, and none is
  world-readable;
- the upgraded host's former password still authenticates as the default user (auto), so an app
  whose REDIS_URL names no user keeps working until its next deploy;
- kombu (from PyPI) puts and gets a queue message, and a redis-py client runs what Celery and
  Django's RedisCache were seen to send (MULTI/EXEC, BRPOP, PUBLISH/SUBSCRIBE, EVALSHA, FLUSHDB),
  with the URL the app role writes into REDIS_URL;
- a second run changes nothing; a run in check mode with a new password reports the change and
  makes none;
- redis_default_user off refuses the default user, loaded with ACL LOAD: no restart.

The tests run in file order: the last ones change the host.

Needs podman and localhost/slipway-debian12-systemd:latest (`make host image`), and the Debian
mirror and PyPI from the container. With
SLIPWAY_REDIS_TEST_IMAGE=localhost/slipway-debian13-systemd:latest they run on Debian 13, whose
server is Valkey (/etc/valkey, valkey-cli).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests" / "testbed"))

from ansible_task import run_playbook  # noqa: E402
from role_templates import app_redis_url  # noqa: E402
from testbed_container import DEBIAN12, Container, debian_container  # noqa: E402

KOMBU = ["kombu==5.5.4", "redis==5.2.1"]  # what celery[redis] 5.5.3 (examples/app) installs
LEGACY = "legacy-single-password"
APPS = {"alpha": "alpha/pw:@ %1", "beta": "beta-pw"}
IMAGE = os.environ.get("SLIPWAY_REDIS_TEST_IMAGE", DEBIAN12)
# The server the role chooses on the image's release, its files' directory and its client.
SERVER, NAME = ("valkey-server", "valkey") if "debian13" in IMAGE else ("redis-server", "redis")
CONF = f"/etc/{NAME}"
CLI = f"{NAME}-cli"

CLIENT = '''
import json, sys
from kombu import Connection
import redis

url = sys.stdin.readline().strip()
seen = {}
with Connection(url) as connection:
    queue = connection.SimpleQueue("probe")
    queue.put({"hello": "world"})
    message = queue.get(timeout=10)
    seen["kombu"] = message.payload
    message.ack()
    queue.close()
client = redis.Redis.from_url(url)
seen["whoami"] = str(client.acl_whoami())
with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC
    pipe.lpush("q", "a").expire("q", 60).execute()
seen["brpop"] = client.brpop(["q"], timeout=5)[1].decode()
pubsub = client.pubsub()
pubsub.psubscribe("celery-task-meta-*")
pubsub.get_message(timeout=2)
client.publish("celery-task-meta-1", "done")
message = pubsub.get_message(timeout=5)
seen["published"] = message["data"].decode() if message else None
pubsub.close()
seen["script"] = client.register_script("return redis.call('INCRBY', KEYS[1], 2)")(keys=["n"])
client.set("k", "v")
seen["flushdb"] = client.flushdb()
seen["after_flush"] = client.dbsize()
print(json.dumps(seen))
'''


def role_play(apps: dict[str, str], **variables) -> list[dict]:
    """One play running the redis role once per app, as each app's provisioning does."""
    tasks = [{"name": f"Provision Redis for {app}",
              "ansible.builtin.include_role": {"name": "slipway.django.redis"},
              "vars": {"app_name": app, "app_redis_password": password, **variables}}
             for app, password in apps.items()]
    return [{"hosts": "all", "gather_facts": False, "tasks": tasks}]


def converge(container: Container, apps: dict[str, str], check: bool = False,
             **variables) -> dict:
    report = run_playbook(role_play(apps, **variables), host=container.name,
                          connection="containers.podman.podman", check=check,
                          extra_vars={"ansible_python_interpreter": "/usr/bin/python3"})
    stats = report["stats"][container.name]
    failed = [(task["task"]["name"], result.get("msg"))
              for play in report["plays"] for task in play["tasks"]
              for result in task["hosts"].values() if result.get("failed")]
    assert stats["failures"] == 0 and stats["unreachable"] == 0, failed
    return stats


def cli(container: Container, password: str, *command: str, user: str | None = None,
        host: str | None = None) -> str:
    """The client's answer (redis-cli or valkey-cli), authenticated with the password (on its
    stdin, not its argv)."""
    target = f"-h {host}" if host else "-h 127.0.0.1"
    who = f"--user {user} " if user else ""
    result = container.sh(f"{CLI} {target} {who}--askpass {' '.join(command)} 2>&1",
                          stdin=password + "\n")
    return result.stdout.strip()


def main_pid(container: Container) -> str:
    return container.sh(f"systemctl show -p MainPID --value {SERVER}").stdout.strip()


@pytest.fixture(scope="module")
def redis_host():
    with debian_container("redis-acl", systemd=True, image=IMAGE) as container:
        # The host as slipway left it before the ACL users: one password, the default user's.
        container.apt_install(SERVER, "python3-venv")
        container.sh(f"echo 'requirepass {LEGACY}' >> {CONF}/{NAME}.conf; "
                     f"systemctl restart {SERVER}")
        assert cli(container, LEGACY, "PING") == "PONG"
        address = container.sh("hostname -I").stdout.split()[0]
        stats = converge(container, APPS, redis_bind=["127.0.0.1", "-::1", address])
        assert stats["changed"] > 0
        container.sh(f"python3 -m venv /opt/probe && /opt/probe/bin/pip install -q "
                     f"--disable-pip-version-check {' '.join(KOMBU)}", timeout=300)
        container.write("/opt/probe/client.py", CLIENT)
        yield container, address


@pytest.mark.parametrize("app", APPS)
def test_each_app_user_authenticates_over_tcp_as_itself(redis_host, app):
    container, address = redis_host
    assert cli(container, APPS[app], "ACL", "WHOAMI", user=app, host=address) == app


def test_one_apps_password_does_not_authenticate_as_the_other(redis_host):
    container, address = redis_host
    answer = cli(container, APPS["alpha"], "ACL", "WHOAMI", user="beta", host=address)
    assert "WRONGPASS" in answer
    answer = cli(container, APPS["beta"], "ACL", "WHOAMI", user="alpha", host=address)
    assert "WRONGPASS" in answer


def test_an_app_user_cannot_administer_the_server(redis_host):
    container, address = redis_host
    for command in (("ACL", "LIST"), ("CONFIG", "GET", "aclfile"), ("ACL", "LOAD")):
        answer = cli(container, APPS["alpha"], *command, user="alpha", host=address)
        assert answer.startswith("NOPERM"), (command, answer)


def test_the_host_keeps_hashes_of_the_passwords_only_and_nothing_world_readable(redis_host):
    container, _ = redis_host
    listing = container.sh(f"stat -c '%n %a %U %G' {CONF}/users.acl {CONF}/users.d "
                           f"{CONF}/users.d/* {CONF}/slipway-admin.secret").stdout.split("\n")
    modes = {line.split()[0]: line.split()[1:] for line in listing if line}
    assert modes[f"{CONF}/users.acl"] == ["640", "root", NAME]
    assert modes[f"{CONF}/users.d"] == ["750", "root", NAME]
    assert modes[f"{CONF}/slipway-admin.secret"] == ["600", "root", "root"]
    for app in [*APPS, "default", "slipway-admin"]:
        assert modes[f"{CONF}/users.d/{app}.acl"] == ["640", "root", NAME]
    users = container.sh(f"cat {CONF}/users.acl").stdout
    for password in [*APPS.values(), LEGACY]:
        found = container.sh(f"grep -rlF -- \"$(cat)\" {CONF} || true", stdin=password).stdout
        assert found.strip() == "", (password, found)
    assert "user alpha on #" in users
    config = container.sh(f"cat {CONF}/{NAME}.conf").stdout.splitlines()
    assert f"aclfile {CONF}/users.acl" in config
    assert not [line for line in config if line.startswith("requirepass")]


def test_the_upgraded_hosts_former_password_is_still_the_default_users(redis_host):
    # redis_default_user auto, on a host that had requirepass: an app still running with
    # redis://:PASSWORD@ keeps working until its next deploy names its user.
    container, address = redis_host
    assert cli(container, LEGACY, "ACL", "WHOAMI", host=address) == "default"
    assert "WRONGPASS" in cli(container, APPS["alpha"], "PING", host=address)


def test_kombu_and_the_commands_celery_and_django_send_work_as_the_app_user(redis_host):
    container, address = redis_host
    url = app_redis_url(user="alpha", password=APPS["alpha"], host=address, port=6379, db=1)
    assert url.startswith(f"redis://alpha:{quote(APPS['alpha'], safe='')}@")
    result = container.sh("/opt/probe/bin/python /opt/probe/client.py", stdin=url + "\n",
                          timeout=60)
    seen = yaml.safe_load(result.stdout.strip().splitlines()[-1])
    assert seen == {"kombu": {"hello": "world"}, "whoami": "alpha", "brpop": "a",
                    "published": "done", "script": 2, "flushdb": True, "after_flush": 0}


def test_a_second_run_changes_nothing(redis_host):
    container, address = redis_host
    pid = main_pid(container)
    stats = converge(container, APPS, redis_bind=["127.0.0.1", "-::1", address])
    assert stats["changed"] == 0
    assert main_pid(container) == pid


def test_check_mode_reports_a_new_password_and_changes_nothing(redis_host):
    container, address = redis_host
    before = container.sh(f"cat {CONF}/users.acl").stdout
    stats = converge(container, {"beta": "a-new-password"}, check=True,
                     redis_bind=["127.0.0.1", "-::1", address])
    assert stats["changed"] > 0
    assert container.sh(f"cat {CONF}/users.acl").stdout == before
    assert cli(container, APPS["beta"], "ACL", "WHOAMI", user="beta", host=address) == "beta"


def test_off_refuses_the_default_user_without_a_restart(redis_host):
    container, address = redis_host
    pid = main_pid(container)
    stats = converge(container, {"alpha": APPS["alpha"]}, redis_default_user="off",
                     redis_bind=["127.0.0.1", "-::1", address])
    assert stats["changed"] > 0
    assert "WRONGPASS" in cli(container, LEGACY, "PING", host=address)
    assert cli(container, APPS["alpha"], "ACL", "WHOAMI", user="alpha", host=address) == "alpha"
    # beta's user, which this run did not name, is still there.
    assert cli(container, APPS["beta"], "ACL", "WHOAMI", user="beta", host=address) == "beta"
    assert main_pid(container) == pid
