"""Free text as people type it: names, addresses, titles, descriptions, reasons, notes.

Whatever a shopper or a partner types ends up on a member of staff's screen, in an e-mail, a
CSV export or a log line. Control characters (NUL, ESC, DEL, the C1 block) and invisible
formatting characters (the bidirectional embeddings, overrides and isolates U+202A to U+202E and
U+2066 to U+2069, zero-width spaces, the byte-order mark...) have no business there: NUL cannot
even be stored by PostgreSQL, ESC starts terminal escape sequences, and a right-to-left override
makes a name or a file name read as something else than what it is. They are refused, with a 422
naming the field, rather than silently removed, so that what is stored is exactly what was sent.

Refused: the Unicode categories Cc (controls), Cf (format), Cs (lone surrogates, which a JSON
``\\ud800`` escape can produce) and the line and paragraph separators U+2028/U+2029. Allowed
among them, because real text needs them: the zero-width non-joiner and joiner U+200C/U+200D
(Persian and Indic scripts, emoji sequences such as "woman technologist") and the tag characters
U+E0020 to U+E007F (the flags of England, Scotland and Wales). Multi-line fields also take tab,
line feed and carriage return; they store line breaks as ``\\n``.

One mechanism for every way text comes in:

* API schemas annotate their fields: ``Annotated[str, PlainLine(min_length=1, max_length=100)]``
  for a single line, ``Annotated[str, PlainText(max_length=5000)]`` for several. They take the
  usual length and whitespace constraints, applied first, so those keep pydantic's own errors;
  the OpenAPI schema documents the refusal as a ``pattern``.
* Form pages that hand text to a service without a schema call :func:`check_plain` (a 422
  problem naming the field) or :func:`plain_errors` (``{field: message}`` for the form).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from mercato.problems import Problem, validation_problem

# Every Cc, Cf and Cs code point of Unicode 15.1, and U+2028/U+2029, as (first, last) ranges;
# minus U+200C/U+200D and U+E0020 to U+E007F (see above). tests/core/test_text.py checks this table
# against the interpreter's own Unicode database.
REFUSED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200B),
    (0x200E, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
)
MULTILINE_ALLOWED = frozenset("\t\n\r")
MESSAGE = "must not contain control or invisible formatting characters"
ERROR_TYPE = "control_character"


def _escaped(code: int) -> str:
    # \uXXXX reads the same in ECMA 262 and Python regular expressions; an astral character is
    # written as itself (both read it so with Unicode semantics).
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def _character_class(allowed: frozenset[str]) -> str:
    """The refused characters as the inside of a regular-expression class.

    Lone surrogates are left out: they are not characters a regular expression over Unicode
    text can name (Rust's regex, which validators of the document use, refuses the range),
    and no UTF-8 text holds one; the server still refuses one sent as a JSON ``\\ud800``."""
    parts: list[str] = []
    for first, last in REFUSED_RANGES:
        if first >= 0xD800 and last <= 0xDFFF:
            continue
        run_start: int | None = None
        for code in range(first, last + 2):
            inside = code <= last and chr(code) not in allowed
            if inside and run_start is None:
                run_start = code
            elif not inside and run_start is not None:
                end = code - 1
                parts.append(
                    _escaped(run_start)
                    if end == run_start
                    else f"{_escaped(run_start)}-{_escaped(end)}"
                )
                run_start = None
    return "".join(parts)


_LINE_CLASS = _character_class(frozenset())
_TEXT_CLASS = _character_class(MULTILINE_ALLOWED)
LINE_PATTERN = f"^[^{_LINE_CLASS}]*$"
"""What a single-line field accepts, as the OpenAPI schema's ``pattern`` (ECMA 262)."""
TEXT_PATTERN = f"^[^{_TEXT_CLASS}]*$"
"""What a multi-line field accepts, likewise."""

# What Python's str.strip() removes (the "blank" of a trimmed field), as a class's inside.
_BLANK_CLASS = (
    "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)

_REFUSED_IN_LINE = frozenset(
    chr(code) for first, last in REFUSED_RANGES for code in range(first, last + 1)
)
_REFUSED_IN_TEXT = _REFUSED_IN_LINE - MULTILINE_ALLOWED


def refused_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character of ``value`` that free text may not hold, or None."""
    refused = _REFUSED_IN_TEXT if multiline else _REFUSED_IN_LINE
    if refused.isdisjoint(value):
        return None
    return next(ch for ch in value if ch in refused)


def problem_with(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is refused as free text (a message to show by its field), or None."""
    found = refused_character(value, multiline=multiline)
    if found is None:
        return None
    return f"{MESSAGE} (found U+{ord(found):04X})"


def check_plain(field: str, value: str | None, *, multiline: bool = False) -> None:
    """Raise a 422 ``validation_error`` naming ``field`` when ``value`` holds a refused
    character (for pages that pass form text to a service without a schema)."""
    if value is None:
        return
    message = problem_with(value, multiline=multiline)
    if message is not None:
        raise validation_problem(field, message)


def plain_errors(
    values: Mapping[str, str | None], *, multiline: Collection[str] = ()
) -> dict[str, str]:
    """``{field: message}`` for each value holding a refused character; the fields named in
    ``multiline`` may hold line breaks and tabs."""
    errors: dict[str, str] = {}
    for field, value in values.items():
        if value is not None:
            message = problem_with(value, multiline=field in multiline)
            if message is not None:
                errors[field] = message
    return errors


def is_control_problem(problem: Problem) -> bool:
    """Whether a 422 is this module's refusal (pages word it for the field)."""
    listed = problem.extra.get("errors")
    return isinstance(listed, list) and any(
        isinstance(e, Mapping) and str(e.get("message", "")).startswith(MESSAGE) for e in listed
    )


# --------------------------------------------------------------------------------------------
# Pydantic


@dataclass(frozen=True, slots=True)
class _Plain:
    """Metadata for ``Annotated[str, …]``: the string constraints, then the refusal."""

    min_length: int | None = None
    max_length: int | None = None
    strip_whitespace: bool | None = None

    multiline: ClassVar[bool] = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = handler(source)
        if schema["type"] != "str":
            raise TypeError(f"{type(self).__name__} annotates a str, not {source!r}")
        # The lengths go on the str schema itself (not around it), so that their errors are
        # pydantic's usual ``string_too_long`` and so on. They apply to what the client sent:
        # ``strip_whitespace`` trims *after* the checks (pydantic's own strips first, which the
        # OpenAPI document's minLength/maxLength could not say).
        constraints = {
            key: value
            for key in ("min_length", "max_length")
            if (value := getattr(self, key)) is not None
        }
        constrained = cast(CoreSchema, {**schema, **constraints})
        return core_schema.no_info_after_validator_function(self._validate, constrained)

    @property
    def _needs_text(self) -> bool:
        """A trimmed field with a minimum length must hold something besides spaces."""
        return bool(self.strip_whitespace and self.min_length)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        refused = _TEXT_CLASS if self.multiline else _LINE_CLASS
        if self._needs_text:
            # Allowed characters, at least one of them not a space: one anchored pattern with
            # no look-around, read alike by ECMA 262, Python and Rust regular expressions.
            pattern = f"^[^{refused}]*[^{refused}{_BLANK_CLASS}][^{refused}]*$"
        else:
            pattern = f"^[^{refused}]*$"
        json_schema.setdefault("pattern", pattern)
        return json_schema

    def _validate(self, value: str) -> str:
        found = refused_character(value, multiline=self.multiline)
        if found is not None:
            raise PydanticCustomError(
                ERROR_TYPE,
                "{message} (found U+{code})",
                {"message": MESSAGE, "code": f"{ord(found):04X}"},
            )
        if self.multiline and "\r" in value:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        if self.strip_whitespace:
            value = value.strip()
            if self._needs_text and not value:
                raise PydanticCustomError("blank", "must not be blank")
        return value


@dataclass(frozen=True, slots=True)
class PlainLine(_Plain):
    """A single line of free text: no control or formatting character at all."""

    multiline: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class PlainText(_Plain):
    """Free text over several lines: tab and line breaks too (stored as ``\\n``)."""

    multiline: ClassVar[bool] = True
