"""The login throttle on its own, with a clock the test moves."""

from __future__ import annotations

import pytest

from slipway.console.security import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(throttle: LoginThrottle, times: int, name: str = "dora", address: str = "10.0.0.5"):
    for _attempt in range(times):
        throttle.failed(name, address)


def test_a_name_is_refused_after_its_failures_until_the_oldest_leaves_the_window(clock):
    throttle = LoginThrottle(3, 60, clock)
    fail(throttle, 2)
    assert throttle.retry_after("dora", "10.0.0.5") == 0
    clock.now += 10
    fail(throttle, 1)

    assert throttle.retry_after("dora", "10.0.0.5") == pytest.approx(50)
    assert throttle.retry_after("DORA", "10.0.0.5") == pytest.approx(50), "names fold case"
    assert throttle.retry_after("dora", "10.0.0.6") == 0, "another address is not held"
    assert throttle.retry_after("victor", "10.0.0.5") == 0, "another name is not held"
    clock.now += 50
    assert throttle.retry_after("dora", "10.0.0.5") == 0


def test_one_address_trying_many_names_is_refused_for_every_name(clock):
    throttle = LoginThrottle(2, 60, clock)
    for index in range(LoginThrottle.ADDRESS_FACTOR * 2):
        throttle.failed(f"user{index}", "10.0.0.9")

    assert throttle.retry_after("someone-new", "10.0.0.9") == pytest.approx(60)
    assert throttle.retry_after("someone-new", "10.0.0.10") == 0


def test_a_success_clears_the_names_failures_and_zero_turns_it_off(clock):
    throttle = LoginThrottle(3, 60, clock)
    fail(throttle, 2)
    throttle.succeeded("dora", "10.0.0.5")
    fail(throttle, 2)
    assert throttle.retry_after("dora", "10.0.0.5") == 0

    off = LoginThrottle(0, 60, clock)
    fail(off, 100)
    assert off.retry_after("dora", "10.0.0.5") == 0


def test_one_name_failing_from_many_addresses_is_refused_from_every_address(clock):
    throttle = LoginThrottle(3, 60, clock, account_max_failures=5)
    for index in range(4):
        throttle.failed("dora", f"10.0.1.{index}")
    assert throttle.retry_after("dora", "10.0.9.9") == 0, "under the limit across addresses"
    throttle.failed("dora", "10.0.1.4")

    assert throttle.retry_after("dora", "10.0.9.9") == pytest.approx(60)
    assert throttle.retry_after("Dora", "10.0.9.9") == pytest.approx(60), "names fold case"
    assert throttle.retry_after("victor", "10.0.9.9") == 0, "another name is not held"
    throttle.succeeded("dora", "10.0.1.4")
    assert throttle.retry_after("dora", "10.0.1.4") == pytest.approx(60), \
        "a success from one address does not clear what the others tried"
    clock.now += 60
    assert throttle.retry_after("dora", "10.0.9.9") == 0


def test_the_count_across_addresses_is_off_at_zero(clock):
    throttle = LoginThrottle(3, 60, clock, account_max_failures=0)
    for index in range(50):
        throttle.failed("dora", f"10.0.1.{index}")
    assert throttle.retry_after("dora", "10.0.9.9") == 0
