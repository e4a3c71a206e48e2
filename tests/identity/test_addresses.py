"""The address book: saved addresses with checkout's rules, a country the shop serves, exactly
one default (also under concurrent "make default" calls), another customer's address a 404,
and the default address as the destination of a customer who chose no country."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.checkout import service as checkout
from mercato.db import Database
from mercato.identity import service as identity
from mercato.identity.models import Address
from mercato.inventory import service as inventory
from tests.conftest import user_headers

HOME = {"name": "Ada", "line1": "Heidestrasse 17", "city": "Berlin", "postal_code": "10557"}
URL = "/api/me/addresses"


@pytest.fixture
async def served(db: Database) -> None:
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["AT", "DE"])
        await inventory.create_warehouse(uow, code="LYO", name="Lyon", countries=["FR"])
        await checkout.create_zone(uow, name="Europe", countries=["AT", "DE", "FR", "GB"])


async def _add(
    client: httpx.AsyncClient, headers: dict[str, str], country: str = "DE", **extra: Any
) -> dict[str, Any]:
    r = await client.post(URL, json={**HOME, "country": country, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _defaults(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    items = (await client.get(URL, headers=headers)).json()["items"]
    return [a["id"] for a in items if a["is_default"]]


async def test_the_first_address_is_the_default_and_another_can_become_it(
    app: FastAPI, client: httpx.AsyncClient, served: None
) -> None:
    headers = await user_headers(app, "customer", "ada@example.com")
    first = await _add(client, headers)
    assert first["is_default"] and first["country_name"] == "Germany"
    second = await _add(client, headers, "fr", line2=" Bât. B ", region="ARA")
    assert (second["is_default"], second["country"], second["line2"]) == (False, "FR", "Bât. B")
    assert await _defaults(client, headers) == [first["id"]]

    r = await client.patch(f"{URL}/{second['id']}", json={"is_default": True}, headers=headers)
    assert r.status_code == 200 and r.json()["is_default"]
    assert await _defaults(client, headers) == [second["id"]]
    r = await client.patch(f"{URL}/{second['id']}", json={"is_default": False}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "is_default"

    r = await client.patch(
        f"{URL}/{first['id']}",
        json={"city": "Wien", "country": "AT", "line2": None},
        headers=headers,
    )
    assert r.status_code == 200 and (r.json()["city"], r.json()["country"]) == ("Wien", "AT")

    # Deleting the default hands the role to the newest one left.
    third = await _add(client, headers)
    assert (await client.delete(f"{URL}/{second['id']}", headers=headers)).status_code == 204
    assert await _defaults(client, headers) == [third["id"]]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({**HOME, "country": "US"}, 422, "country_not_served", "country"),
        ({**HOME, "country": "XX"}, 422, "unknown_country", "country"),
        ({**HOME, "country": "DEU"}, 422, "validation_error", "country"),
        ({**HOME, "name": "", "country": "DE"}, 422, "validation_error", "name"),
        ({**HOME, "city": "Ber\x1blin", "country": "DE"}, 422, "validation_error", "city"),
        ({**HOME, "region": "B Y", "country": "DE"}, 422, "validation_error", "region"),
        ({**HOME, "country": "DE", "colour": "red"}, 422, "validation_error", "colour"),
    ],
)
async def test_bad_addresses_are_refused_and_nothing_is_written(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    served: None,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    headers = await user_headers(app, "customer", "bad@example.com")
    r = await client.post(URL, json=body, headers=headers)
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"].split(".")[-1] == field
    if code == "country_not_served":
        assert problem["served_countries"] == ["AT", "DE", "FR"]
        assert "AT, DE, FR" in problem["detail"]
    async with db.transaction() as uow:
        assert await uow.scalar(select(func.count()).select_from(Address)) == 0


async def test_another_customers_address_is_not_found(
    app: FastAPI, client: httpx.AsyncClient, served: None
) -> None:
    ada = await user_headers(app, "customer", "ada@example.com")
    bob = await user_headers(app, "customer", "bob@example.com")
    mine = await _add(client, ada)
    for method, extra in (("PATCH", {"json": {"city": "Köln"}}), ("DELETE", {})):
        r = await client.request(method, f"{URL}/{mine['id']}", headers=bob, **extra)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await client.get(URL, headers=bob)).json()["items"] == []
    assert [a["city"] for a in (await client.get(URL, headers=ada)).json()["items"]] == ["Berlin"]
    assert (await client.get(URL)).status_code == 401


async def test_concurrent_make_default_calls_leave_exactly_one_default(
    app: FastAPI, db: Database, served: None
) -> None:
    async with db.transaction() as uow:
        user = await identity.create_user(
            uow, email="race@example.com", password="x" * 12, role="customer", name="Race"
        )
    fields = identity.AddressFields(
        name="Race", line1="Street 1", city="Berlin", postal_code="10557", country="DE"
    )
    ids = []
    for _ in range(8):
        async with db.transaction() as uow:
            ids.append((await identity.add_address(uow, user.id, fields)).id)

    async def make_default(address_id: str) -> None:
        async def work(uow: Any) -> None:
            await identity.make_default_address(uow, user.id, address_id)

        await db.run(work)

    for _ in range(3):
        await asyncio.gather(*(make_default(a) for a in ids * 2))
        async with db.transaction() as uow:
            saved = await identity.list_addresses(uow, user.id)
        assert sum(a.is_default for a in saved) == 1
        assert len(saved) == 8


async def test_the_default_address_is_the_destination_of_a_customer_who_chose_none(
    app: FastAPI, client: httpx.AsyncClient, db: Database, served: None
) -> None:
    headers = await user_headers(app, "customer", "fr@example.com")
    await _add(client, headers, "FR")
    r = await client.get("/api/cart", headers=headers)
    assert r.json()["country"] == "FR"
    # An explicit choice wins; a guest gets the shop's default.
    assert (await client.get("/api/cart?country=AT", headers=headers)).json()["country"] == "AT"
    assert (await client.get("/api/cart")).json()["country"] == "DE"
    # A default the shop stopped serving gives way to the shop's default.
    async with db.transaction() as uow:
        lyon = inventory.WAREHOUSES.c.code == "LYO"
        await uow.execute(inventory.WAREHOUSES.update().where(lyon).values(active=False))
    assert (await client.get("/api/cart", headers=headers)).json()["country"] == "DE"
