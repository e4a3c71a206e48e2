"""What crosses the identity API.

The e-mail check lives in the service (shared with the command line); here it only turns a bad
address into a 422 that names the ``email`` field instead of a later, vaguer failure.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mercato.identity import service
from mercato.identity.service import UserInfo
from mercato.openapi import NO_SPACE_OR_CONTROL, SPACE
from mercato.text import PlainLine

Role = Literal["customer", "staff", "seller"]


# An address as the API takes it, the document's pattern: spaces around are trimmed, control
# characters refused (the service's shape check alone would let them through). The service
# then normalises it and applies its rule.
_CHARS = rf"[^@{NO_SPACE_OR_CONTROL}"
EMAIL_PATTERN = rf"^{SPACE}*{_CHARS}]+@{_CHARS}.]+(\.{_CHARS}.]+)+{SPACE}*$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _valid_email(value: str) -> str:
    # Only what the document states. Normalised (NFKC, case-folded), an address can still
    # turn out not to be one (a full-width full stop, U+FF0E, makes an empty label): the
    # service refuses that with a 422 of its own on registration, and finds no account for it
    # elsewhere.
    if not _EMAIL.match(value):
        raise ValueError("is not a valid e-mail address")
    return value.strip()


Email = Annotated[
    str,
    Field(max_length=service.EMAIL_MAX_LENGTH, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(_valid_email),
]
Password = Annotated[
    str,
    Field(min_length=service.PASSWORD_MIN_LENGTH, max_length=service.PASSWORD_MAX_LENGTH),
]
Name = Annotated[
    str, PlainLine(strip_whitespace=True, min_length=1, max_length=service.NAME_MAX_LENGTH)
]


class RegisterIn(BaseModel):
    email: Email
    password: Password
    name: Name


# No length policy beyond the cap for a password being checked: it may predate the policy.
CurrentPassword = Annotated[str, Field(min_length=1, max_length=service.PASSWORD_MAX_LENGTH)]
LinkToken = Annotated[
    str,
    Field(min_length=1, max_length=service.TOKEN_MAX_LENGTH, description="From the mailed link"),
]


class LoginIn(BaseModel):
    email: Email
    password: CurrentPassword


class PasswordChangeIn(BaseModel):
    current_password: CurrentPassword
    new_password: Password


class PasswordResetRequestIn(BaseModel):
    email: Email


class PasswordResetIn(BaseModel):
    token: LinkToken
    password: Password


class VerifyEmailIn(BaseModel):
    token: LinkToken


class AcceptedOut(BaseModel):
    message: str


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime
    email_verified_at: datetime | None = Field(
        description="When the owner proved the address with a mailed link; null until then"
    )

    @classmethod
    def of(cls, user: UserInfo) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            created_at=user.created_at,
            email_verified_at=user.email_verified_at,
        )


class AuthOut(BaseModel):
    user: UserOut
    token: str
    expires_at: datetime


# --------------------------------------------------------------------------------------------
# The address book (the fields and rules of checkout's shipping address)

Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$", examples=["DE"])]
Region = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]+$")]
AddressName = Annotated[str, PlainLine(min_length=1, max_length=100)]
Line1 = Annotated[str, PlainLine(min_length=1, max_length=200)]
Line2 = Annotated[str, PlainLine(max_length=200)]
City = Annotated[str, PlainLine(min_length=1, max_length=100)]
PostalCode = Annotated[str, PlainLine(min_length=1, max_length=20)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class AddressIn(_In):
    name: AddressName
    line1: Line1
    line2: Line2 | None = None
    city: City
    postal_code: PostalCode
    region: Region | None = None
    country: Country = Field(description="ISO 3166-1 alpha-2; one the shop delivers to")
    is_default: bool = Field(
        default=False, description="Make it the default (the first address always is)"
    )

    def fields(self) -> service.AddressFields:
        return service.AddressFields(
            name=self.name,
            line1=self.line1,
            line2=self.line2 or None,
            city=self.city,
            postal_code=self.postal_code,
            region=self.region or None,
            country=self.country,
        )


class AddressPatch(_In):
    """Only the fields sent change; ``line2`` and ``region`` are cleared with ``null``."""

    name: AddressName = Field(default=None)  # type: ignore[assignment]
    line1: Line1 = Field(default=None)  # type: ignore[assignment]
    line2: Line2 | None = None
    city: City = Field(default=None)  # type: ignore[assignment]
    postal_code: PostalCode = Field(default=None)  # type: ignore[assignment]
    region: Region | None = None
    country: Country = Field(default=None)  # type: ignore[assignment]
    is_default: bool | None = Field(
        default=None,
        description="true makes it the default; a default stops being one only when another "
        "becomes it (false on the default is a 422)",
    )

    def changes(self) -> dict[str, str | None]:
        sent = self.model_fields_set - {"is_default"}
        return {name: getattr(self, name) for name in sorted(sent)}


class AddressOut(BaseModel):
    id: str
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    region: str | None
    country: str
    country_name: str
    is_default: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: service.AddressInfo) -> AddressOut:
        return cls(
            id=a.id,
            name=a.name,
            line1=a.line1,
            line2=a.line2,
            city=a.city,
            postal_code=a.postal_code,
            region=a.region,
            country=a.country,
            country_name=service.country_name(a.country),
            is_default=a.is_default,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class AddressList(BaseModel):
    items: list[AddressOut]
