"""Passwords, tokens and the checks every input goes through before anything starts."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from slipway.history import store as history_store

ROLES = ("admin", "deployer", "viewer")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_PASSWORD_LENGTH = 12
MAX_DESCRIPTION_LENGTH = 1000
MIN_TOKEN_LIFETIME = timedelta(hours=1)
MAX_TOKEN_LIFETIME = timedelta(days=3650)

# argon2id with the library's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes).
_HASHER = PasswordHasher()
# Verifying against this keeps a login for an unknown name as slow as one for a known name.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class InputError(ValueError):
    """Input that is refused before anything starts; the message is shown to the user."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def new_secret() -> str:
    """A random URL-safe secret: API tokens, session ids, CSRF tokens."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """What is stored for a token or session id: its SHA-256 (they are random, not guessable,
    so a fast hash is enough and lets every request look them up by digest)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(left: str | None, right: str | None) -> bool:
    return bool(left) and bool(right) and hmac.compare_digest(str(left), str(right))


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name or ""):
        raise InputError(f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or "
                         "'-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


# What real branch and tag names use. Anything else (braces, quotes, '$', '%', ...) is refused
# by name, so nothing a user types can reach Ansible as a template or a shell as syntax.
BRANCH_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._/-+@")


def _describe(char: str) -> str:
    return repr(char) if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"


def check_branch(branch: str) -> str:
    """A branch, tag or commit name made of letters, digits and ``. _ / - + @`` only, that
    `git check-ref-format --branch` would also accept, and that cannot be taken for an option."""
    problems = []
    if not branch:
        problems.append("it is empty")
    if len(branch) > 255:
        problems.append("it is longer than 255 characters")
    if branch.startswith("-"):
        problems.append("it starts with '-'")
    bad = sorted({char for char in branch if char not in BRANCH_CHARACTERS})
    if bad:
        problems.append(f"it contains {', '.join(_describe(char) for char in bad)} (allowed: "
                        "letters, digits and . _ / - + @)")
    if ".." in branch:
        problems.append("it contains '..'")
    if branch == "@":
        problems.append("it is '@'")
    if branch.startswith("/") or branch.endswith("/") or "//" in branch:
        problems.append("it has an empty path component ('/' at either end or '//')")
    if branch.endswith("."):
        problems.append("it ends with '.'")
    components = branch.split("/")
    if any(part.startswith(".") for part in components):
        problems.append("a component starts with '.'")
    if any(part.endswith(".lock") for part in components):
        problems.append("a component ends with '.lock'")
    if problems:
        raise InputError(f"malformed branch name {branch!r}: {'; '.join(problems)}")
    return branch


def check_release(release: str) -> str:
    if not RELEASE_ID.match(release or ""):
        raise InputError(f"malformed release id {release!r}: expected 1-100 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit")
    return release


def token_lifetime(text: str | None) -> timedelta | None:
    """How long a new API token lasts ('12h', '30d', '2w'); None or '' for no expiry."""
    if text is None or not text.strip():
        return None
    try:
        lifetime = history_store.parse_age(text.strip())
    except (ValueError, OverflowError):
        raise InputError(f"token expiry {text!r} is not a lifetime such as 12h, 30d or "
                         "2w") from None
    if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
        raise InputError(f"token expiry {text!r} must be between 1 hour and "
                         f"{MAX_TOKEN_LIFETIME.days} days")
    return lifetime


def check_description(description: str | None) -> str | None:
    if description is None:
        return None
    description = description.strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InputError(f"the description is longer than {MAX_DESCRIPTION_LENGTH} characters")
    if any(ord(char) < 0x20 and char not in "\n\t" or ord(char) == 0x7F for char in description):
        raise InputError("the description contains control characters")
    return description or None


class LoginThrottle:
    """Refuses logins after too many failures in a sliding window.

    Three counts: failures for one name from one address (max_failures), from one address
    whatever the name (4 x max_failures, against trying many names), and for one name from
    any address (account_max_failures, against guessing one password from many addresses;
    0: not counted). A refused try is not counted, and is refused before the password is
    checked. A success clears its name's count for that address only: the name's count across
    addresses keeps what others tried. max_failures 0 turns the throttle off. Kept in memory: a
    restart of the console forgets it, the audit table keeps every try.
    """

    ADDRESS_FACTOR = 4
    _MAX_KEYS = 10_000

    def __init__(self, max_failures: int, window_seconds: float,
                 clock: Callable[[], float] = time.monotonic, *,
                 account_max_failures: int = 0) -> None:
        self.max_failures = int(max_failures)
        self.account_max_failures = int(account_max_failures)
        self.window = float(window_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, ...], deque[float]] = {}

    def _keys(self, name: str, address: str | None) -> list[tuple[tuple[str, ...], int]]:
        address = address or "-"
        keys = [(("name", name.casefold(), address), self.max_failures),
                (("address", address), self.max_failures * self.ADDRESS_FACTOR)]
        if self.account_max_failures > 0:
            keys.append((("account", name.casefold()), self.account_max_failures))
        return keys

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, name: str, address: str | None) -> float:
        """Seconds until this name may try again from this address; 0 when it may now."""
        if self.max_failures <= 0:
            return 0.0
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._keys(name, address):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = max(wait, times[len(times) - limit] + self.window - now)
        return wait

    def failed(self, name: str, address: str | None) -> None:
        if self.max_failures <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._MAX_KEYS:
                for key in list(self._failures):
                    if not self._recent(key, now):
                        del self._failures[key]
            for key, _limit in self._keys(name, address):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str, address: str | None) -> None:
        with self._lock:
            self._failures.pop(self._keys(name, address)[0][0], None)
