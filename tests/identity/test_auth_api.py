"""Register, log in, log out, /api/me: over bearer tokens and the session cookie."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from http.cookies import SimpleCookie

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI, Request, Response
from sqlalchemy import select, update

from mercato.app import create_app
from mercato.db import UnitOfWork, utcnow
from mercato.events import OutboxEvent
from mercato.identity import service
from mercato.identity.models import Token, User
from mercato.identity.service import UserInfo
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.identity.support import (
    PASSWORD,
    assert_problem,
    bearer,
    counts,
    page_post,
    plant_session_cookie,
    register,
)


def session_cookie(r: httpx.Response) -> SimpleCookie:
    headers = [v for v in r.headers.get_list("set-cookie") if v.startswith("mercato_session=")]
    assert len(headers) == 1, headers
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(headers[0])
    return cookie


# --- register ------------------------------------------------------------------------------


async def test_register_creates_a_signed_in_customer(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    r = await client.post(
        "/api/auth/register",
        json={"email": "  Ada@Example.COM ", "password": PASSWORD, "name": " Ada Lovelace "},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    user = body["user"]
    assert user["id"].startswith("usr_")
    assert user["email"] == "ada@example.com"
    assert user["name"] == "Ada Lovelace"
    assert user["role"] == "customer"
    assert "password" not in r.text and "hash" not in r.text
    assert len(body["token"]) >= 43

    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.json() == user

    async with app.state.runtime.db.transaction() as session:
        stored = await session.get(User, user["id"])
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash
        token_rows = (await session.scalars(select(Token))).all()
    # Only the token's digest is stored.
    assert [t.token_hash for t in token_rows] == [service.hash_token(body["token"])]
    assert body["token"] not in {t.token_hash for t in token_rows}


async def test_register_ignores_a_requested_role(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/auth/register",
        json={"email": "eve@example.com", "password": PASSWORD, "name": "Eve", "role": "staff"},
    )
    assert r.status_code == 201
    assert r.json()["user"]["role"] == "customer"


async def test_register_publishes_user_registered(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = (await register(client)).json()["user"]
    async with app.state.runtime.db.transaction() as session:
        rows = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.type == "UserRegistered"))
        ).all()
    assert [(e.aggregate_id, e.payload["email"], e.payload["role"]) for e in rows] == [
        (user["id"], "ada@example.com", "customer")
    ]


async def test_duplicate_email_is_409_and_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client, email="ada@example.com")
    before = await counts(app)
    r = await client.post(
        "/api/auth/register",
        json={"email": " ADA@example.com", "password": PASSWORD, "name": "Other Ada"},
    )
    assert_problem(r, 409, "email_taken")
    assert "set-cookie" not in r.headers
    assert await counts(app) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@b", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a b@example.com", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": "x" * 257, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "   "}, "name"),
        ({"email": "a@example.com", "password": PASSWORD}, "name"),
        ({"email": "a@example.com", "password": 1234567890123, "name": "A"}, "password"),
    ],
)
async def test_register_validation_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, payload: dict[str, object], field: str
) -> None:
    before = await counts(app)
    r = await client.post("/api/auth/register", json=payload)
    body = assert_problem(r, 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]]  # type: ignore[attr-defined]
    assert await counts(app) == before


async def test_malformed_json_is_400(client: httpx.AsyncClient, app: FastAPI) -> None:
    before = await counts(app)
    r = await client.post(
        "/api/auth/register", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")
    assert await counts(app) == before


FULL_WIDTH_ADA = "\uff41\uff44\uff41@example.com"  # "ada" in full-width letters


async def test_one_account_per_address_however_it_is_spelt(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Unicode compatibility forms and case fold to one address: registering again in
    full-width letters, or with a capital sharp s, is the same account."""
    registered = (await register(client, email="ada@example.com")).json()["user"]
    before = await counts(app)
    for spelling in (FULL_WIDTH_ADA, "ADA@EXAMPLE.COM", "\uff21da@example.com"):
        r = await client.post(
            "/api/auth/register", json={"email": spelling, "password": PASSWORD, "name": "Eve"}
        )
        assert_problem(r, 409, "email_taken")
    assert await counts(app) == before
    client.cookies.clear()
    r = await client.post("/api/auth/login", json={"email": FULL_WIDTH_ADA, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == registered["id"]
    async with app.state.runtime.db.transaction() as uow:
        assert await service.get_user_by_email(uow, FULL_WIDTH_ADA) is not None
    strasse = (await register(client, email="STRASSE@example.de")).json()["user"]
    assert strasse["email"] == "strasse@example.de"
    r = await client.post(
        "/api/auth/register",
        json={"email": "Stra\u00dfe@example.de", "password": PASSWORD, "name": "Eve"},
    )
    assert_problem(r, 409, "email_taken")


async def test_registration_is_limited_per_ip(
    client_from: Callable[[str], httpx.AsyncClient], app: FastAPI, settings: Settings
) -> None:
    rt: Runtime = app.state.runtime
    rt.settings = settings.model_copy(update={"register_per_ip_per_hour": 3})
    crowd = client_from("127.0.0.30")
    for i in range(3):
        await register(crowd, email=f"user{i}@example.com")
    before = await counts(app)
    payload = {"email": "user9@example.com", "password": PASSWORD, "name": "Nine"}
    r = await crowd.post("/api/auth/register", json=payload)
    body = assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert await counts(app) == before
    # The page refuses the same address in the same way; another address registers.
    form = {"name": "Nine", "email": "user9@example.com", "password": PASSWORD}
    crowd.cookies.clear()  # signed out, or the page sends a signed-in visitor on
    r = await page_post(crowd, "/account/register", "/account/register", form)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert await counts(app) == before
    r = await page_post(client_from("127.0.0.31"), "/account/register", "/account/register", form)
    assert r.status_code == 303, r.text


# --- login ---------------------------------------------------------------------------------


async def test_login_issues_a_fresh_working_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    registered = (await register(client)).json()
    r = await client.post(
        "/api/auth/login", json={"email": "ADA@example.com ", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == registered["user"]
    assert body["token"] != registered["token"]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at.tzinfo is not None
    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert me.json()["id"] == registered["user"]["id"]


async def test_wrong_password_and_unknown_email_answer_identically(
    make_client: object, app: FastAPI
) -> None:
    assert callable(make_client)
    c1: httpx.AsyncClient = make_client()
    c2: httpx.AsyncClient = make_client()
    await register(c1)
    before = await counts(app)
    wrong = await c1.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "not the password"}
    )
    unknown = await c2.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "not the password"}
    )
    assert_problem(wrong, 401, "invalid_credentials")
    assert wrong.status_code == unknown.status_code
    assert wrong.content == unknown.content
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers
    assert await counts(app) == before


