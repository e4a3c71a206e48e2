"""Schemathesis hooks for the contract test (loaded through ``SCHEMATHESIS_HOOKS``).

``valid_input_accepted`` replaces Schemathesis' ``positive_data_acceptance`` (which allows no
400 or 422 at all): a request the document says is valid must not be refused as malformed.

* The request parser (FastAPI and the Pydantic models) must never refuse it: whatever it
  checks, the document states. Its refusals are ``validation_error`` problems whose errors
  carry Pydantic's types (``int_type``, ``string_too_long``, ``value_error``...).
* A read (``GET``) may refuse it only by a rule the document cannot state, with a code of its
  own, listed in ``RULES``: a reference to something that does not exist
  (``unknown_category``), a cursor the server did not issue (``invalid_cursor``)...
* A write may also be refused by its service's rules across fields or against stored data
  ("ends_at must be after starts_at", "a cart line holds at most 99"): ``validation_error``
  problems raised by ``validation_problem``, whose errors are typed with their code.

Anything else (a handler's own length check that the document does not state, say) fails the
run: state the rule in the document, or give the refusal a code of its own and list it here.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import CheckContext, Response
from schemathesis.generation.case import Case

# Refusals of well-formed input by a rule the schema cannot state.
RULES = frozenset(
    {
        # references to something that does not exist
        "unknown_country",
        "unknown_variant",
        "unknown_category",
        "unknown_brand",
        "unknown_zone",
        "unknown_shipping_method",
        "invalid_promo_code",
        # the caller's state, or the shop's settings
        "country_not_served",
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
        "unknown_service",
        "unknown_carrier",
        "invalid_webhook_url",
        # rules across parameters, or across a currency's decimals
        "invalid_price_range",
        "invalid_range",
        # tokens and cursors only the server issues
        "invalid_cursor",
        "invalid_cart_token",
        "invalid_token",  # a mailed link's token (password reset, e-mail verification)
        # no text holds a NUL character (the 422 description says so; a pattern on every
        # string of the document would say it too, at the cost of reading it)
        "nul_character",
        # credentials that do not match an account
        "invalid_credentials",
        # marketplace: a bank number where the payment provider's reference belongs, and an
        # uploaded offers file that is not UTF-8 CSV with a known header, or has a bad row
        "bank_number_refused",
        "invalid_encoding",
        "invalid_header",
        "invalid_csv",
        "too_many_rows",
        "import_rejected",
        # marketplace: a commission rule for a seller that does not exist
        "unknown_seller",
    }
)


def _service_rule(problem: dict[str, Any]) -> bool:
    """A ``validation_error`` raised by a service's rule rather than by the request parser."""
    errors = problem.get("errors")
    return (
        problem.get("code") == "validation_error"
        and isinstance(errors, list)
        and bool(errors)
        and all(isinstance(e, dict) and e.get("type") == "validation_error" for e in errors)
    )


@schemathesis.check
def valid_input_accepted(ctx: CheckContext, response: Response, case: Case) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if response.status_code not in (400, 422):
        return
    try:
        problem = json.loads(response.content)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        raise AssertionError(f"Valid input was refused with {response.status_code}, no problem")
    if problem.get("code") in RULES:
        return
    if case.method.upper() != "GET" and _service_rule(problem):
        return
    raise AssertionError(
        f"Valid input was refused: {response.status_code} {problem.get('code')!r}. State the "
        "rule in the document, or give the refusal a code of its own (tests/contract/hooks.py)"
    )
