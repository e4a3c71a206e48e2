"""Free text refuses control and invisible formatting characters everywhere it comes in: the
rule itself, the schema types and their documented pattern, the API (a customer name, an
address line, a product title) and the pages; real-world text of every script still passes."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

import httpx
import pytest
from argon2 import PasswordHasher
from pydantic import BaseModel, ConfigDict, ValidationError

from mercato.identity import service as identity
from mercato.problems import Problem
from mercato.text import (
    LINE_PATTERN,
    TEXT_PATTERN,
    PlainLine,
    PlainText,
    check_plain,
    plain_errors,
    refused_character,
)
from tests.conftest import TEST_PASSWORD

HOSTILE = {
    "NUL": "Al\x00ice",
    "ESC": "\x1b[2J\x1b[31mAlice",
    "DEL": "Alice\x7f",
    "C1 CSI": "Alice\x9b31m",
    "RLO": "Alice\u202egpj.exe",
    "LRE": "\u202aAlice",
    "RLI": "\u2067Alice\u2069",
    "ZWSP": "Al\u200bice",
    "BOM": "\ufeffAlice",
    "line separator": "Alice\u2028Bob",
    "lone surrogate": "Alice\ud800",
    "language tag": "Alice\U000e0001",
}
FRIENDLY = [
    "Zoë Ångström-Nuñez",
    "Łukasz Żółć",
    "山田 太郎",
    "김민준",
    "محمد بن سلمان",  # right-to-left text without any override
    "יוסי כהן",
    "Ольга Петрова",
    "नमस्ते दुनिया",  # Devanagari, with combining marks
    "می‌خواهم",  # Persian with a zero-width non-joiner
    "Dev 👩‍💻 team",  # an emoji ZWJ sequence
    "Flag \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    "Café ☕ — “quoted” & <b>tags</b>",
]


class Form(BaseModel):
    model_config = ConfigDict(strict=True, str_strip_whitespace=True)

    name: Annotated[str, PlainLine(min_length=1, max_length=100)]
    notes: Annotated[str, PlainText(max_length=500)] | None = None


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


# --------------------------------------------------------------------------------------------
# The rule


def test_every_control_and_format_character_of_this_unicode_is_refused() -> None:
    """The table in mercato.text against the interpreter's Unicode database: every Cc, Cf, Cs,
    Zl and Zp code point is refused but the joiners and tag characters; whatever the table
    refuses beyond that is unassigned here (the table may know a newer Unicode)."""
    allowed = {0x200C, 0x200D, *range(0xE0020, 0xE0080)}
    refused_categories = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    for code in [*range(0x20000), *range(0xE0000, 0xE1000)]:
        category = unicodedata.category(chr(code))
        refused = refused_character(chr(code)) is not None
        if category in refused_categories and code not in allowed:
            assert refused, f"U+{code:04X} ({category}) is let through"
        elif refused:
            assert category == "Cn", f"U+{code:04X} ({category}) is refused"
    assert refused_character("a\tb") == "\t"
    assert refused_character("a\tb\r\nc", multiline=True) is None


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_schema_types_refuse_hostile_text_naming_the_field(kind: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Form.model_validate({"name": HOSTILE[kind]})
    [error] = refused.value.errors()
    # pydantic itself refuses a lone surrogate, before the rule is asked.
    assert error["loc"] == ("name",) and error["type"] in {"control_character", "string_unicode"}
    with pytest.raises(ValidationError) as refused:
        Form.model_validate({"name": "Alice", "notes": f"first line\n{HOSTILE[kind]}"})
    assert [e["loc"] for e in refused.value.errors()] == [("notes",)]


@pytest.mark.parametrize("text", FRIENDLY)
def test_real_names_in_every_script_are_accepted_unchanged(text: str) -> None:
    form = Form.model_validate({"name": text, "notes": f"{text}\n\t{text}"})
    assert form.name == text and form.notes == f"{text}\n\t{text}"
    assert re.fullmatch(LINE_PATTERN, text)


def test_line_breaks_only_in_multi_line_text_and_stored_as_newlines() -> None:
    with pytest.raises(ValidationError):
        Form.model_validate({"name": "two\nlines"})
    form = Form.model_validate({"name": "x", "notes": "one\r\ntwo\rthree\nfour"})
    assert form.notes == "one\ntwo\nthree\nfour"
    # The usual constraints keep pydantic's own errors.
    with pytest.raises(ValidationError) as refused:
        Form.model_validate({"name": "   "})
    assert refused.value.errors()[0]["type"] == "string_too_short"


def test_the_documented_pattern_says_what_the_validator_does() -> None:
    schema = Form.model_json_schema()["properties"]
    assert schema["name"]["pattern"] == LINE_PATTERN and schema["name"]["maxLength"] == 100
    assert schema["notes"]["anyOf"][0]["pattern"] == TEXT_PATTERN
    line, text = re.compile(LINE_PATTERN), re.compile(TEXT_PATTERN)
    for code in [*range(0x3000), *range(0xFE00, 0x10000), *range(0xE0000, 0xE0100)]:
        ch = f"a{chr(code)}b"
        assert (line.fullmatch(ch) is None) == (refused_character(ch) is not None), hex(code)
        multi = refused_character(ch, multiline=True) is not None
        assert (text.fullmatch(ch) is None) == multi, hex(code)


def test_the_page_helpers_name_the_field() -> None:
    with pytest.raises(Problem) as refused:
        check_plain("reason", "ok\x1b[0m")
    assert refused.value.status == 422
    assert refused.value.extra["errors"][0]["field"] == "reason"
    check_plain("reason", "line one\nline two", multiline=True)
    check_plain("reason", None)
    errors = plain_errors(
        {"name": "Zoë", "city": "Berlin\u202e", "notes": "a\r\nb"}, multiline={"notes"}
    )
    assert list(errors) == ["city"] and "U+202E" in errors["city"]


# --------------------------------------------------------------------------------------------
# Through the API


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    # A NUL is refused before any model reads the request (422 ``nul_character``), the other
    # characters by the fields' type (422 ``validation_error``); either names the field.
    expected = "nul_character" if body["code"] == "nul_character" else "control_character"
    assert body["code"] in {"validation_error", "nul_character"}
    return [e["field"] for e in body["errors"] if e["type"] == expected]


@pytest.mark.parametrize("kind", ["NUL", "ESC", "RLO"])
async def test_a_customer_name_with_control_characters_is_refused(
    client: httpx.AsyncClient, kind: str
) -> None:
    answer = await client.post(
        "/api/auth/register",
        json={"email": "alice@example.com", "password": TEST_PASSWORD, "name": HOSTILE[kind]},
    )
    assert _fields(answer) == ["name"]
    fine = await client.post(
        "/api/auth/register",
        json={"email": "alice@example.com", "password": TEST_PASSWORD, "name": "Zoë 山田 👩‍💻"},
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["user"]["name"] == "Zoë 山田 👩‍💻"


@pytest.mark.parametrize("kind", ["NUL", "ESC", "RLO"])
async def test_an_address_line_with_control_characters_is_refused(
    client: httpx.AsyncClient, customer_headers: dict[str, str], kind: str
) -> None:
    address = {
        "name": "Erika Mustermann",
        "line1": f"Heidestraße {HOSTILE[kind]}",
        "city": "Berlin",
        "postal_code": "10557",
        "country": "DE",
    }
    body = {"shipping_address": address, "payment_token": "tok_visa"}
    answer = await client.post(
        "/api/checkout", json=body, headers={**customer_headers, "Idempotency-Key": "k1"}
    )
    assert _fields(answer) == ["shipping_address.line1"]


@pytest.mark.parametrize("kind", ["NUL", "ESC", "RLO"])
async def test_a_product_title_with_control_characters_is_refused(
    client: httpx.AsyncClient, staff_headers: dict[str, str], kind: str
) -> None:
    category = await client.post(
        "/api/admin/categories", json={"name": "Thé & 茶", "slug": "tea"}, headers=staff_headers
    )
    assert category.status_code == 201, category.text
    product = {"title": f"Green tea {HOSTILE[kind]}", "category_id": category.json()["id"]}
    answer = await client.post("/api/admin/products", json=product, headers=staff_headers)
    assert _fields(answer) == ["title"]
    fine = {**product, "title": "Gyokuro 玉露 🍵 — Uji", "description": "Line one\nLine two"}
    created = await client.post("/api/admin/products", json=fine, headers=staff_headers)
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "Gyokuro 玉露 🍵 — Uji"


# --------------------------------------------------------------------------------------------
# Through the pages

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _csrf(client: httpx.AsyncClient, url: str) -> str:
    page = await client.get(url, headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def test_the_register_page_names_the_refused_field(client: httpx.AsyncClient) -> None:
    token = await _csrf(client, "/account/register")
    form = {
        "name": HOSTILE["RLO"],
        "email": "bob@example.com",
        "password": TEST_PASSWORD,
        "csrf_token": token,
    }
    answer = await client.post("/account/register", data=form, headers={"Accept": "text/html"})
    assert answer.status_code == 422
    assert re.search(r'id="e-name">[^<]*control or invisible formatting', answer.text)


async def test_a_back_office_form_names_the_refused_field(
    client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    signed_in = await client.post(
        "/api/auth/login", json={"email": "staff@example.com", "password": TEST_PASSWORD}
    )
    assert signed_in.status_code == 200
    token = await _csrf(client, "/admin/inventory")
    form = {"sku": "X", "warehouse": "W", "delta": "1", "reason": "\x1b[31mrecount"}
    answer = await client.post(
        "/admin/inventory/adjust",
        data={**form, "csrf_token": token},
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 422
    assert re.search(r"<strong>reason</strong>: must not contain control", answer.text)
