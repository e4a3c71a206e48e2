"""The account pages in a browser, with mail sent by the worker to a real SMTP server: a
forgotten password reset from the login page, changing the password (other devices are logged
out), confirming the e-mail address; and the forgot-password form answering alike for every
address."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, expect

from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.conftest import TEST_PASSWORD
from tests.support.smtp import SmtpServer, parts, running_smtp_server, with_smtp
from tests.web.conftest import runtime_of, screenshot, sync
from tests.web.shop_helpers import create_customer, csrf_of

EMAIL = "robin@example.com"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_smtp(settings, smtp_server)


def mailed_link(smtp: SmtpServer, live_server: str) -> str:
    """The link in the last mail, pointed at the test server instead of the public URL."""
    text, _ = parts(smtp.messages[-1])
    found = re.search(r"https://shop\.example(/account/\S+)", text)
    assert found is not None, text
    return live_server + found.group(1)


async def log_in(page: Page, password: str) -> None:
    await page.goto("/account/login")
    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def test_forgotten_password_reset_from_the_login_page(
    page: Page, app: FastAPI, live_server: str, smtp_server: SmtpServer
) -> None:
    await create_customer(runtime_of(app), EMAIL)
    await page.goto("/account/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("E-mail address").fill(EMAIL.upper())
    await page.get_by_role("button", name="Send the link").click()
    await expect(page.get_by_test_id("reset-sent")).to_contain_text("on its way")

    await sync(app)
    assert smtp_server.recorder.received[-1].rcpt_tos == [EMAIL]
    link = mailed_link(smtp_server, live_server)
    await page.goto(link)
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill("something else entirely")
    await page.get_by_role("button", name="Set the password").click()
    await expect(page.locator("#e-password_again")).to_contain_text("differ")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await screenshot(page, "shop-reset-password")
    await page.get_by_role("button", name="Set the password").click()
    await expect(page.locator(".flash-success")).to_contain_text("new password is set")

    await log_in(page, TEST_PASSWORD)
    await expect(page.get_by_test_id("login-error")).to_contain_text("incorrect")
    await log_in(page, NEW_PASSWORD)
    await expect(page.locator(".flash-success")).to_contain_text("Welcome back")

    # The link worked once.
    await page.goto(link)
    await page.get_by_label("New password", exact=True).fill("yet another passphrase")
    await page.get_by_label("New password again").fill("yet another passphrase")
    await page.get_by_role("button", name="Set the password").click()
    await expect(page.get_by_test_id("link-invalid")).to_contain_text("used already")


async def test_change_password_logs_out_other_devices_and_confirm_the_address(
    browser: Browser, page: Page, app: FastAPI, live_server: str, smtp_server: SmtpServer
) -> None:
    # Registered on the page: a confirmation link is mailed.
    await page.goto("/account/register")
    await page.get_by_label("Your name").fill("Robin")
    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator(".flash-success")).to_contain_text("confirm the address")
    # A second device, logged in too.
    other = await browser.new_context(base_url=live_server)
    try:
        phone = await other.new_page()
        await log_in(phone, TEST_PASSWORD)
        await expect(phone.get_by_role("button", name="Log out")).to_be_visible()

        await page.get_by_role("link", name="Account").click()
        await expect(page.get_by_test_id("email-status")).to_have_text("(not confirmed yet)")
        await page.get_by_role("link", name="Change your password").click()
        await page.get_by_label("Current password").fill("not my password")
        await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_label("New password again").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Change password").click()
        await expect(page.locator("#e-current_password")).to_contain_text("not your current")
        await page.get_by_label("Current password").fill(TEST_PASSWORD)
        await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await page.get_by_label("New password again").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Change password").click()
        await expect(page.locator(".flash-success")).to_contain_text("password is changed")
        # This browser stays logged in; the other device is logged out.
        await expect(page.get_by_role("button", name="Log out")).to_be_visible()
        await phone.goto("/account/orders")
        await expect(phone).to_have_url(re.compile(r"/account/login\?next=/account/orders$"))
    finally:
        await other.close()

    # Confirming the address with the mailed link.
    await sync(app)
    await page.goto(mailed_link(smtp_server, live_server))
    await page.get_by_role("button", name="Confirm my address").click()
    await expect(page.locator(".flash-success")).to_contain_text(f"{EMAIL} is confirmed")
    await expect(page.get_by_test_id("email-status")).to_have_text("(confirmed)")
    await screenshot(page, "shop-account")


async def test_forgot_password_answers_alike_and_is_limited(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime: Runtime = runtime_of(app)
    await create_customer(runtime, EMAIL)
    html = {"accept": "text/html"}

    async def ask(email: str) -> httpx.Response:
        form = await client.get("/account/forgot-password")
        return await client.post(
            "/account/forgot-password",
            data={"email": email, "csrf_token": csrf_of(form.text)},
            headers=html,
        )

    known, unknown = await ask(EMAIL), await ask("nobody-here@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(EMAIL, "@") == unknown.text.replace("nobody-here@example.com", "@")
    await sync(app)
    assert [r.rcpt_tos for r in smtp_server.recorder.received] == [[EMAIL]]
    # Limited per address (and per client IP), with the same answer for any address.
    for _ in range(settings.password_reset_per_address_per_hour - 1):
        assert (await ask(EMAIL)).status_code == 200
    refused = await ask(EMAIL)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