async def test_login_validation_names_the_field(client: httpx.AsyncClient, app: FastAPI) -> None:
    before = await counts(app)
    r = await client.post("/api/auth/login", json={"email": "nope", "password": "x"})
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["email"]  # type: ignore[attr-defined]
    r = await client.post("/api/auth/login", json={"email": "a@example.com", "password": ""})
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["password"]  # type: ignore[attr-defined]
    assert await counts(app) == before


async def test_login_upgrades_an_outdated_password_hash(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = (await register(client)).json()["user"]["id"]
    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as session:
        old_hash = (await session.get_one(User, user_id)).password_hash

    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    monkeypatch.setattr(service, "PASSWORD_HASHER", stronger)
    r = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200
    async with rt.db.transaction() as session:
        new_hash = (await session.get_one(User, user_id)).password_hash
    assert new_hash != old_hash
    assert not stronger.check_needs_rehash(new_hash)
    assert stronger.verify(new_hash, PASSWORD)


# --- tokens: missing, forged, expired, revoked ------------------------------------------------


async def test_me_without_credentials_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/me")
    body = assert_problem(r, 401, "unauthorized")
    assert body["reason"] == "missing"
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    [
        "forged-token-that-was-never-issued-by-us-000",
        "x",
        "ü-not-even-ascii".encode().decode("latin-1"),
        "A" * 5000,
    ],
)
async def test_forged_token_is_401_and_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, token: str
) -> None:
    await register(client)
    client.cookies.clear()
    before = await counts(app)
    r = await client.get("/api/me", headers={b"Authorization": f"Bearer {token}".encode("latin-1")})
    body = assert_problem(r, 401, "unauthorized")
    assert body["reason"] == "invalid"
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert await counts(app) == before


async def test_expired_token_is_401(client: httpx.AsyncClient, app: FastAPI) -> None:
    user_id = (await register(client)).json()["user"]["id"]
    client.cookies.clear()
    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as session:
        already_expired = await service.issue_token(session, user_id, ttl_seconds=-1)
        live = await service.issue_token(session, user_id, ttl_seconds=3600)
    assert (await client.get("/api/me", headers=bearer(live))).status_code == 200

    # A token that was good a moment ago goes bad once its expiry passes.
    async with rt.db.transaction() as session:
        await session.execute(
            update(Token)
            .where(Token.token_hash == service.hash_token(live))
            .values(expires_at=utcnow())
        )
    before = await counts(app)
    for token in (already_expired, live):
        r = await client.get("/api/me", headers=bearer(token))
        body = assert_problem(r, 401, "unauthorized")
        assert body["reason"] == "expired"
        assert "expired" in str(body["detail"])
    assert await counts(app) == before


