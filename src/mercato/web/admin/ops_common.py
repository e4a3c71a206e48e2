"""What the operations pages (dashboard, orders, returns, inventory) share: turning a service's
problem into a message or field errors, reading form numbers, and running a staff action so
that a refusal (an invalid transition, a declined capture...) becomes a message on the page
instead of an error page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response

from mercato.db import UnitOfWork
from mercato.identity.service import UserInfo
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.web.templating import flash, redirect

PASSED_THROUGH = frozenset({401, 403, 404})
"""Problems an action does not turn into a message: the usual error pages answer them."""


def actor_of(staff: UserInfo) -> str:
    """How the services record who did it (the same as the staff API)."""
    return f"staff:{staff.id}"


def problem_message(problem: Problem) -> str:
    """One sentence for a flash message: the detail, which already names the rule."""
    detail = problem.detail.rstrip(".")
    return f"{detail}."


async def run_action(
    request: Request,
    back: str,
    action: Callable[[], Awaitable[Any]],
    done: str | Callable[[Any], str],
) -> Response:
    """Run ``action``; then go back to ``back`` with a success message, or with the refusal
    as an error message when a service said no. Nothing half-done stays: each service call
    runs in its own unit of work (or workflow step), rolled back when it raises."""
    try:
        result = await action()
    except Problem as exc:
        if exc.status in PASSED_THROUGH:
            raise
        response = redirect(back)
        flash(request, response, problem_message(exc), "error")
        return response
    response = redirect(back)
    flash(request, response, done(result) if callable(done) else done, "success")
    return response


async def run_in_unit(
    request: Request,
    back: str,
    runtime: Runtime,
    work: Callable[[UnitOfWork], Awaitable[Any]],
    done: str | Callable[[Any], str],
) -> Response:
    """:func:`run_action` for a service that takes a unit of work: it runs in one of its own
    (the page holds none), again if the database reports a deadlock."""
    return await run_action(request, back, lambda: runtime.db.run(work), done)


def parse_int(
    value: str | None,
    field: str,
    errors: dict[str, str],
    *,
    minimum: int,
    maximum: int,
    nonzero: bool = False,
) -> int | None:
    """A whole number typed into a form, or ``None`` with a message in ``errors``."""
    text = (value or "").strip()
    if not text:
        errors[field] = "is required"
        return None
    try:
        number = int(text)
    except ValueError:
        errors[field] = "must be a whole number"
        return None
    if nonzero and number == 0:
        errors[field] = "must not be zero"
    elif not minimum <= number <= maximum:
        errors[field] = f"must be between {minimum} and {maximum}"
    else:
        return number
    return None


def parse_day(value: str | None, field: str, errors: dict[str, str]) -> date | None:
    """A ``YYYY-MM-DD`` date from a form (empty: none)."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = "must be a date like 2025-01-31"
        return None


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day`` (the back office counts days in UTC)."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def today_range(now: datetime) -> tuple[datetime, datetime]:
    start = day_start(now.astimezone(UTC).date())
    return start, start + timedelta(days=1)


def with_query(path: str, **params: str | None) -> str:
    """``path?a=1&b=2`` with the empty parameters left out."""
    kept = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path
