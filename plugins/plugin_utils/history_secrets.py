# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of the deploy history: find the values of secret-looking variables and
replace them wherever they appear in text bound for the store."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "********"
SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|key|credential", re.IGNORECASE)
# Shorter values would mask ordinary words and numbers all over the log.
MIN_SECRET_LENGTH = 4
_VAULT_TYPES = frozenset({"EncryptedString", "AnsibleVaultEncryptedUnicode"})


def looks_secret(name: object) -> bool:
    return isinstance(name, str) and SECRET_NAME.search(name) is not None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if type(value).__name__ in _VAULT_TYPES:
        try:
            return str(value)  # decrypts; without the vault password there is nothing to mask
        except Exception:
            return None
    return None


def secret_values(variables: Any, render: Callable[[str], Any] | None = None,
                  inside_secret: bool = False) -> set[str]:
    """The string values held, at any depth, under a secret-looking name.

    A templated value is rendered with ``render`` when one is given (a value that fails to
    render is skipped), and skipped otherwise.
    """
    found: set[str] = set()
    if isinstance(variables, Mapping):
        for name, value in variables.items():
            found |= secret_values(value, render, inside_secret or looks_secret(name))
    elif isinstance(variables, (list, tuple)):
        for value in variables:
            found |= secret_values(value, render, inside_secret)
    elif inside_secret:
        text = _text(variables)
        if text and "{{" in text:
            text = _render(render, text)
        if text and len(text) >= MIN_SECRET_LENGTH and "{{" not in text:
            found.add(text)
    return found


def _render(render: Callable[[str], Any] | None, text: str) -> str | None:
    if render is None:
        return None
    try:
        return _text(render(text))
    except Exception:
        return None


def mask_secret_names(variables: Any) -> Any:
    """A copy of ``variables`` with the value of every secret-looking name replaced by MASK."""
    if isinstance(variables, Mapping):
        return {str(name): MASK if looks_secret(name) else mask_secret_names(value)
                for name, value in variables.items()}
    if isinstance(variables, (list, tuple)):
        return [mask_secret_names(value) for value in variables]
    if isinstance(variables, (str, int, float, bool)) or variables is None:
        return variables
    return str(variables)


class SecretScrubber:
    """Masks known secret values in text. ``add`` may run in one thread while ``scrub`` runs in
    another: the pattern is swapped whole."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            new = set(values) - self._values
            if not new:
                return
            self._values |= new
            # Longest first, so that a secret containing another one is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_all(self, data: Any) -> Any:
        """``data`` (strings, dicts and lists of them) with every string scrubbed."""
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {key: self.scrub_all(value) for key, value in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.scrub_all(value) for value in data]
        return data
