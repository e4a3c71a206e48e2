"""Recently viewed: recorded by the product page (a customer's under their account, a guest's
under the key in a signed cookie, nothing for a client that keeps no cookies), shown under the
product without itself, bounded to the last 50, and merged into the customer's list at login."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI

from mercato.db import utcnow
from mercato.recommendations import service, viewed
from tests.recommendations.conftest import runtime_of
from tests.recommendations.signals import (
    api_log_in,
    count_rows,
    fast_password_hashing,  # noqa: F401  (autouse)
    make_customer,
    make_shirt,
)

HTML = {"accept": "text/html"}


def _row(html: str) -> list[str]:
    if 'data-testid="recently-viewed"' not in html:
        return []
    section = html.split('data-testid="recently-viewed"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-testid="viewed" data-product-id="([^"]+)"', section)


async def test_a_guest_browsing_sees_what_it_viewed_and_a_crawler_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    runtime = runtime_of(app)
    a, b, c = [(await make_shirt(runtime.db, f"Shirt {n}")).product_id for n in "abc"]

    first = await client.get(f"/p/{a}", headers=HTML)
    assert first.status_code == 200
    assert viewed.VIEWED_COOKIE in first.cookies
    assert await count_rows(runtime.db, viewed.VIEWS) == 0  # pending until the cookie returns
    second = await client.get(f"/p/{b}", headers=HTML)
    assert _row(second.text) == [a]
    third = await client.get(f"/p/{c}", headers=HTML)
    assert _row(third.text) == [b, a]
    again = await client.get(f"/p/{a}", headers=HTML)
    assert _row(again.text) == [c, b]  # never itself

    # A client that keeps no cookie: a new one on every page, and not a row written.
    before = await count_rows(runtime.db, viewed.VIEWS)
    bot = make_client()
    for product in (a, b, c):
        bot.cookies.clear()
        r = await bot.get(f"/p/{product}", headers=HTML)
        assert r.status_code == 200 and _row(r.text) == []
    assert await count_rows(runtime.db, viewed.VIEWS) == before
    # The JSON API's product reads are no views.
    assert (await client.get(f"/api/products/{b}")).status_code == 200
    async with runtime.db.transaction() as uow:
        key = viewed.read_viewer(runtime.settings.secret_key, client.cookies[viewed.VIEWED_COOKIE])
        assert key is not None
        listed = await service.recently_viewed(uow, user_id=None, guest_key=key[0], limit=10)
    assert listed == [a, c, b]


async def test_the_list_keeps_the_last_50(app: FastAPI) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    start = utcnow() - timedelta(hours=1)
    async with runtime.db.transaction() as uow:
        for n in range(60):
            await service.record_view(
                uow,
                user_id=ada.id,
                guest_key=None,
                product_id=f"prd_{n:02}",
                now=start + timedelta(seconds=n),
            )
        # Seen again: it moves to the front rather than counting twice.
        await service.record_view(
            uow, user_id=ada.id, guest_key=None, product_id="prd_30", now=utcnow()
        )
        found = await service.recently_viewed(uow, user_id=ada.id, guest_key=None, limit=100)
    assert len(found) == 50
    assert found[:3] == ["prd_30", "prd_59", "prd_58"]
    assert found[-1] == "prd_10"  # the oldest ten fell off
    assert await count_rows(runtime.db, viewed.VIEWS, owner=ada.id) == 50


async def test_logging_in_merges_the_guests_list(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    a, b, c, d = [(await make_shirt(runtime.db, f"Shirt {n}")).product_id for n in "abcd"]
    earlier = utcnow() - timedelta(days=1)
    async with runtime.db.transaction() as uow:
        # Ada looked at d and b from another device yesterday.
        await service.record_view(uow, user_id=ada.id, guest_key=None, product_id=d, now=earlier)
        await service.record_view(
            uow, user_id=ada.id, guest_key=None, product_id=b, now=earlier + timedelta(hours=1)
        )
    for product in (a, b, c):
        assert (await client.get(f"/p/{product}", headers=HTML)).status_code == 200

    await api_log_in(client, ada.email)

    assert viewed.VIEWED_COOKIE not in client.cookies  # the guest's key is done with
    async with runtime.db.transaction() as uow:
        merged = await service.recently_viewed(uow, user_id=ada.id, guest_key=None, limit=50)
    assert merged == [c, b, a, d]  # the union, b at its latest view
    assert await count_rows(runtime.db, viewed.VIEWS) == 4  # the guest's rows are gone
    page = await client.get(f"/p/{d}", headers=HTML)
    assert _row(page.text) == [c, b, a]


async def test_the_merge_stays_bounded_and_stale_guests_are_forgotten(app: FastAPI) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    old = utcnow() - timedelta(days=2)
    guest = "gst_" + "A" * 26
    async with runtime.db.transaction() as uow:
        for n in range(50):
            await service.record_view(
                uow,
                user_id=ada.id,
                guest_key=None,
                product_id=f"prd_u{n:02}",
                now=old + timedelta(seconds=n),
            )
        for n in range(3):
            await service.record_view(
                uow,
                user_id=None,
                guest_key=guest,
                product_id=f"prd_g{n}",
                now=utcnow() - timedelta(minutes=3 - n),
            )
        await service.merge_recently_viewed(uow, guest, ada.id)
        merged = await service.recently_viewed(uow, user_id=ada.id, guest_key=None, limit=50)
    assert len(merged) == 50 and merged[:4] == ["prd_g2", "prd_g1", "prd_g0", "prd_u49"]

    stale = "gst_" + "B" * 26
    async with runtime.db.transaction() as uow:
        await service.record_view(
            uow,
            user_id=None,
            guest_key=stale,
            product_id="prd_x",
            now=utcnow() - timedelta(days=viewed.GUEST_DAYS + 1),
        )
        await service.record_view(
            uow,
            user_id=ada.id,
            guest_key=None,
            product_id="prd_old",
            now=utcnow() - timedelta(days=viewed.GUEST_DAYS + 1),
        )
        assert await service.forget_stale_guest_views(uow) == 1
        # A key that is not a guest's (a forged or foreign one) reads and writes nothing.
        assert await service.recently_viewed(uow, user_id=None, guest_key=ada.id, limit=5) == []
    assert await count_rows(runtime.db, viewed.VIEWS, owner=stale) == 0
