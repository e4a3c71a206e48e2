"""Rendering pages: one Jinja2 environment (autoescaping everywhere, so a product title holding
``<script>`` shows as text), the context every page gets, flash messages, and error pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from babel.dates import format_date
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mercato.identity import service as identity
from mercato.money import MoneyError, format_minor, to_minor
from mercato.problems import Problem, problem_response
from mercato.runtime import Runtime
from mercato.web.assets import static_url
from mercato.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SECURITY_HEADERS,
    csrf_token,
)

FLASH_COOKIE = "mercato_flash"
_FLASH_SALT = "mercato.web.flash"


def money(minor: int | None, currency: str) -> str:
    """``1999, "EUR"`` → ``€19.99``: minor units to a price a shopper reads."""
    if minor is None:
        return ""
    amount = format_minor(minor, currency)
    symbol = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}.get(currency.upper())
    if symbol is None:
        return f"{amount} {currency.upper()}"
    if amount.startswith("-"):
        return f"-{symbol}{amount[1:]}"
    return f"{symbol}{amount}"


def decimal_money(amount: str | None, currency: str) -> str:
    """``"19.99", "EUR"`` → ``€19.99``: a decimal string (as the services answer) for a shopper."""
    if amount is None or amount == "":
        return ""
    try:
        return money(to_minor(str(amount), currency), currency)
    except MoneyError:
        return f"{amount} {currency}"


class DateRange(Protocol):
    @property
    def earliest(self) -> date: ...
    @property
    def latest(self) -> date: ...


def arrives_text(arrival: DateRange) -> str:
    """The days a parcel may arrive on, as shoppers read them: "Arrives Tue 8 Dec" for one
    day, the month written once when both days share it ("Tue 8 to Thu 10 Dec", with an en
    dash), and both months across a month's end ("Mon 30 Nov to Wed 2 Dec")."""
    first, last = arrival.earliest, arrival.latest
    last_text = format_date(last, "EEE d MMM", locale="en")
    if first == last:
        return f"Arrives {last_text}"
    same_month = (first.year, first.month) == (last.year, last.month)
    first_text = format_date(first, "EEE d" if same_month else "EEE d MMM", locale="en")
    return f"Arrives {first_text} – {last_text}"


def field_errors(
    problem: Problem, *, short_names: bool = False, default: str = "is invalid"
) -> dict[str, str]:
    """``{field: message}`` from a validation problem, the first message of each field;
    ``short_names`` keeps only the last part of a dotted name (``shipping_address.city`` →
    ``city``), for forms whose inputs are named that way."""
    found: dict[str, str] = {}
    for error in problem.extra.get("errors") or []:
        if isinstance(error, dict) and error.get("field"):
            name = str(error["field"])
            if short_names:
                name = name.rsplit(".", 1)[-1]
            found.setdefault(name, str(error.get("message", default)))
    return found


def _tojson_attr(value: Any) -> Markup:
    """JSON for an HTML attribute value (``hx-vals='{{ x | attrjson }}'``), escaped."""
    text = json.dumps(value, separators=(",", ":"))
    return Markup(  # noqa: S704  (escaped right here)
        text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _build_env() -> Environment:
    env = Environment(
        loader=PackageLoader("mercato.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        enable_async=False,
    )
    env.filters["money"] = money
    env.filters["decimal_money"] = decimal_money
    env.filters["arrives_text"] = arrives_text
    env.filters["attrjson"] = _tojson_attr
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.globals["static_url"] = static_url
    env.globals["country_name"] = identity.country_name
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    env.globals["CSRF_HEADER"] = CSRF_HEADER
    return env


ENV = _build_env()


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _flash_serializer(runtime: Runtime) -> URLSafeSerializer:
    return URLSafeSerializer(runtime.settings.secret_key, salt=_FLASH_SALT)


def flash(request: Request, response: Response, message: str, kind: str = "info") -> None:
    """A message for the next page (after a redirect): "Added to your cart", "Order shipped".
    Kept in a signed cookie until shown; ``kind`` is info, success or error."""
    serializer = _flash_serializer(runtime_of(request))
    pending = _read_flashes(request)
    pending.append({"kind": kind, "message": message})
    response.set_cookie(
        FLASH_COOKIE,
        serializer.dumps(pending[-5:]),
        path="/",
        httponly=True,
        samesite="lax",
        secure=runtime_of(request).settings.cookie_secure,
    )


def _read_flashes(request: Request) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        data = _flash_serializer(runtime_of(request)).loads(raw)
    except BadSignature:
        return []
    if not isinstance(data, list):
        return []
    return [
        {"kind": str(item.get("kind", "info")), "message": str(item.get("message", ""))}
        for item in data
        if isinstance(item, dict)
    ]


def redirect(url: str, status_code: int = 303) -> RedirectResponse:
    """After a form POST: 303 See Other, so a reload does not post again. For htmx requests
    the caller may prefer :func:`hx_redirect`."""
    return RedirectResponse(url, status_code=status_code)


def hx_redirect(request: Request, url: str) -> Response:
    """A full-page redirect that works for both htmx (``HX-Redirect``) and plain forms."""
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return redirect(url)


def _current_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _deliver_to_choices(request: Request) -> list[tuple[str, str]]:
    served = getattr(request.state, "deliver_to_choices", None) or ()
    return sorted(((c, identity.country_name(c)) for c in served), key=lambda c: c[1])


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with what every page needs: the request, the signed-in user (when a
    dependency looked them up), the CSRF token, the shop's name and currency (for amounts that
    carry none of their own, such as an empty cart's) and pending flash messages."""
    runtime = runtime_of(request)
    settings = runtime.settings
    token = csrf_token(request, settings.secret_key)
    flashes = _read_flashes(request)
    base: dict[str, Any] = {
        "request": request,
        "user": getattr(request.state, "page_user", None),
        "csrf_token": token,
        "shop_name": settings.shop_name,
        "shop_currency": settings.currency,
        "flashes": flashes,
        "current_path": request.url.path,
        "current_url": _current_url(request),
        # The header's "Deliver to", when the page's dependencies resolved the destination.
        "deliver_to": getattr(request.state, "page_destination", None),
        "deliver_to_choices": _deliver_to_choices(request),
    }
    if context:
        base.update(context)
    html = ENV.get_template(template).render(base)
    response = HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
    # Pages hold per-user data: never let a shared cache keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    # The app adds these to every answer; an error page rendered outside it (a 500) too.
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if getattr(request.state, "csrf_new", False):
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_secret,
            path="/",
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
        )
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _wants_html(request: Request) -> bool:
    return bool(request.headers.get("HX-Request")) or "text/html" in request.headers.get(
        "accept", ""
    )


def render_problem(request: Request, problem: Problem) -> Response:
    """Errors on pages: a login redirect for 401, an HTML error page for a browser, and the
    usual problem+json for anything else (scripts asking a page URL)."""
    if not _wants_html(request):
        return problem_response(problem, request)
    if problem.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            current = urlsplit(request.headers.get("HX-Current-URL") or "/")
            target = current.path + (f"?{current.query}" if current.query else "")
        url = f"/account/login?next={quote(target, safe='/')}"
        return hx_redirect(request, url)
    return render(
        request,
        "error.html",
        {"problem": problem},
        status_code=problem.status,
        headers={
            k: v for k, v in (problem.headers or {}).items() if k.lower() != "www-authenticate"
        },
    )
