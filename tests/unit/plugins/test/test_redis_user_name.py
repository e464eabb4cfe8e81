"""redis_user_name: names an ACL file line and a users.d file can hold, not the reserved ones."""

from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.test.redis_user_name import redis_user_name


@pytest.mark.parametrize("name", ["shop", "shop-web", "shop_2", "a.b", "Shop", "a" * 64])
def test_accepted(name):
    assert redis_user_name(name)


@pytest.mark.parametrize("name", [
    "", "default", "slipway-admin", "has space", "two\nlines", "1shop", "-shop", "a/b", "../x",
    ">password", "#hash", "a" * 65, "shop\t", None, 42,
])
def test_refused(name):
    assert not redis_user_name(name)
