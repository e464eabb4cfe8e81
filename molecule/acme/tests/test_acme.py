"""nginx_acme against Pebble, a local ACME CA: the certificate nginx serves, its renewal by
certbot's timer (nginx reloaded by the deploy hook), the challenge in maintenance mode, and bad
input refused before any change.

The tests run in this order: the first checks what converge and molecule's idempotence step
left (one certificate), the later ones renew it. The HTTP(S) client runs on Pebble's host: a
client of the network that is not the app host (which passes in maintenance mode)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

APP = "shop"
HOST = "slipway-molecule-acme"
PEBBLE = "slipway-molecule-acme-pebble"
DIRECTORY = f"https://{PEBBLE}:14000/dir"
SITE = f"/etc/nginx/sites-available/{APP}.conf"
ARCHIVE = f"/etc/letsencrypt/archive/{APP}"
RENEWAL = f"/etc/letsencrypt/renewal/{APP}.conf"
CHALLENGES = "/var/www/slipway-acme/.well-known/acme-challenge"
CA_BUNDLE = "/usr/local/share/slipway/acme-ca-bundle.pem"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
# A bound, not an expectation: a playbook that hangs is killed.
RUN_TIMEOUT = 600

# Run on Pebble's host. Pebble's root comes from its management API, over HTTPS verified with the
# test-bed CA; the app host's certificate is then verified against that root (or, to show the
# check can fail, against the test-bed CA), its name included.
CLIENT = r"""
import http.client, json, ssl, sys

def context(trust):
    if trust == 'testbed':
        return ssl.create_default_context(cafile='/etc/pebble/ca.crt')
    management = http.client.HTTPSConnection(
        sys.argv[2], 15000, context=ssl.create_default_context(cafile='/etc/pebble/ca.crt'),
        timeout=10)
    management.request('GET', '/roots/0')
    answer = management.getresponse()
    assert answer.status == 200, answer.status
    return ssl.create_default_context(cadata=answer.read().decode())

command, pebble, host = sys.argv[1], sys.argv[2], sys.argv[3]
if command == 'served':
    try:
        connection = http.client.HTTPSConnection(host, 443, context=context(sys.argv[4]),
                                                 timeout=10)
        connection.connect()
    except ssl.SSLCertVerificationError as error:
        print(json.dumps({'verified': False, 'error': str(error)}))
    else:
        cert = connection.sock.getpeercert()
        print(json.dumps({'verified': True, 'serial': cert['serialNumber'],
                          'issuer': dict(item[0] for item in cert['issuer']),
                          'names': cert['subjectAltName']}))
else:
    scheme, path = sys.argv[4], sys.argv[5]
    if scheme == 'https':
        connection = http.client.HTTPSConnection(host, 443, context=context('pebble'), timeout=10)
    else:
        connection = http.client.HTTPConnection(host, 80, timeout=10)
    connection.request('GET', path)
    answer = connection.getresponse()
    print(json.dumps({'status': answer.status, 'headers': dict(answer.getheaders()),
                      'body': answer.read().decode(errors='replace')}))
"""


def get_host(name: str):
    return testinfra.get_host(f"ansible://{name}",
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def host():
    return get_host(HOST)


@pytest.fixture(scope="module")
def pebble():
    return get_host(PEBBLE)


def served(pebble, trust: str = "pebble") -> dict:
    """The certificate nginx serves on the app host's port 443, as the network's clients see it."""
    return json.loads(pebble.check_output("python3 -c %s served %s %s %s", CLIENT, PEBBLE, HOST,
                                          trust))


def served_after(pebble, serial: str) -> dict:
    """The certificate served once it is another than SERIAL: nginx's reload replaces its workers
    gracefully, a moment after the hook returned."""
    for _ in range(10):
        cert = served(pebble)
        if cert.get("serial") != serial:
            return cert
        time.sleep(1)
    return cert


def get(pebble, scheme: str, path: str) -> dict:
    return json.loads(pebble.check_output("python3 -c %s get %s %s %s %s", CLIENT, PEBBLE, HOST,
                                          scheme, path))


def put_probe(host) -> None:
    """A file in the challenges' directory, as certbot writes one (and removes it after)."""
    host.check_output("mkdir -p %s && printf probe-token > %s/slipway-probe", CHALLENGES,
                      CHALLENGES)


