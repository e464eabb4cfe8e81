"""Notifications against real receivers on 127.0.0.1: an HTTP server that checks signatures and
formats as the services do, and an SMTP server (aiosmtpd) that requires STARTTLS and a login."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slipway import notify

SECRET = "whsec-0123456789abcdef"
EVENT = notify.Event(event="failed", environment="production", app="shop", who="alice",
                     release="a1b2c3d4e5f6", commit="0123456789abcdef0123", branch="main",
                     playbook="deploy.yml", duration=95, run_url="https://console.example/runs/7",
                     detail="Release a1b2c3d4e5f6 failed its health check (HTTP 500)")


class Receiver:
    """Records every POST; answers with the status and body the test sets."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.answer = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": self.rfile.read(length)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def targets(config: list[dict]) -> list[notify.Target]:
    return notify.parse_targets(config)


def test_a_webhook_is_json_signed_with_hmac_sha256(receiver):
    [target] = targets([{"type": "webhook", "url": f"{receiver.url}/hooks/deploy",
                         "secret": SECRET, "events": ["failed"]}])
    [outcome] = notify.deliver([target], EVENT)
    assert outcome.delivered and outcome.attempts == 1 and outcome.detail == "HTTP 200"
    [request] = receiver.requests
    body = request["body"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"][notify.SIGNATURE_HEADER], expected)
    assert request["headers"]["X-Slipway-Event"] == "failed"
    assert request["headers"]["Content-Type"] == "application/json"
    document = json.loads(body)
    assert {key: document[key] for key in ("event", "environment", "app", "who", "release",
                                           "commit", "branch", "duration_seconds", "run_url")} \
        == {"event": "failed", "environment": "production", "app": "shop", "who": "alice",
            "release": "a1b2c3d4e5f6", "commit": "0123456789abcdef0123", "branch": "main",
            "duration_seconds": 95, "run_url": "https://console.example/runs/7"}
    assert SECRET.encode() not in body


def test_each_delivery_has_its_own_id_and_a_forged_body_fails_the_signature(receiver):
    [target] = targets([{"type": "webhook", "url": receiver.url, "secret": SECRET,
                         "events": ["started", "succeeded"]}])
    notify.deliver([target], notify.Event(event="started", environment="staging"))
    notify.deliver([target], notify.Event(event="succeeded", environment="staging"))
    first, second = receiver.requests
    assert first["headers"]["X-Slipway-Delivery"] != second["headers"]["X-Slipway-Delivery"]
    forged = first["body"].replace(b"staging", b"production")
    assert notify.sign(SECRET, forged) != first["headers"][notify.SIGNATURE_HEADER]


def test_slack_gets_its_incoming_webhook_format(receiver):
    [target] = targets([{"type": "slack", "url": f"{receiver.url}/services/T0/B0/x"}])
    [outcome] = notify.deliver([target], EVENT)
    assert outcome.delivered
    document = json.loads(receiver.requests[0]["body"])
    assert set(document) == {"text"}
    assert document["text"].startswith("*Deploy failed: shop production*")
    for fact in ("*By:* alice", "*Release:* a1b2c3d4e5f6", "*Commit:* 0123456789ab (main)",
                 "*Duration:* 1 min 35 s", "*Run:* https://console.example/runs/7"):
        assert fact in document["text"]


def test_dingtalk_signed_robot_gets_markdown_and_a_valid_signature(receiver):
    receiver.answer = b'{"errcode": 0, "errmsg": "ok"}'
    [target] = targets([{"type": "dingtalk", "url": f"{receiver.url}/robot/send?access_token=t1",
                         "secret": "SECdingtalk"}])
    [outcome] = notify.deliver([target], EVENT)
    assert outcome.delivered
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(receiver.requests[0]["path"]).query)
    assert query["access_token"] == ["t1"]
    timestamp = query["timestamp"][0]
    digest = hmac.new(b"SECdingtalk", f"{timestamp}\nSECdingtalk".encode(), hashlib.sha256)
    assert query["sign"] == [base64.b64encode(digest.digest()).decode()]
    document = json.loads(receiver.requests[0]["body"])
    assert document["msgtype"] == "markdown"
    assert document["markdown"]["title"] == "Deploy failed: shop production"
    assert "- **Environment:** production" in document["markdown"]["text"]


