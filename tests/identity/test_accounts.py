"""The account basics end to end, with mail sent by the worker to a real SMTP server: verifying
the e-mail address, changing the password, resetting a forgotten one.

A link's token is read from the mail the SMTP server received, as its owner would; the tests
also check that it was never written down in clear (account tokens, outbox, mail log).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from mercato import worker
from mercato.db import utcnow
from mercato.events import OutboxEvent
from mercato.identity import service
from mercato.identity.models import AccountToken
from mercato.notifications import mail
from mercato.notifications.service import EMAILS
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.identity.support import (
    PASSWORD,
    assert_problem,
    bearer,
    make_user,
    register,
)
from tests.support.smtp import SmtpServer, parts, with_smtp

NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"https://shop\.example(/account/[a-z-]+)\?token=([A-Za-z0-9_-]+)")


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_smtp(settings, smtp_server)


async def deliver(app: FastAPI) -> None:
    """One worker pass: the outbox becomes mails, and the mails go to the SMTP server."""
    await worker.run_once(app.state.runtime)


def link_in(smtp: SmtpServer, index: int = -1) -> tuple[str, str]:
    """(page path, token) of the link in a received mail; the text and HTML parts agree."""
    text, html = parts(smtp.messages[index])
    found = LINK.search(text)
    assert found is not None, text
    assert found.group(0) in html
    return found.group(1), found.group(2)


async def assert_never_stored(app: FastAPI, token: str) -> None:
    """The token is nowhere in the database: only its digest, and a placeholder in the mail."""
    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as uow:
        digests = set((await uow.scalars(select(AccountToken.token_hash))).all())
        payloads = [str(p) for p in (await uow.scalars(select(OutboxEvent.payload))).all()]
        messages = list((await uow.scalars(select(EMAILS.c.message))).all())
    assert hashlib.sha256(token.encode()).hexdigest() in digests
    assert not any(token in p for p in payloads)
    assert messages and not any(token in m for m in messages)
    assert any(mail.LINK_TOKEN in m for m in messages)


async def login(client: httpx.AsyncClient, password: str) -> httpx.Response:
    client.cookies.clear()
    return await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": password}
    )


# --- e-mail verification ---------------------------------------------------------------------


async def test_registration_mails_a_link_that_verifies_the_address(
    client: httpx.AsyncClient, app: FastAPI, smtp_server: SmtpServer
) -> None:
    token = (await register(client)).json()["token"]
    assert (await client.get("/api/me", headers=bearer(token))).json()["email_verified_at"] is None

    await deliver(app)
    [received] = smtp_server.recorder.received
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["Subject"] == "Test Shop: confirm your e-mail address"
    path, link = link_in(smtp_server)
    assert path == "/account/verify-email"
    await assert_never_stored(app, link)

    assert (await client.post("/api/auth/verify-email", json={"token": link})).status_code == 204
    me = (await client.get("/api/me", headers=bearer(token))).json()
    assert me["email_verified_at"] is not None
    # Single-use; and there is nothing left to verify.
    r = await client.post("/api/auth/verify-email", json={"token": link})
    assert_problem(r, 400, "invalid_token")
    r = await client.post("/api/auth/verify-email/resend", headers=bearer(token))
    assert_problem(r, 409, "already_verified")
    async with app.state.runtime.db.transaction() as uow:
        verified = (
            await uow.scalars(select(OutboxEvent).where(OutboxEvent.type == "UserEmailVerified"))
        ).all()
    # The stored payload also carries the request id (metadata no consumer sees).
    payloads = [{k: v for k, v in e.payload.items() if k != "_request_id"} for e in verified]
    assert payloads == [{"user_id": me["id"], "email": "ada@example.com"}]


async def test_a_new_link_replaces_the_earlier_one_and_resending_is_limited(
    client: httpx.AsyncClient, app: FastAPI, smtp_server: SmtpServer, settings: Settings
) -> None:
    token = (await register(client)).json()["token"]
    await deliver(app)
    _, first = link_in(smtp_server)
    for _ in range(settings.verification_mail_per_user_per_hour):
        r = await client.post("/api/auth/verify-email/resend", headers=bearer(token))
        assert r.status_code == 202, r.text
    r = await client.post("/api/auth/verify-email/resend", headers=bearer(token))
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    await deliver(app)
    # The replaced links got no mail of their own once a newer one existed; the last did.
    assert len(smtp_server.messages) == 2
    _, last = link_in(smtp_server)
    r = await client.post("/api/auth/verify-email", json={"token": first})
    assert_problem(r, 400, "invalid_token")
    assert (await client.post("/api/auth/verify-email", json={"token": last})).status_code == 204


# --- changing the password -------------------------------------------------------------------


async def test_change_password_keeps_this_session_and_ends_the_others(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    this = (await register(client)).json()["token"]
    other = (await login(client, PASSWORD)).json()["token"]
    client.cookies.clear()

    change = "/api/auth/password"
    wrong = {"current_password": "not my password", "new_password": NEW_PASSWORD}
    same = {"current_password": PASSWORD, "new_password": PASSWORD}
    for refused, field in ((wrong, "current_password"), (same, "new_password")):
        r = await client.post(change, json=refused, headers=bearer(this))
        body = assert_problem(r, 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == [field]  # type: ignore[attr-defined]
    assert (await client.post(change, json=wrong)).status_code == 401  # signed in only

    good = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post(change, json=good, headers=bearer(this))).status_code == 204
    assert (await client.get("/api/me", headers=bearer(this))).status_code == 200
    body = assert_problem(await client.get("/api/me", headers=bearer(other)), 401, "unauthorized")
    assert body["reason"] == "revoked"
    assert (await login(client, PASSWORD)).status_code == 401
    assert (await login(client, NEW_PASSWORD)).status_code == 200

    # Throttled per user: a stolen session cannot guess the current password for long.
    client.cookies.clear()
    answers = [
        (await client.post(change, json=wrong, headers=bearer(this))).status_code
        for _ in range(settings.password_change_per_user_per_hour)
    ]
    assert answers[-1] == 429 and set(answers) == {422, 429}


# --- resetting a forgotten password ----------------------------------------------------------


async def test_reset_by_mail_end_to_end(
    client: httpx.AsyncClient, app: FastAPI, smtp_server: SmtpServer
) -> None:
    await make_user(app, "ada@example.com")
    sessions = [(await login(client, PASSWORD)).json()["token"] for _ in range(2)]
    client.cookies.clear()

    # The same answer whether or not an account has the address; a mail only for the account.
    known = await client.post("/api/auth/password-reset", json={"email": " ADA@example.com"})
    unknown = await client.post("/api/auth/password-reset", json={"email": "eve@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert known.headers.get("content-length") == unknown.headers.get("content-length")
    await deliver(app)
    [received] = smtp_server.recorder.received
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["Subject"] == "Test Shop: set a new password"
    path, token = link_in(smtp_server)
    assert path == "/account/reset-password"
    await assert_never_stored(app, token)

    confirm = "/api/auth/password-reset/confirm"
    # A refused new password does not use the link up.
    r = await client.post(confirm, json={"token": token, "password": "short"})
    assert_problem(r, 422, "validation_error")
    r = await client.post(confirm, json={"token": token, "password": NEW_PASSWORD})
    assert r.status_code == 204, r.text
    # Every session ended; the old password fails, the new one works; the link is used up.
    for session in sessions:
        assert (await client.get("/api/me", headers=bearer(session))).status_code == 401
    assert (await login(client, PASSWORD)).status_code == 401
    signed_in = await login(client, NEW_PASSWORD)
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["email_verified_at"] is not None  # the link proved it
    client.cookies.clear()
    r = await client.post(confirm, json={"token": token, "password": "yet another passphrase"})
    assert_problem(r, 400, "invalid_token")
    assert (await login(client, NEW_PASSWORD)).status_code == 200


async def test_expired_and_replaced_reset_links_are_refused(
    client: httpx.AsyncClient, app: FastAPI, smtp_server: SmtpServer
) -> None:
    await make_user(app, "ada@example.com")
    ask = {"email": "ada@example.com"}
    confirm = "/api/auth/password-reset/confirm"
    assert (await client.post("/api/auth/password-reset", json=ask)).status_code == 202
    await deliver(app)
    _, replaced = link_in(smtp_server)
    assert (await client.post("/api/auth/password-reset", json=ask)).status_code == 202
    await deliver(app)
    _, latest = link_in(smtp_server)
    assert replaced != latest
    r = await client.post(confirm, json={"token": replaced, "password": NEW_PASSWORD})
    assert_problem(r, 400, "invalid_token")

    # The latest link, once past its expiry time, is refused the same way.
    async with app.state.runtime.db.transaction() as uow:
        await uow.execute(update(AccountToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = await client.post(confirm, json={"token": latest, "password": NEW_PASSWORD})
    assert_problem(r, 400, "invalid_token")
    for made_up in ("x", "A" * 43, "A" * 129):
        r = await client.post(confirm, json={"token": made_up, "password": NEW_PASSWORD})
        assert r.status_code in (400, 422)
    assert (await login(client, PASSWORD)).status_code == 200
    # The purge job forgets expired links as it forgets expired sessions.
    async with app.state.runtime.db.transaction() as uow:
        assert await service.purge_tokens(uow, timedelta(0)) >= 2
        assert (await uow.scalars(select(AccountToken.id))).all() == []


async def test_reset_requests_are_limited_per_address_and_per_ip(
    client_from: Callable[[str], httpx.AsyncClient],
    app: FastAPI,
    settings: Settings,
    smtp_server: SmtpServer,
) -> None:
    await make_user(app, "ada@example.com")
    per_address = settings.password_reset_per_address_per_hour
    # One address asked for from many places: limited, and alike whether it has an account.
    for email in ("ada@example.com", "eve@example.com"):
        answers = [
            (
                await client_from(f"10.1.0.{i}").post(
                    "/api/auth/password-reset", json={"email": email}
                )
            ).status_code
            for i in range(per_address + 1)
        ]
        assert answers == [202] * per_address + [429]
    # One place asking for many addresses: limited too.
    spammer = client_from("10.2.0.1")
    answers = [
        (
            await spammer.post("/api/auth/password-reset", json={"email": f"u{i}@example.com"})
        ).status_code
        for i in range(settings.password_reset_per_ip_per_hour + 1)
    ]
    assert answers[-1] == 429 and set(answers[:-1]) == {202}
    await deliver(app)
    # One mail: each request replaced the link of the one before, and only a live link is
    # mailed (with a worker keeping up, at most ``per_address`` an hour).
    assert len(smtp_server.messages) == 1