def archived(host) -> list[str]:
    """The certificates certbot received for the site, cert1.pem first."""
    return sorted(host.check_output("ls %s", ARCHIVE).split())


def renew_as_the_timer_does(host) -> None:
    """`certbot renew --force-renewal` run by certbot.service, the unit certbot.timer starts:
    with the environment of its drop-ins (the CA bundle), and the deploy hook after it."""
    dropin = "/run/systemd/system/certbot.service.d/zz-slipway-test-force.conf"
    host.check_output("mkdir -p %s", os.path.dirname(dropin))
    host.check_output("printf %s > %s",
                      "[Service]\nExecStart=\nExecStart=/usr/bin/certbot -q renew --force-renewal"
                      " --no-random-sleep-on-renew\n", dropin)
    try:
        host.check_output("systemctl daemon-reload")
        result = host.run("systemctl start certbot.service")
        assert result.rc == 0, host.run("journalctl -u certbot.service -n 40 --no-pager").stdout
    finally:
        host.run("rm -f %s && systemctl daemon-reload", dropin)


def playbook(path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
               str(path), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=PROJECT)


def output(result: subprocess.CompletedProcess) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # molecule forces colours


def changed(result: subprocess.CompletedProcess) -> int:
    found = re.search(rf"^{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=(\d+)", output(result), re.M)
    assert found, output(result)[-3000:]
    return int(found.group(1))


def changed_tasks(result: subprocess.CompletedProcess) -> set[str]:
    """The names of the tasks that reported a change on the host."""
    names, task = set(), None
    for line in output(result).splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):line.rfind("]")]
        elif line.startswith(f"changed: [{HOST}]"):
            names.add(task)
    return names


def state(host) -> dict:
    """What the role changes: the site, nginx's running configuration and certbot's files."""
    return {
        "site": hashlib.sha256(host.file(SITE).content).hexdigest(),
        "nginx_pid": host.check_output("systemctl show --property MainPID --value nginx"),
        "letsencrypt": host.check_output(
            "find /etc/letsencrypt -type f -printf '%p %T@\\n' | sort"),
    }


def maintenance(state_: str) -> None:
    result = playbook(PROJECT / "playbooks" / "maintenance.yml", "-e", f"state={state_}")
    assert result.returncode == 0, output(result)[-3000:]


def test_converge_and_its_rerun_got_one_certificate_from_pebble(host):
    # The idempotence step ran converge again: changed=0 and no second certificate.
    assert archived(host) == ["cert1.pem", "chain1.pem", "fullchain1.pem", "privkey1.pem"]
    renewal = host.file(RENEWAL).content_string
    assert re.search(rf"^server = {re.escape(DIRECTORY)}$", renewal, re.M), renewal
    assert re.search(r"^authenticator = webroot$", renewal, re.M), renewal


def test_nginx_serves_a_certificate_for_the_name_issued_by_pebble(pebble):
    cert = served(pebble)
    assert cert["verified"], cert
    assert cert["names"] == [["DNS", HOST]]
    assert cert["issuer"]["commonName"].startswith("Pebble Intermediate CA"), cert
    # The check is real: the test-bed CA (which signs Pebble's own HTTPS) does not verify it.
    assert not served(pebble, trust="testbed")["verified"]


def test_http_redirects_to_https_but_answers_the_challenge(host, pebble):
    put_probe(host)
    try:
        redirect = get(pebble, "http", "/admin/?a=1")
        assert redirect["status"] == 301
        assert redirect["headers"]["Location"] == f"https://{HOST}/admin/?a=1"
        challenge = get(pebble, "http", "/.well-known/acme-challenge/slipway-probe")
        assert (challenge["status"], challenge["body"]) == (200, "probe-token")
        # Never sent to the app, on either server.
        assert get(pebble, "https", "/.well-known/acme-challenge/missing")["status"] == 404
    finally:
        host.run("rm -f %s/slipway-probe", CHALLENGES)