def test_wecom_robot_gets_markdown_and_its_error_code_counts_as_a_failure(receiver):
    [target] = targets([{"type": "wecom", "url": f"{receiver.url}/cgi-bin/webhook/send?key=k"}])
    receiver.answer = b'{"errcode": 93000, "errmsg": "invalid webhook url"}'
    [outcome] = notify.deliver([target], EVENT)
    assert not outcome.delivered and outcome.attempts == 2
    assert outcome.detail == "RuntimeError: HTTP 200, errcode 93000"
    document = json.loads(receiver.requests[0]["body"])
    assert document["msgtype"] == "markdown"
    assert "> Status: failed" in document["markdown"]["content"]


def test_a_failed_attempt_is_retried_once_and_recorded(receiver):
    receiver.status = 502
    [target] = targets([{"type": "slack", "url": receiver.url}])
    [outcome] = notify.deliver([target], EVENT)
    assert not outcome.delivered and outcome.attempts == 2 and outcome.detail == "HTTP 502"
    assert len(receiver.requests) == 2
    assert outcome.line().startswith("notification failed -> slack http://127.0.0.1:")
    assert outcome.line().endswith("NOT delivered after 2 attempts (HTTP 502)")


def test_no_secret_reaches_a_message(receiver):
    leaked = notify.Event(event="failed", environment="production",
                          detail="psql: password authentication failed for 'hunter2-db-pass'")
    [target] = targets([{"type": "webhook", "url": receiver.url, "secret": SECRET,
                         "events": ["failed"]}])
    hidden = notify.secrets_of([target]) | {"hunter2-db-pass"}

    def scrub(text: str) -> str:
        for value in hidden:
            text = text.replace(value, "********")
        return text

    notify.deliver([target], leaked, scrub=scrub)
    body = receiver.requests[0]["body"]
    assert b"hunter2-db-pass" not in body and SECRET.encode() not in body
    assert "password authentication failed for '********'" in json.loads(body)["detail"]


def test_only_the_events_a_target_asked_for_are_sent(receiver):
    [target] = targets([{"type": "slack", "url": receiver.url, "events": ["failed"]}])
    assert notify.deliver([target], notify.Event(event="succeeded")) == []
    assert receiver.requests == []


@pytest.fixture
def silent_target():
    """A slack target on a port that accepts connections and never answers: each attempt
    ends by its timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        [target] = targets([{"type": "slack",
                             "url": f"http://127.0.0.1:{silent.getsockname()[1]}/"}])
        yield target
    finally:
        silent.close()


def test_an_unanswering_receiver_costs_at_most_the_bounded_timeout(silent_target):
    [outcome] = notify.deliver([silent_target], EVENT, timeout=0.5)
    assert not outcome.delivered and outcome.attempts == 2
    assert "timed out" in outcome.detail


def test_no_attempt_runs_past_the_deadline_it_is_given(silent_target):
    # The end of a run gives its event what is left of one bound: with the deadline inside
    # the first attempt's pause, the retry is not started.
    [outcome] = notify.deliver([silent_target], EVENT, timeout=0.5,
                               deadline=time.monotonic() + 0.6)
    [late] = notify.deliver([silent_target], EVENT, timeout=0.5, deadline=time.monotonic() - 1)
    assert not outcome.delivered and outcome.attempts == 1
    assert "timed out" in outcome.detail
    assert not late.delivered and late.attempts == 0
    assert late.detail == "gave up: no time left within the bound"
    assert notify.bound(timeout=5, retries=1) == 10.5


def test_a_refused_connection_is_an_outcome_not_an_error():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    [target] = targets([{"type": "webhook", "url": f"http://127.0.0.1:{port}/", "secret": "s"}])
    [outcome] = notify.deliver([target], EVENT, timeout=1)
    assert not outcome.delivered and "ConnectionRefusedError" in outcome.detail


# --- email ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, and its file for the client to trust."""
    directory = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            if (auth_data.login, auth_data.password) == (b"deploybot", b"smtp-pass-1"):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def smtp_server(mailbox: Mailbox, tls_files, starttls: bool = True) -> Controller:
    cert_file, key_file = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            tls_context=context if starttls else None,
                            require_starttls=starttls, authenticator=mailbox.authenticate,
                            auth_require_tls=True, auth_exclude_mechanism=["CRAM-MD5"])
    controller.start()
    return controller


