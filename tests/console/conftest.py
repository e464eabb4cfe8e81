"""Fixtures: a console shared by a test module, and one of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import Site


def make_site(root: Path, grace: float = 10.0) -> Site:
    """A started console: the first admin made with the command line, as a user would, the
    others through the API."""
    site = Site(root, grace)
    site.add_user("root", "admin")
    site.start()
    site.add_user_by_api("second", "admin")
    site.add_user_by_api("alice", "deployer", "staging", "slow", "stubborn", "broken", "paced",
                         "phased")
    site.add_user_by_api("victor", "viewer")
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """One console shared by a test module (tests use different environments or wait for
    their runs to end)."""
    site = make_site(tmp_path_factory.mktemp("console"), grace=3.0)
    yield site
    site.stop()


@pytest.fixture
def fresh_site(tmp_path) -> Iterator[Site]:
    """A console of the test's own, to stop and start again."""
    site = make_site(tmp_path, grace=3.0)
    yield site
    site.stop()
