"""Schemathesis hooks for the contract test (loaded through ``SCHEMATHESIS_HOOKS``).

``valid_input_accepted`` replaces Schemathesis' ``positive_data_acceptance``: a request the
document says is valid must not be refused as malformed. What a JSON Schema cannot state is
still refused with a 400 or 422, each with a code of its own: a reference to something that
does not exist (``unknown_variant``), a rule across fields or against the shop's settings
(``quantity_limit``), the state of the caller's cart (``cart_empty``), a token or cursor the
server did not issue (``invalid_cursor``). Those codes are listed below, one by one; any other
400 or 422 to valid input (``validation_error`` above all: the schema is looser than the
server) fails the run.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis import CheckContext, Response
from schemathesis.generation.case import Case

# Refusals of well-formed input by a rule the schema cannot state.
RULES = frozenset(
    {
        # references to something that does not exist
        "unknown_variant",
        "unknown_category",
        "unknown_brand",
        "unknown_zone",
        "unknown_shipping_method",
        "invalid_promo_code",
        # the caller's state, or the shop's settings
        "cart_empty",
        "cart_full",
        "quantity_limit",
        "variant_unavailable",
        "currency_mismatch",
        "shipping_method_unavailable",
        "return_window_closed",
        "line_not_delivered",
        "return_exceeds_delivered",
        "quantity_exceeds_unshipped",
        "dispositions_mismatch",
        "idempotency_conflict",
        # rules across fields or across a currency's decimals
        "invalid_price_range",
        "invalid_range",
        # tokens and cursors only the server issues
        "invalid_cursor",
        "invalid_cart_token",
        # credentials that do not match an account
        "invalid_credentials",
    }
)


@schemathesis.check
def valid_input_accepted(ctx: CheckContext, response: Response, case: Case) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if response.status_code not in (400, 422):
        return
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    if code not in RULES:
        raise AssertionError(
            f"Valid input was refused: {response.status_code} {code!r}. State the rule in the "
            "schema, or give the refusal a code of its own and list it in tests/contract/hooks.py"
        )
