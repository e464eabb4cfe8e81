# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notifications of deploy runs: webhook (HMAC-SHA256 signed JSON), Slack, email, DingTalk and
WeCom, configured per environment in the inventory (``slipway_notifications``).

Delivery never blocks or fails a deploy: every target is sent to in its own thread, each
attempt is bounded by a timeout, a failed attempt is retried once, and :func:`deliver` returns
after at most :func:`bound` seconds (``timeout * (retries + 1) + RETRY_PAUSE * retries``), or
by the deadline it is given, with one :class:`Outcome` per target, whatever happened. Only the
standard library is used (the deploy history callback runs this inside ansible-playbook's own
Python).

No secret reaches a message: every text of the message goes through the caller's scrubber (the
deploy history's), and the targets' own secrets (signing keys, SMTP password) are never part of
one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

EVENTS = ("started", "succeeded", "failed", "rolled_back", "cancelled", "approval_needed")
TYPES = ("webhook", "slack", "email", "dingtalk", "wecom")
DEFAULT_EVENTS = ("succeeded", "failed", "rolled_back", "cancelled", "approval_needed")
SIGNATURE_HEADER = "X-Slipway-Signature-256"
DEFAULT_TIMEOUT = 5.0
RETRY_PAUSE = 0.5
# An attempt shorter than this is not started (a deadline is too close).
MIN_ATTEMPT = 0.2
USER_AGENT = "slipway-notify/1"
# Keys of a target that hold secrets: never shown, never in a message.
SECRET_KEYS = ("secret", "smtp_password")
_TITLES = {
    "started": "Deploy started",
    "succeeded": "Deploy succeeded",
    "failed": "Deploy failed",
    "rolled_back": "Rolled back",
    "cancelled": "Deploy cancelled",
    "approval_needed": "Deploy waiting for approval",
}


class NotifyConfigError(ValueError):
    """slipway_notifications is not what it must be; the message says what and where."""