def test_certbot_timer_renews_with_the_ca_bundle_and_reloads_nginx(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert timer.is_running
    environment = host.check_output("systemctl show --property Environment --value certbot.service")
    assert f"REQUESTS_CA_BUNDLE={CA_BUNDLE}" in environment.split()
    bundle = (EPHEMERAL / "pebble" / "ca.crt").read_text()
    assert host.file(CA_BUNDLE).content_string.strip() == bundle.strip()
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/slipway-reload-nginx")
    assert hook.mode == 0o755
    assert hook.user == "root"


def test_a_forced_renewal_is_served_without_a_manual_reload(host, pebble):
    before = served(pebble)
    master = host.check_output("systemctl show --property MainPID --value nginx")
    renew_as_the_timer_does(host)
    after = served_after(pebble, before["serial"])
    assert after["verified"], after
    assert after["serial"] != before["serial"]
    assert "cert2.pem" in archived(host)
    # Reloaded (the new certificate is served), not restarted.
    assert host.check_output("systemctl show --property MainPID --value nginx") == master


def test_the_challenge_answers_and_the_certificate_renews_in_maintenance_mode(host, pebble):
    put_probe(host)
    maintenance("on")
    try:
        closed = get(pebble, "https", "/admin/")
        assert closed["status"] == 503
        assert closed["headers"]["Retry-After"] == "300"
        for scheme in ("http", "https"):
            challenge = get(pebble, scheme, "/.well-known/acme-challenge/slipway-probe")
            assert (challenge["status"], challenge["body"]) == (200, "probe-token"), scheme
        before = served(pebble)["serial"]
        renew_as_the_timer_does(host)
        assert served_after(pebble, before)["serial"] != before
    finally:
        host.run("rm -f %s/slipway-probe", CHALLENGES)
        maintenance("off")
    # No app server runs here: nginx answers 502 once it proxies again.
    assert get(pebble, "https", "/admin/")["status"] == 502


@pytest.mark.parametrize(("variables", "message"), [
    ({"nginx_acme_email": ""}, "nginx_acme_email is empty"),
    ({"nginx_server_names": ["_"]}, "nginx_server_names holds _ (nginx's catch-all name"),
    ({"nginx_server_names": []}, "nginx_server_names is empty"),
    ({"nginx_server_names": [HOST, f"*.{HOST}"]},
     f'nginx_server_names holds the wildcard ["*.{HOST}"], which HTTP-01 cannot validate'),
    ({"nginx_tls_certificate": "-----BEGIN CERTIFICATE-----\n"},
     "nginx_tls_certificate is set too"),
], ids=["no-email", "catch-all", "no-names", "wildcard", "with-tls-files"])
def test_bad_input_is_refused_before_any_change(host, variables, message):
    before = state(host)
    result = playbook(PROJECT / "molecule" / "acme" / "converge.yml", "-e", json.dumps(variables))
    assert result.returncode != 0, output(result)[-3000:]
    assert f"nginx_acme on {HOST}: " in output(result)
    assert message in output(result), output(result)[-3000:]
    assert changed(result) == 0
    assert state(host) == before


def test_check_mode_on_the_converged_host_changes_nothing(host):
    before = state(host)
    result = playbook(PROJECT / "molecule" / "acme" / "converge.yml", "--check")
    assert result.returncode == 0, output(result)[-3000:]
    # The apt module reports a refresh of the package lists (cache_valid_time) as a change in
    # check mode, as the other roles' first task does; nothing else would change.
    assert changed_tasks(result) <= {"slipway.django.nginx : Update the apt cache"}, \
        output(result)[-3000:]
    assert state(host) == before
