"""What crosses the identity API.

The e-mail check lives in the service (shared with the command line); here it only turns a bad
address into a 422 that names the ``email`` field instead of a later, vaguer failure.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from mercato.identity import service
from mercato.identity.service import UserInfo
from mercato.openapi import NO_SPACE_OR_CONTROL, SPACE

Role = Literal["customer", "staff", "seller"]


# An address as the API takes it, the document's pattern: spaces around are trimmed, control
# characters refused (the service's shape check alone would let them through). The service
# then normalises it and applies its rule.
_CHARS = rf"[^@{NO_SPACE_OR_CONTROL}"
EMAIL_PATTERN = rf"^{SPACE}*{_CHARS}]+@{_CHARS}.]+(\.{_CHARS}.]+)+{SPACE}*$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _valid_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not a valid e-mail address")
    email = service.normalize_email(value)
    if (message := service.email_problem(email)) is not None:
        raise ValueError(message)
    return email


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
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=service.NAME_MAX_LENGTH)
]


class RegisterIn(BaseModel):
    email: Email
    password: Password
    name: Name


class LoginIn(BaseModel):
    email: Email
    # No length policy at login beyond the cap: the policy may have changed since sign-up.
    password: Annotated[str, Field(min_length=1, max_length=service.PASSWORD_MAX_LENGTH)]


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime

    @classmethod
    def of(cls, user: UserInfo) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            created_at=user.created_at,
        )


class AuthOut(BaseModel):
    user: UserOut
    token: str
    expires_at: datetime
