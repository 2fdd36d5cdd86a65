"""Redis ACL users on the real server: the query API reads views and listens to their changes, the
projector writes views but administers nothing, and the default user is off."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis

from infra.credentials import with_user
from stream_processors import layout
from tests.conftest import Stack
from tests.support.principals import password_of

pytestmark = pytest.mark.integration


def as_user(stack: Stack, user: str, password: str | None = None) -> redis.Redis:
    known = password_of(user) if user != "default" else None
    if known is None and password is None:
        pytest.skip("the stack has no credentials (not the local stack): nothing to check")
    return redis.Redis.from_url(with_user(stack.redis_url, user, password or known or ""), socket_timeout=5)


def test_the_query_api_reads_views_and_writes_nothing(stack: Stack, unique: str) -> None:
    key = f"{layout.prefix('accounts', 999)}{layout.account(unique)}"
    operator, query_api = as_user(stack, "operator"), as_user(stack, "query-api")
    operator.hset(key, mapping={"balance": "5"})
    try:
        assert query_api.hget(key, "balance") == b"5"
        for write in (lambda: query_api.hset(key, "balance", "6"), lambda: query_api.set(key + ":x", "1")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
        # a script runs with the caller's rights: no write through EVAL either
        with pytest.raises(redis.ResponseError):
            query_api.eval("return redis.call('HSET', KEYS[1], 'balance', 7)", 1, key)
        with pytest.raises(redis.exceptions.NoPermissionError):
            query_api.get(f"elsewhere:{unique}")  # outside view:*
        assert operator.hget(key, "balance") == b"5"
        pubsub = query_api.pubsub()
        pubsub.psubscribe(layout.changes_pattern("accounts"))  # what query_api/notifications.py does
        pubsub.close()
    finally:
        operator.delete(key)


def test_the_projector_writes_views_but_administers_nothing(stack: Stack, unique: str) -> None:
    projector = as_user(stack, "projector")
    key = f"{layout.prefix('accounts', 999)}{layout.account(unique)}"
    try:
        projector.hset(key, "balance", "1")
        assert projector.publish(layout.changes_channel("accounts", unique), b"1") >= 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            projector.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            projector.config_get("maxmemory")
        with pytest.raises(redis.exceptions.NoPermissionError):
            projector.set(f"elsewhere:{unique}", "1")
    finally:
        projector.delete(key)


def test_the_default_user_cannot_authenticate(stack: Stack) -> None:
    as_user(stack, "operator")  # skips without a local stack
    parts = urlsplit(stack.redis_url)
    anonymous = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        as_user(stack, "default", "anything").ping()
    with pytest.raises(redis.AuthenticationError):
        as_user(stack, "query-api", "wrong").ping()
