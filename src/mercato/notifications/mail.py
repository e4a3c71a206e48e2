"""Customer e-mails: rendering (Jinja2, a text and an HTML part per mail) and the transports.

Transports: SMTP through aiosmtplib when ``smtp_host`` is set; otherwise (the one-command
default, where no mail server exists) each mail is written as an ``.eml`` file under
``data_dir/mail``, which any mail client opens and the back office offers for download.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime
from email import message_from_string, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mercato.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"

# The kinds of mail and their subject lines (formatted with the template context).
SUBJECTS: dict[str, str] = {
    "order_placed": "{shop_name}: order {order_number} confirmed",
    "order_shipped": "{shop_name}: your order {order_number} has shipped",
    "order_delivered": "{shop_name}: your order {order_number} was delivered",
    "return_received": "{shop_name}: we received your return for order {order_number}",
    "refund_issued": "{shop_name}: refund of {refund_amount} {currency} for order {order_number}",
    "order_cancelled": "{shop_name}: order {order_number} was cancelled",
    "password_reset": "{shop_name}: set a new password",
    "email_verification": "{shop_name}: confirm your e-mail address",
    "back_in_stock": "{shop_name}: {title} is back in stock",
}
KINDS: tuple[str, ...] = tuple(SUBJECTS)
SMTP_TIMEOUT_SECONDS = 30.0
# Stands for the token in a mailed link until the mail is sent (see :func:`complete_link`).
LINK_TOKEN = "MERCATO-LINK-TOKEN"  # noqa: S105  (a placeholder, not a secret)


@lru_cache(maxsize=1)
def environment() -> Environment:
    # Autoescape on for HTML (every value a customer or the catalog typed goes through it),
    # off for the plain-text part where escaping would show as "&amp;".
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of a mail of ``kind``."""
    env = environment()
    subject = SUBJECTS[kind].format(**context)
    text = env.get_template(f"{kind}.txt").render(context)
    html = env.get_template(f"{kind}.html").render(context)
    # A subject is one header line: no line breaks from any value that went into it.
    return " ".join(subject.split())[:300], text, html


def _domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2]
    return domain or "mercato.invalid"


def message_id(event_id: str, kind: str, mail_from: str) -> str:
    """Derived from the event, so a mail sent again after a crash carries the same id and the
    receiving side can tell it is the same mail."""
    return f"<{event_id}.{kind}@{_domain_of(mail_from)}>"


def build_message(
    *,
    settings: Settings,
    to: str,
    subject: str,
    text: str,
    html: str,
    event_id: str,
    kind: str,
    date: datetime,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id(event_id, kind, settings.mail_from)
    msg["X-Mercato-Event-Id"] = event_id
    msg["X-Mercato-Mail-Kind"] = kind
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def complete_link(raw: str, token: str) -> str:
    """The stored message with :data:`LINK_TOKEN` replaced by ``token`` in its text parts.

    Replaced in the decoded text and each part encoded again: a placeholder inside a
    quoted-printable or base64 body is not a substring of the raw message."""
    msg = parse_message(raw)
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        content = part.get_content()
        if LINK_TOKEN in content:
            part.set_content(content.replace(LINK_TOKEN, token), subtype=part.get_content_subtype())
            if part is not msg:
                del part["MIME-Version"]  # set_content adds it; it belongs on the message only
    return msg.as_string()


def has_link_placeholder(raw: str) -> bool:
    """Whether a stored message waits for a link's token (:data:`LINK_TOKEN`) in a text part."""
    for part in parse_message(raw).walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if LINK_TOKEN in part.get_content():
            return True
    return False


def is_deliverable_address(address: str) -> bool:
    """A single plain address (no display name, no header injection)."""
    if not address or any(c in address for c in '\r\n,;<>"') or len(address) > 254:
        return False
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return bool(parsed.username and parsed.domain and "." in parsed.domain)


def parse_message(raw: str) -> EmailMessage:
    msg = message_from_string(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def send_smtp(settings: Settings, raw: str) -> None:
    assert settings.smtp_host is not None
    await aiosmtplib.send(
        parse_message(raw),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=settings.smtp_port == 465,
        start_tls=True if settings.smtp_starttls else False,  # noqa: SIM210 (never "auto")
        timeout=SMTP_TIMEOUT_SECONDS,
    )


def mail_dir(settings: Settings) -> Path:
    return settings.data_dir / "mail"


def eml_file_name(created_at: datetime, kind: str, order_id: str | None, email_id: str) -> str:
    stamp = created_at.strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{kind}-{order_id or 'none'}-{email_id}.eml"


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def write_eml(settings: Settings, name: str, raw: str) -> Path:
    """Write the message as ``name`` under the mail folder (a rewrite replaces it whole)."""
    data = parse_message(raw).as_bytes(policy=policy.SMTP)
    await asyncio.to_thread(_write_atomically, mail_dir(settings), name, data)
    return mail_dir(settings) / name
