"""What a forge's push webhook says, and whether it says it with the shared secret.

GitHub signs the raw body (``X-Hub-Signature-256: sha256=HEX``, HMAC-SHA256), Gitea and Forgejo
too (``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the bare hex), GitLab sends the secret
itself (``X-Gitlab-Token``). Every comparison is constant-time. Nothing here starts a run: the
console's service does, with what ``push`` returns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES = 1024 * 1024
COMMIT = re.compile(r"[0-9a-f]{40}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
NO_COMMIT = "0" * 40

# (provider, the header with its signature or token, its event header, its delivery headers)
PROVIDERS = (
    ("forgejo", "x-forgejo-signature", ("x-forgejo-event", "x-gitea-event"),
     ("x-forgejo-delivery", "x-gitea-delivery")),
    ("gitea", "x-gitea-signature", ("x-gitea-event",), ("x-gitea-delivery",)),
    ("github", "x-hub-signature-256", ("x-github-event",), ("x-github-delivery",)),
    ("gitlab", "x-gitlab-token", ("x-gitlab-event",), ("x-gitlab-event-uuid", "idempotency-key")),
)
PUSH_EVENTS = {"push", "push hook"}


class WebhookError(Exception):
    """The request is not a usable delivery: HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Delivery:
    provider: str
    event: str
    delivery_id: str | None

    @property
    def is_push(self) -> bool:
        return self.event.lower() in PUSH_EVENTS


@dataclass(frozen=True)
class Push:
    branch: str | None  # None: a tag or another ref
    commit: str
    ref: str


def _bytes(value: str) -> bytes:
    # Header values reach us as latin-1 text; compare them as the bytes they were.
    return value.encode("latin-1", "replace")


def authenticate(headers: Mapping[str, str], body: bytes, secret: str) -> Delivery:
    """The delivery if its signature (or token) is the secret's; WebhookError 401 if there is
    none or it is wrong. ``headers`` have lower-case names."""
    for provider, signature_header, event_headers, delivery_headers in PROVIDERS:
        presented = headers.get(signature_header)
        if presented is None:
            continue
        if provider == "gitlab":
            good = hmac.compare_digest(_bytes(presented), secret.encode())
        else:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if provider == "github":
                expected = "sha256=" + expected
            good = hmac.compare_digest(_bytes(presented.strip().lower()), expected.encode())
        if not good:
            raise WebhookError(401, f"the {provider} signature does not match the secret")
        event = next((headers[name] for name in event_headers if headers.get(name)), "")
        delivery = next((headers[name] for name in delivery_headers if headers.get(name)), None)
        if delivery is not None and not DELIVERY_ID.fullmatch(delivery):
            raise WebhookError(400, "the delivery id is not 1-128 letters, digits, '.', '_', "
                               "':' or '-'")
        return Delivery(provider=provider, event=event.strip()[:64], delivery_id=delivery)
    raise WebhookError(401, "no signature: send X-Hub-Signature-256, X-Gitea-Signature, "
                       "X-Forgejo-Signature or X-Gitlab-Token")


def push(body: bytes) -> Push:
    """The pushed ref and commit of a push event's JSON body (the same keys on every forge)."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookError(400, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "the body is not a JSON object")
    ref, commit = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(commit, str):
        raise WebhookError(400, "a push event has a 'ref' and an 'after' commit")
    if not COMMIT.fullmatch(commit):
        raise WebhookError(422, f"the pushed commit {commit[:80]!r} is not 40 hexadecimal "
                           "digits")
    branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None
    return Push(branch=branch or None, commit=commit, ref=ref[:300])


def delivery_keys(environment: str, delivery: Delivery, body: bytes) -> list[str]:
    """What a delivery is remembered by: its id, and its body (a replay may carry a new id,
    which the signature does not cover; a forge's redelivery keeps both)."""
    keys = [f"{environment} body {hashlib.sha256(body).hexdigest()}"]
    if delivery.delivery_id:
        keys.append(f"{environment} {delivery.provider} {delivery.delivery_id}")
    return keys
