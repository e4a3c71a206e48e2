"""Role enforcement through the dependencies other modules use (CurrentUser, StaffUser, ...).

The routes below exist only in these tests; the real staff routes come with other modules.
"""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from mercato.identity.deps import OptionalUser, StaffUser, require_role
from mercato.identity.service import UserInfo
from tests.conftest import user_headers
from tests.identity.support import (
    PASSWORD,
    assert_problem,
    bearer,
    counts,
    plant_session_cookie,
    register,
)

probe = APIRouter()


@probe.get("/api/test-identity/staff-only")
async def staff_only(user: StaffUser) -> dict[str, str]:
    return {"role": user.role}


@probe.get("/api/test-identity/back-office")
async def back_office(
    user: Annotated[UserInfo, Depends(require_role("staff", "seller"))],
) -> dict[str, str]:
    return {"role": user.role}


@probe.get("/api/test-identity/maybe")
async def maybe(user: OptionalUser) -> dict[str, str | None]:
    return {"email": user.email if user else None}


@pytest.fixture
def probed(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


async def test_customer_cannot_reach_a_staff_route(
    probed: FastAPI, client: httpx.AsyncClient, customer_headers: dict[str, str]
) -> None:
    before = await counts(probed)
    r = await client.get("/api/test-identity/staff-only", headers=customer_headers)
    body = assert_problem(r, 403, "forbidden")
    assert body["required_roles"] == ["staff"]
    assert await counts(probed) == before


async def test_staff_reaches_the_staff_route(
    probed: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    r = await client.get("/api/test-identity/staff-only", headers=staff_headers)
    assert r.status_code == 200
    assert r.json() == {"role": "staff"}


async def test_several_roles(probed: FastAPI, client: httpx.AsyncClient) -> None:
    seller = await user_headers(probed, "seller", "seller@example.com")
    staff = await user_headers(probed, "staff", "staff@example.com")
    customer = await user_headers(probed, "customer", "customer@example.com")
    for headers, status in ((seller, 200), (staff, 200), (customer, 403)):
        r = await client.get("/api/test-identity/back-office", headers=headers)
        assert r.status_code == status
    assert_problem(
        await client.get("/api/test-identity/staff-only", headers=seller), 403, "forbidden"
    )


async def test_role_routes_need_a_valid_token_first(
    probed: FastAPI, client: httpx.AsyncClient
) -> None:
    r = await client.get("/api/test-identity/staff-only")
    assert_problem(r, 401, "unauthorized")
    r = await client.get("/api/test-identity/staff-only", headers=bearer("forged" * 8))
    assert_problem(r, 401, "unauthorized")


async def test_a_self_registered_user_is_never_staff(
    probed: FastAPI, client: httpx.AsyncClient
) -> None:
    token = (await register(client)).json()["token"]
    assert_problem(
        await client.get("/api/test-identity/staff-only", headers=bearer(token)), 403, "forbidden"
    )


def test_require_role_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError, match="roles"):
        require_role("admin")
    with pytest.raises(ValueError, match="roles"):
        require_role()


async def test_optional_user(probed: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/test-identity/maybe")).json() == {"email": None}
    await register(client)  # the cookie is now in the jar
    assert (await client.get("/api/test-identity/maybe")).json() == {"email": "ada@example.com"}


async def test_optional_user_with_a_stale_cookie_browses_as_guest(
    probed: FastAPI, client: httpx.AsyncClient
) -> None:
    token = (await register(client)).json()["token"]
    assert (await client.post("/api/auth/logout")).status_code == 204
    plant_session_cookie(client, token)
    r = await client.get("/api/test-identity/maybe")
    assert r.status_code == 200
    assert r.json() == {"email": None}
    assert "mercato_session" not in client.cookies  # and the stale cookie is dropped


async def test_optional_user_rejects_a_bad_bearer_token(
    probed: FastAPI, client: httpx.AsyncClient
) -> None:
    token = (await register(client)).json()["token"]
    client.cookies.clear()
    login = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    client.cookies.clear()
    await client.post("/api/auth/logout", headers=bearer(token))
    body = assert_problem(
        await client.get("/api/test-identity/maybe", headers=bearer(token)), 401, "unauthorized"
    )
    assert body["reason"] == "revoked"
    ok = await client.get("/api/test-identity/maybe", headers=bearer(login.json()["token"]))
    assert ok.json() == {"email": "ada@example.com"}