@dataclass(frozen=True)
class Target:
    type: str
    events: tuple[str, ...]
    url: str = ""
    address: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = ""
    smtp_ca_file: str = ""

    @property
    def label(self) -> str:
        """How the target is named in logs: its type and where it goes, without credentials."""
        if self.type == "email":
            return f"email to {', '.join(self.address)} via {self.smtp_host}:{self.smtp_port}"
        parts = urllib.parse.urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{self.type} {parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass(frozen=True)
class Event:
    """What happened to one run; the message is made from this alone."""
    event: str
    environment: str = ""
    app: str = ""
    who: str = ""
    release: str = ""
    commit: str = ""
    branch: str = ""
    playbook: str = ""
    duration: int | None = None
    run_url: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    target: str
    event: str
    delivered: bool
    attempts: int
    detail: str

    def line(self) -> str:
        state = "delivered" if self.delivered else "NOT delivered"
        tries = "" if self.attempts == 1 else f" after {self.attempts} attempts"
        return f"notification {self.event} -> {self.target}: {state}{tries} ({self.detail})"


def _text(value: Any, where: str, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where}: {name} must be a string, not {type(value).__name__}")
    return value


def parse_targets(config: Any) -> list[Target]:
    """The targets of ``slipway_notifications`` (a list of mappings), checked; raises
    NotifyConfigError naming the entry, what is wrong and what was found."""
    if config in (None, "", []):
        return []
    if not isinstance(config, list):
        raise NotifyConfigError(
            f"slipway_notifications must be a list of {{type, url or address, events}}, "
            f"not {type(config).__name__}")
    targets = []
    for index, entry in enumerate(config):
        where = f"slipway_notifications[{index}]"
        if not isinstance(entry, Mapping):
            raise NotifyConfigError(f"{where} must be a mapping, not {type(entry).__name__}")
        kind = entry.get("type")
        if kind not in TYPES:
            raise NotifyConfigError(f"{where}: type must be one of {', '.join(TYPES)}; "
                                    f"found {kind!r}")
        events = entry.get("events", list(DEFAULT_EVENTS))
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not events:
            raise NotifyConfigError(f"{where}: events must be a non-empty list of "
                                    f"{', '.join(EVENTS)}")
        unknown = [event for event in events if event not in EVENTS]
        if unknown:
            raise NotifyConfigError(f"{where}: unknown events {', '.join(map(str, unknown))} "
                                    f"(known: {', '.join(EVENTS)})")
        known = {"type", "events", "url", "address", "secret", "smtp_host", "smtp_port",
                 "smtp_user", "smtp_password", "from", "smtp_ca_file"}
        extra = sorted(set(entry) - known)
        if extra:
            raise NotifyConfigError(f"{where}: unknown keys {', '.join(map(str, extra))} "
                                    f"(known: {', '.join(sorted(known))})")
        if kind == "email":
            address = entry.get("address")
            addresses = [address] if isinstance(address, str) else address
            if not addresses or not all(isinstance(a, str) and "@" in a for a in addresses):
                raise NotifyConfigError(f"{where}: an email target needs address, one email "
                                        f"address or a list of them; found {address!r}")
            host = _text(entry.get("smtp_host"), where, "smtp_host")
            if not host:
                raise NotifyConfigError(f"{where}: an email target needs smtp_host")
            try:
                port = int(entry.get("smtp_port", 587))
            except (TypeError, ValueError):
                raise NotifyConfigError(f"{where}: smtp_port must be a number; found "
                                        f"{entry.get('smtp_port')!r}") from None
            user = _text(entry.get("smtp_user"), where, "smtp_user")
            password = _text(entry.get("smtp_password"), where, "smtp_password")
            if bool(user) != bool(password):
                raise NotifyConfigError(f"{where}: smtp_user and smtp_password go together")
            sender = _text(entry.get("from"), where, "from") or addresses[0]
            targets.append(Target(type=kind, events=tuple(events), address=tuple(addresses),
                                  smtp_host=host, smtp_port=port, smtp_user=user,
                                  smtp_password=password, smtp_from=sender,
                                  smtp_ca_file=_text(entry.get("smtp_ca_file"), where,
                                                     "smtp_ca_file")))
            continue
        url = _text(entry.get("url"), where, "url")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise NotifyConfigError(f"{where}: a {kind} target needs url, an http(s) URL; "
                                    f"found {url!r}")
        secret = _text(entry.get("secret"), where, "secret")
        if kind == "webhook" and not secret:
            raise NotifyConfigError(f"{where}: a webhook target needs secret (the HMAC-SHA256 "
                                    f"key, from Vault): receivers check the signature with it")
        targets.append(Target(type=kind, events=tuple(events), url=url, secret=secret))
    return targets


def secrets_of(targets: Iterable[Target]) -> set[str]:
    """The targets' own secrets, for the caller's scrubber."""
    return {value for target in targets for value in (target.secret, target.smtp_password)
            if value}


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def summary_lines(event: Event) -> list[tuple[str, str]]:
    """The facts of the message, in order, those that are known."""
    commit = event.commit[:12]
    if event.branch:
        commit = f"{commit} ({event.branch})" if commit else event.branch
    rows = [("Environment", event.environment), ("App", event.app), ("By", event.who),
            ("Release", event.release), ("Commit", commit), ("Status", event.event),
            ("Duration", _duration(event.duration)), ("Playbook", event.playbook),
            ("Detail", event.detail), ("Run", event.run_url)]
    return [(name, value) for name, value in rows if value]


def title(event: Event) -> str:
    where = " ".join(part for part in (event.app, event.environment) if part)
    return f"{_TITLES[event.event]}: {where}" if where else _TITLES[event.event]


def _scrubbed(event: Event, scrub: Callable[[str], str]) -> Event:
    values = {name: scrub(value) if isinstance(value, str) else value
              for name, value in event.__dict__.items() if name != "event"}
    return Event(event=event.event, **values)


def payload(event: Event) -> dict:
    """The webhook's JSON body."""
    return {"event": event.event, "environment": event.environment, "app": event.app,
            "who": event.who, "release": event.release, "commit": event.commit,
            "branch": event.branch, "playbook": event.playbook,
            "duration_seconds": event.duration, "run_url": event.run_url,
            "detail": event.detail, "title": title(event), "sent_at": int(time.time())}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dingtalk_signed_url(url: str, secret: str, now_ms: int | None = None) -> str:
    """DingTalk's signed robot URL: timestamp and sign (HMAC-SHA256 of "timestamp\\nsecret" with
    the secret, base64) added to the query."""
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    query = urllib.parse.urlencode({"timestamp": timestamp,
                                    "sign": base64.b64encode(digest).decode()})
    return f"{url}{'&' if urllib.parse.urlsplit(url).query else '?'}{query}"


def http_request(target: Target, event: Event) -> tuple[str, dict, bytes]:
    """The URL, headers and body sent to an HTTP target."""
    facts = summary_lines(event)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    url = target.url
    if target.type == "webhook":
        body = json.dumps(payload(event), sort_keys=True).encode()
        headers.update({SIGNATURE_HEADER: sign(target.secret, body),
                        "X-Slipway-Event": event.event,
                        "X-Slipway-Delivery": str(uuid.uuid4())})
        return url, headers, body
    if target.type == "slack":
        text = f"*{title(event)}*\n" + "\n".join(f"*{name}:* {value}" for name, value in facts)
        document = {"text": text}
    elif target.type == "dingtalk":
        text = f"### {title(event)}\n\n" + "\n".join(f"- **{name}:** {value}"
                                                     for name, value in facts)
        document = {"msgtype": "markdown", "markdown": {"title": title(event), "text": text}}
        if target.secret:
            url = dingtalk_signed_url(url, target.secret)
    else:  # wecom
        text = f"**{title(event)}**\n" + "\n".join(f"> {name}: {value}" for name, value in facts)
        document = {"msgtype": "markdown", "markdown": {"content": text}}
    return url, headers, json.dumps(document, ensure_ascii=False).encode()


def _send_http(target: Target, event: Event, timeout: float) -> str:
    url, headers, body = http_request(target, event)
    # parse_targets accepts http(s) URLs only.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        answer = response.read(4096)
        status = response.status
    if target.type in ("dingtalk", "wecom"):
        # Their robots answer 200 with an error code in the body.
        try:
            code = json.loads(answer).get("errcode", 0)
        except (ValueError, AttributeError):
            code = 0
        if code:
            raise RuntimeError(f"HTTP {status}, errcode {code}")
    return f"HTTP {status}"


def _send_email(target: Target, event: Event, timeout: float) -> str:
    message = EmailMessage()
    message["Subject"] = title(event)
    message["From"] = target.smtp_from
    message["To"] = ", ".join(target.address)
    message.set_content("\n".join(f"{name}: {value}" for name, value in summary_lines(event)))
    context = ssl.create_default_context(cafile=target.smtp_ca_file or None)
    with smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=timeout) as smtp:
        smtp.ehlo()
        # Never send credentials or deploy details in clear: STARTTLS is required.
        smtp.starttls(context=context)
        smtp.ehlo()
        if target.smtp_user:
            smtp.login(target.smtp_user, target.smtp_password)
        refused = smtp.send_message(message)
    if refused:
        raise RuntimeError(f"refused recipients: {', '.join(refused)}")
    return f"accepted by {target.smtp_host}"


