"""Bearer tokens at both APIs' edges (fake bus, fake views): 401 and 403 bodies, scopes, a
customer confined to its own accounts, the actor handed to the command side, no token echoed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from auth.local import ensure_keys, issue
from auth.settings import AuthSettings
from auth.tokens import ACCOUNTS_READ, ACCOUNTS_WRITE, AuthConfigError, TokenVerifier, Unauthenticated
from producers.api.app import create_app as command_app
from producers.domain.actor import Actor
from producers.settings import CommandApiSettings
from query_api.app import Adapters
from query_api.app import create_app as query_app
from query_api.settings import QueryApiSettings
from stream_processors.store import ProjectedEvent
from stream_processors.views import accounts, transfers
from tests.support.fake_views import FakeViewReads, FakeViews, FakeViewStore
from tests.support.tokens import bearer, signing_key, token
from tests.unit.test_command_api import FakeBus

AT = datetime(2026, 3, 1, tzinfo=UTC)


def verifier() -> TokenVerifier:
    return TokenVerifier(AuthSettings())


# -- verification ----------------------------------------------------------------------------


def test_a_valid_token_gives_subject_scopes_and_owner() -> None:
    who = verifier().verify(token("alice", (ACCOUNTS_READ,), owner="alice"))
    assert (who.subject, who.scopes, who.owner_id, who.is_customer) == (
        "alice",
        frozenset({ACCOUNTS_READ}),
        "alice",
        True,
    )
    assert not verifier().verify(token("teller")).is_customer


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "cqrs-local",
        "aud": "cqrs",
        "sub": "x",
        "scope": "accounts:read",
        "exp": now + 86400,
        **over,
    }


def _signed(claims: dict[str, Any], key_file: Path | None = None, algorithm: str = "ES256") -> str:
    key = serialization.load_pem_private_key((key_file or signing_key()).read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        (_claims(exp=int(time.time()) - 3600), "expired"),
        (_claims(iss="someone-else"), "issuer"),
        (_claims(aud="another-api"), "audience"),
        ({k: v for k, v in _claims().items() if k != "sub"}, "sub"),
    ],
)
def test_tokens_that_fail_a_check_are_refused_naming_it(claims: dict[str, Any], says: str) -> None:
    with pytest.raises(Unauthenticated, match=f"(?i){says}"):
        verifier().verify(_signed(claims))


def test_a_token_signed_by_another_key_or_unsigned_or_hmac_is_refused(tmp_path: Path) -> None:
    other, _ = ensure_keys(tmp_path)
    with pytest.raises(Unauthenticated, match=r"(?i)signature"):
        verifier().verify(_signed(_claims(), other))
    with pytest.raises(Unauthenticated):
        verifier().verify(jwt.encode(_claims(), None, algorithm="none"))  # type: ignore[arg-type]
    public_pem = Path(AuthSettings().auth_public_key_file or "").read_bytes()
    with pytest.raises(Unauthenticated):  # the public key used as an HMAC secret (alg confusion)
        verifier().verify(_hmac_signed(_claims(), public_pem))


def _hmac_signed(claims: dict[str, Any], secret: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def test_without_a_key_source_the_service_says_what_to_set() -> None:
    with pytest.raises(AuthConfigError, match=r"AUTH_JWKS_URL.*AUTH_PUBLIC_KEY_FILE"):
        TokenVerifier(AuthSettings(auth_public_key_file=None, auth_jwks_url=None))


# -- the command API -------------------------------------------------------------------------


@pytest.fixture
def commands() -> Iterator[tuple[TestClient, FakeBus]]:
    bus = FakeBus()
    with TestClient(command_app(CommandApiSettings(), gateway=bus)) as client:
        yield client, bus


def test_no_token_is_401_with_a_challenge_and_nothing_is_sent(commands: tuple[TestClient, FakeBus]) -> None:
    client, bus = commands
    response = client.post("/accounts", json={"owner_id": "a", "currency": "EUR"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized" and "Bearer" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    garbage = client.post(
        "/accounts/x/deposits", json={"amount": 1}, headers={"authorization": "Bearer abc.def"}
    )
    assert garbage.status_code == 401 and "abc.def" not in garbage.text
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]
    assert bus.submitted == []
    assert client.get("/healthz").status_code == 200


def test_a_token_without_the_scope_is_403_naming_it(commands: tuple[TestClient, FakeBus]) -> None:
    client, bus = commands
    read_only = bearer("auditor", (ACCOUNTS_READ,))
    response = client.post("/accounts/x/deposits", json={"amount": 1}, headers=read_only)
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "this needs the scope accounts:write; the token has: accounts:read",
    }
    transfer = {"from_account_id": "a", "to_account_id": "b", "amount": 1}
    assert client.post("/transfers", json=transfer, headers=bearer("t", (ACCOUNTS_WRITE,))).status_code == 403
    assert bus.submitted == []


def test_the_command_carries_its_actor_and_keys_are_scoped_by_caller(
    commands: tuple[TestClient, FakeBus],
) -> None:
    client, bus = commands
    alice = bearer("alice", (ACCOUNTS_WRITE,), owner="alice")
    client.post("/accounts/acc-1/deposits", json={"amount": 5}, headers={**alice, "Idempotency-Key": "k"})
    client.post(
        "/accounts/acc-1/deposits", json={"amount": 5}, headers={**bearer("teller"), "Idempotency-Key": "k"}
    )
    (first, _), (second, _) = bus.submitted
    assert first.actor == Actor("alice", "alice") and second.actor == Actor("teller", None)
    assert first.command_id != second.command_id  # the same key from two callers: two commands


def test_a_domain_refusal_of_ownership_is_403(commands: tuple[TestClient, FakeBus]) -> None:
    from producers.engine.handler import Outcome

    client, bus = commands
    bus.outcome = Outcome(False, 3, None, "not_owner", "alice does not own this account", None)
    response = client.post("/accounts/bobs/withdrawals", json={"amount": 5}, headers=bearer(owner="alice"))
    assert (response.status_code, response.json()["error"]) == (403, "not_owner")


def test_docs_follow_a_setting() -> None:
    with TestClient(
        command_app(CommandApiSettings(), gateway=FakeBus(), auth=AuthSettings(api_docs=False))
    ) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404
    with TestClient(command_app(CommandApiSettings(), gateway=FakeBus())) as c:
        document = c.get("/openapi.json").json()
    deposit = document["paths"]["/accounts/{account_id}/deposits"]["post"]
    assert deposit["security"] == [{"bearer": []}] and {"401", "403"} <= set(deposit["responses"])
    assert "security" not in document["paths"]["/healthz"]["get"]


# -- the query API ---------------------------------------------------------------------------


def _projected(
    project: Any, aggregate_id: str, name: str, payload: dict[str, Any], offset: int
) -> ProjectedEvent:
    record = {"aggregate_id": aggregate_id, "version": 1, "occurred_at": AT, **payload}
    return ProjectedEvent(0, offset, project(name, record))


@pytest.fixture
def queries() -> Iterator[TestClient]:
    views = FakeViews()
    views.set_current(accounts.NAME, 1, {"state": "live"})
    views.set_current(transfers.NAME, 1, {"state": "live"})
    store = FakeViewStore(views, accounts.NAME, 1)
    for offset, (account, owner) in enumerate((("alices", "alice"), ("bobs", "bob"))):
        opened = {"owner_id": owner, "currency": "EUR", "overdraft_limit": 0}
        asyncio.run(store.apply([_projected(accounts.project, account, "AccountOpened", opened, offset)]))
    requested = {"from_account_id": "bobs", "to_account_id": "carols", "amount": 5}
    asyncio.run(
        FakeViewStore(views, transfers.NAME, 1).apply(
            [
                _projected(
                    transfers.project,
                    f"t-{who}",
                    "TransferRequested",
                    {**requested, "actor": who, "actor_owner_id": who},
                    offset,
                )
                for offset, who in enumerate(("bob", "alice"))
            ]
        )
    )

    @asynccontextmanager
    async def fake(_: QueryApiSettings) -> AsyncIterator[Adapters]:
        yield Adapters(FakeViewReads(views), {}, None)  # type: ignore[arg-type]

    with TestClient(query_app(QueryApiSettings(), adapters=fake)) as client:
        yield client


def test_reads_need_a_token_and_the_read_scope(queries: TestClient) -> None:
    assert queries.get("/accounts/alices").status_code == 401
    assert queries.get("/accounts/alices", headers=bearer("w", (ACCOUNTS_WRITE,))).status_code == 403
    assert queries.get("/accounts/alices", headers=bearer("r", (ACCOUNTS_READ,))).status_code == 200
    assert queries.get("/healthz").status_code == 200


def test_a_customer_reads_only_its_own(queries: TestClient) -> None:
    alice = bearer("alice", (ACCOUNTS_READ,), owner="alice")
    assert queries.get("/accounts/alices", headers=alice).json()["owner_id"] == "alice"
    for path in ("/accounts/bobs", "/accounts/bobs/transactions", "/accounts/bobs/statements/2026-03"):
        response = queries.get(path, headers=alice)
        assert response.status_code == 404, path  # as if it did not exist
    assert queries.get("/owners/alice/accounts", headers=alice).status_code == 200
    other = queries.get("/owners/bob/accounts", headers=alice)
    assert (other.status_code, other.json()["error"]) == (403, "forbidden")
    assert queries.get("/stats/daily?date=2026-03-01&currency=EUR", headers=alice).status_code == 403
    # Transfers: the ones it requested (even from an account it does not own), not others'.
    assert queries.get("/transfers/t-alice", headers=alice).json()["requested_by"] == "alice"
    assert queries.get("/transfers/t-bob", headers=alice).status_code == 404
    assert (
        queries.get("/transfers/t-bob", headers=bearer("bob", (ACCOUNTS_READ,), owner="bob")).status_code
        == 200
    )


def test_views_and_metrics_need_the_operator_scope(queries: TestClient) -> None:
    reader = bearer("r", (ACCOUNTS_READ,))
    for path in ("/views", "/metrics"):
        assert queries.get(path).status_code == 401
        assert queries.get(path, headers=reader).status_code == 403
    assert queries.get("/metrics", headers=bearer("ops", ("operator",))).status_code == 200


def test_a_local_token_names_its_issuer_audience_and_expiry(tmp_path: Path) -> None:
    private, _ = ensure_keys(tmp_path)
    claims = jwt.decode(issue(private, "s", ["operator"], ttl_s=60), options={"verify_signature": False})
    assert claims["iss"] == "cqrs-local" and claims["aud"] == "cqrs" and claims["scope"] == "operator"
    assert 50 < claims["exp"] - time.time() <= 60


def test_keys_from_an_identity_providers_jwks(tmp_path: Path) -> None:
    """A JWKS URL (as an identity provider serves it): the key is picked by the token's `kid`."""
    private, public = ensure_keys(tmp_path)
    jwk = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(serialization.load_pem_public_key(public.read_bytes()))
    )
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None: ...

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = AuthSettings(auth_jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json")
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        signed = jwt.encode(_claims(sub="idp-user"), key, algorithm="ES256", headers={"kid": "k1"})  # type: ignore[arg-type]
        verifier = TokenVerifier(settings)
        assert verifier.fetches_keys and verifier.verify(signed).subject == "idp-user"
        unknown = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k2"})  # type: ignore[arg-type]
        with pytest.raises(Unauthenticated):
            verifier.verify(unknown)
    finally:
        server.shutdown()
