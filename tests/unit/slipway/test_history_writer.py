from __future__ import annotations

from datetime import timedelta

import pytest

from slipway.history.store import (
    HistoryStore,
    HistoryStoreError,
    parse_age,
    redact_url,
)
from slipway.history.writer import _merge


def test_adjacent_log_lines_and_task_results_are_merged_in_order():
    operations = [("start", {"a": 1}), ("log", "x\n"), ("log", "y\n"), ("task", {"t": 1}),
                  ("task", {"t": 2}), ("log", "z\n"), ("task", {"t": 3}), ("finish", {})]

    assert _merge(operations) == [("start", {"a": 1}), ("log", "x\ny\n"),
                                  ("tasks", [{"t": 1}, {"t": 2}]), ("log", "z\n"),
                                  ("tasks", [{"t": 3}]), ("finish", {})]


@pytest.mark.parametrize(("text", "age"), [
    ("90d", timedelta(days=90)),
    ("12h", timedelta(hours=12)),
    ("2w", timedelta(weeks=2)),
    (" 30m ", timedelta(minutes=30)),
    ("0s", timedelta(0)),
])
def test_ages_are_parsed(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "3 months", "-1d", "1y", "d"])
def test_malformed_ages_are_refused(text):
    with pytest.raises(ValueError):
        parse_age(text)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://deploy:pa55@db:5432/history", "postgresql://deploy:****@db:5432/history"),
    ("mysql://root@localhost/history", "mysql://root@localhost/history"),
    ("/var/lib/slipway/history.sqlite3", "/var/lib/slipway/history.sqlite3"),
])
def test_passwords_are_left_out_of_store_urls_in_messages(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["redis://localhost/0", "mongodb://x/y"])
def test_unsupported_store_urls_are_refused_with_a_hint(url):
    with pytest.raises(HistoryStoreError, match="postgresql://... or mysql://"):
        HistoryStore(url)
