"""The review forms of the product page and the back office's queue, over HTTP with the session
cookie and CSRF token a browser would send: each posts one service call, then goes back with
a message; a refusal is a message, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import Database
from mercato.payments.sandbox import SandboxProvider
from mercato.reviews import service as reviews
from tests.reviews.conftest import Shopper, received, shopper, snapshot, stocked_product, write
from tests.web.admin_helpers import HTML, api_login, page_token

pytestmark = pytest.mark.usefixtures("warehouse")


async def _signed_in(make_client: Callable[[], httpx.AsyncClient], email: str) -> httpx.AsyncClient:
    browser = make_client()
    await api_login(browser, email)
    return browser


async def test_review_forms_and_the_moderation_queue(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_client: Callable[[], httpx.AsyncClient],
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product_id = (product := await stocked_product(adb))[0]
    bob = await shopper(app, "bob@example.com")
    await received(client, adb, sandbox, ada, staff, product)
    await received(client, adb, sandbox, bob, staff, product)
    bob_review = (await write(client, bob, product_id, rating=5)).json()["id"]
    page = f"/p/{product_id}"

    shopper_browser = await _signed_in(make_client, ada.email)
    token = await page_token(shopper_browser, page)
    # A fractional rating is refused with a message naming the field; nothing is written.
    before = await snapshot(adb)
    r = await shopper_browser.post(
        f"{page}/reviews", data={"csrf_token": token, "rating": "4.5"}, headers=HTML
    )
    assert r.status_code == 303 and r.headers["location"].endswith("#reviews")
    assert await snapshot(adb) == before
    html = (await shopper_browser.get(page, headers=HTML)).text
    assert "Rating: must be a whole number from 1 to 5." in html
    r = await shopper_browser.post(
        f"{page}/reviews",
        data={"csrf_token": token, "rating": "3", "title": "Fine", "body": "It <b>works</b>."},
        headers=HTML,
    )
    assert r.status_code == 303
    html = (await shopper_browser.get(page, headers=HTML)).text
    assert "Waiting for our team" in html and "It &lt;b&gt;works&lt;/b&gt;." in html
    # Helpful and report on Bob's review; a second vote is a message, not an error page.
    form = {"csrf_token": token, "product_id": product_id}
    for path, expected in (
        ("helpful", "Thank you for your feedback."),
        ("helpful", "You have found this review helpful already."),
        ("report", "Thank you: our team will look at this review."),
    ):
        data = {**form, "reason": "spam"} if path == "report" else form
        r = await shopper_browser.post(f"/reviews/{bob_review}/{path}", data=data, headers=HTML)
        assert r.status_code == 303
        assert expected in (await shopper_browser.get(page, headers=HTML)).text

    # Staff: the queue (waiting first) and a rejection without a reason refused, then given.
    staff_browser = await _signed_in(make_client, staff.email)
    html = (await staff_browser.get("/admin/reviews", headers=HTML)).text
    assert "It &lt;b&gt;works&lt;/b&gt;." in html and bob_review not in html
    flagged = (await staff_browser.get("/admin/reviews?state=all&flagged=yes", headers=HTML)).text
    assert bob_review in flagged and "Reported 1 time" in flagged
    staff_token = await page_token(staff_browser, "/admin/reviews")
    async with adb.transaction() as uow:
        own = await reviews.own_review_of(uow, ada.id, product_id)
    assert own is not None
    r = await staff_browser.post(
        f"/admin/reviews/{own.id}/reject",
        data={"csrf_token": staff_token, "reason": ""},
        headers={**HTML, "HX-Request": "true"},
    )
    assert r.status_code == 200 and "Reason: say why the review is rejected." in r.text
    r = await staff_browser.post(
        f"/admin/reviews/{own.id}/reject",
        data={"csrf_token": staff_token, "reason": "Off-topic", "back": "/admin/reviews"},
        headers=HTML,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/reviews"
    html = (await shopper_browser.get(page, headers=HTML)).text
    assert "Not published" in html and "Why: Off-topic" in html

    # The author edits it (moderated again), then deletes it.
    r = await shopper_browser.post(
        f"/reviews/{own.id}/edit",
        data={**form, "rating": "4", "title": "", "body": ""},
        headers=HTML,
    )
    assert "Your review is published." in (await shopper_browser.get(page, headers=HTML)).text
    r = await shopper_browser.post(f"/reviews/{own.id}/delete", data=form, headers=HTML)
    assert r.status_code == 303
    html = (await shopper_browser.get(page, headers=HTML)).text
    assert "Your review was deleted." in html and 'data-testid="write-review"' in html