def _error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:200]


def bound(timeout: float = DEFAULT_TIMEOUT, retries: int = 1) -> float:
    """The longest one delivery takes: every attempt timing out, with the pauses between."""
    return timeout * (retries + 1) + RETRY_PAUSE * retries


def send(target: Target, event: Event, timeout: float = DEFAULT_TIMEOUT,
         retries: int = 1, deadline: float | None = None) -> Outcome:
    """One target: an attempt, and up to ``retries`` more after a failure. Never raises.
    With ``deadline`` (a time.monotonic() value), no attempt runs past it."""
    sender = _send_email if target.type == "email" else _send_http
    detail = "gave up: no time left within the bound"
    attempts = 0
    for attempt in range(1, retries + 2):
        left = timeout if deadline is None else min(timeout, deadline - time.monotonic())
        if left < MIN_ATTEMPT:
            break
        attempts = attempt
        try:
            detail = sender(target, event, left)
            return Outcome(target.label, event.event, True, attempt, detail)
        except Exception as exc:  # noqa: BLE001 - any failure is an outcome, never raised
            detail = _error(exc)
        if attempt <= retries:
            time.sleep(RETRY_PAUSE)
    return Outcome(target.label, event.event, False, attempts, detail)


def deliver(targets: Iterable[Target], event: Event, *, scrub: Callable[[str], str] = str,
            timeout: float = DEFAULT_TIMEOUT, retries: int = 1,
            deadline: float | None = None) -> list[Outcome]:
    """Send ``event`` to every target that asked for it, at once; return within the bound, or
    by ``deadline`` (a time.monotonic() value) when that comes first."""
    chosen = [target for target in targets if event.event in target.events]
    if not chosen:
        return []
    clean = _scrubbed(event, scrub)
    results: dict[int, Outcome] = {}

    def run(index: int, target: Target) -> None:
        results[index] = send(target, clean, timeout, retries, deadline)

    threads = [threading.Thread(target=run, args=(index, target), daemon=True,
                                name=f"slipway-notify-{index}")
               for index, target in enumerate(chosen)]
    for thread in threads:
        thread.start()
    until = time.monotonic() + bound(timeout, retries)
    if deadline is not None:
        until = min(until, deadline)
    for thread in threads:
        thread.join(max(0.0, until + 1 - time.monotonic()))
    return [results.get(index) or Outcome(target.label, event.event, False, 0,
                                          "gave up: no answer within the time bound")
            for index, target in enumerate(chosen)]
