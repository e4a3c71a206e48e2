"""What crosses the identity API.

The e-mail check lives in the service (shared with the command line); here it only turns a bad
address into a 422 that names the ``email`` field instead of a later, vaguer failure.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

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