async def test_logout_revokes_the_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = (await register(client)).json()["token"]
    client.cookies.clear()
    other = (
        await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
    ).json()["token"]
    client.cookies.clear()

    r = await client.post("/api/auth/logout", headers=bearer(token))
    assert r.status_code == 204
    assert r.content == b""
    cleared = session_cookie(r)["mercato_session"]
    assert cleared.value == "" and cleared["max-age"] == "0"

    r = await client.get("/api/me", headers=bearer(token))
    body = assert_problem(r, 401, "unauthorized")
    assert body["reason"] == "revoked"
    # Logging out twice with the same token: it is no longer a credential.
    assert_problem(
        await client.post("/api/auth/logout", headers=bearer(token)), 401, "unauthorized"
    )
    # Other sessions of the same user are untouched.
    assert (await client.get("/api/me", headers=bearer(other))).status_code == 200


async def test_logout_all_revokes_every_session(client: httpx.AsyncClient) -> None:
    first = (await register(client)).json()["token"]
    client.cookies.clear()
    second = (
        await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
    ).json()["token"]
    client.cookies.clear()
    assert (await client.post("/api/auth/logout-all", headers=bearer(second))).status_code == 204
    for token in (first, second):
        body = assert_problem(
            await client.get("/api/me", headers=bearer(token)), 401, "unauthorized"
        )
        assert body["reason"] == "revoked"


# --- the session cookie ------------------------------------------------------------------------


async def test_login_sets_an_httponly_samesite_cookie_that_authenticates(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client)
    client.cookies.clear()
    r = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    morsel = session_cookie(r)["mercato_session"]
    assert morsel.value == r.json()["token"]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(settings.token_ttl_seconds)
    assert not morsel["secure"]

    # No Authorization header: the cookie alone signs the request in.
    me = await client.get("/api/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"

    # Logging out through the cookie revokes it and the browser forgets it.
    assert (await client.post("/api/auth/logout")).status_code == 204
    assert "mercato_session" not in client.cookies
    plant_session_cookie(client, morsel.value)
    r = await client.get("/api/me")
    body = assert_problem(r, 401, "unauthorized")
    assert body["reason"] == "revoked"
    # A rejected cookie is cleared so the browser stops presenting it.
    assert session_cookie(r)["mercato_session"]["max-age"] == "0"
    assert "mercato_session" not in client.cookies


async def test_bearer_header_wins_over_cookie(client: httpx.AsyncClient) -> None:
    await register(client, email="ada@example.com")  # leaves Ada's cookie in the jar
    bob = (await register(client, email="bob@example.com", name="Bob")).json()["token"]
    client.cookies.clear()
    await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    me = await client.get("/api/me", headers=bearer(bob))
    assert me.json()["email"] == "bob@example.com"


async def test_cookie_is_secure_when_configured(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cookie_secure": True}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            r = await register(c)
    assert session_cookie(r)["mercato_session"]["secure"] is True


# --- login hooks -------------------------------------------------------------------------------


async def test_login_hooks_run_inside_the_transaction(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    seen: list[tuple[str, str]] = []

    async def hook(uow: UnitOfWork, request: Request, response: Response, user: UserInfo) -> None:
        seen.append((request.url.path, user.email))
        response.headers["X-Hooked"] = "yes"
        if request.headers.get("x-fail-hook"):
            raise Problem(409, "hook_refused", "refused by a hook")

    service.after_login_hooks.append(hook)
    try:
        r = await register(client)
        assert r.headers["x-hooked"] == "yes"
        r = await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert r.status_code == 200
        assert seen == [
            ("/api/auth/register", "ada@example.com"),
            ("/api/auth/login", "ada@example.com"),
        ]
        # A failing hook undoes the login: no token is left behind.
        before = await counts(app)
        r = await client.post(
            "/api/auth/login",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"x-fail-hook": "1"},
        )
        assert_problem(r, 409, "hook_refused")
        assert await counts(app) == before
        # Rejected credentials never reach the hooks.
        await client.post("/api/auth/login", json={"email": "ada@example.com", "password": "bad"})
        assert len(seen) == 3
    finally:
        service.after_login_hooks.remove(hook)