def email_target(controller: Controller, tls_files, **extra) -> notify.Target:
    [target] = targets([{"type": "email", "address": ["ops@example.com", "dev@example.com"],
                         "from": "slipway@example.com", "smtp_host": "127.0.0.1",
                         "smtp_port": controller.port,
                         "smtp_user": "deploybot", "smtp_password": "smtp-pass-1",
                         "smtp_ca_file": str(tls_files[0]), **extra}])
    return target


def test_email_goes_over_starttls_with_a_login(tls_files):
    mailbox = Mailbox()
    controller = smtp_server(mailbox, tls_files)
    try:
        [outcome] = notify.deliver([email_target(controller, tls_files)], EVENT)
    finally:
        controller.stop()
    assert outcome.delivered, outcome.detail
    assert mailbox.logins == [(b"deploybot", b"smtp-pass-1")]
    [(sender, recipients, content)] = mailbox.messages
    assert sender == "slipway@example.com"
    assert recipients == ["ops@example.com", "dev@example.com"]
    text = content.decode()
    assert "Subject: Deploy failed: shop production" in text
    for fact in ("Environment: production", "By: alice", "Release: a1b2c3d4e5f6",
                 "Commit: 0123456789ab (main)", "Run: https://console.example/runs/7"):
        assert fact in text
    assert "smtp-pass-1" not in text


def test_email_is_not_sent_in_clear_to_a_server_without_starttls(tls_files):
    mailbox = Mailbox()
    controller = smtp_server(mailbox, tls_files, starttls=False)
    try:
        [outcome] = notify.deliver([email_target(controller, tls_files)], EVENT, timeout=2)
    finally:
        controller.stop()
    assert not outcome.delivered and "STARTTLS" in outcome.detail
    assert mailbox.logins == [] and mailbox.messages == []


def test_email_to_a_server_with_an_untrusted_certificate_is_refused(tls_files):
    mailbox = Mailbox()
    controller = smtp_server(mailbox, tls_files)
    try:
        # The system's CAs do not know the test's self-signed certificate.
        [outcome] = notify.deliver([email_target(controller, tls_files, smtp_ca_file="")],
                                   EVENT, timeout=2)
    finally:
        controller.stop()
    assert not outcome.delivered and "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    assert mailbox.logins == [] and mailbox.messages == []


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "message"), [
    ({"slipway_notifications": "x"}, "slipway_notifications must be a list"),
    ([{"type": "teams", "url": "https://x"}],
     "slipway_notifications[0]: type must be one of webhook, slack, email, dingtalk, wecom; "
     "found 'teams'"),
    ([{"type": "slack", "url": "ftp://x"}],
     "slipway_notifications[0]: a slack target needs url, an http(s) URL; found 'ftp://x'"),
    ([{"type": "webhook", "url": "https://x/hook"}],
     "slipway_notifications[0]: a webhook target needs secret"),
    ([{"type": "slack", "url": "https://x", "events": ["finished"]}],
     "slipway_notifications[0]: unknown events finished"),
    ([{"type": "email", "address": "nobody", "smtp_host": "mail"}],
     "slipway_notifications[0]: an email target needs address"),
    ([{"type": "email", "address": "a@b.c", "smtp_host": "mail", "smtp_user": "u"}],
     "slipway_notifications[0]: smtp_user and smtp_password go together"),
    ([{"type": "slack", "url": "https://x", "channel": "#ops"}],
     "slipway_notifications[0]: unknown keys channel"),
])
def test_bad_configuration_is_refused_with_what_was_found(config, message):
    if isinstance(config, dict):
        config = config["slipway_notifications"]
    with pytest.raises(notify.NotifyConfigError) as error:
        notify.parse_targets(config)
    assert message in str(error.value)


def test_targets_default_to_the_end_events_and_never_show_their_secrets():
    [target] = targets([{"type": "webhook", "url": "https://hooks.example/x?token=abc",
                         "secret": SECRET}])
    assert target.events == notify.DEFAULT_EVENTS
    assert "started" not in target.events
    assert SECRET not in repr(target)
    assert target.label == "webhook https://hooks.example/x"
    assert notify.secrets_of([target]) == {SECRET}
