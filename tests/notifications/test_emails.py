"""Customer e-mails: rendered from outbox events, sent through a real SMTP server (or written as
.eml files), never twice for one event, and again after a crash mid-send."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import update

from mercato import worker
from mercato.db import utcnow
from mercato.notifications import events as notification_events
from mercato.notifications import senders, service
from mercato.notifications.service import EMAILS
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.notifications.conftest import (
    at,
    count,
    forget_deliveries,
    place_order,
    publish,
    rows,
)
from tests.support.servers import free_port
from tests.support.smtp import SmtpServer, parts


async def test_order_placed_mail_reaches_the_smtp_server(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime.settings = smtp_settings
    order = await place_order(runtime.db, email="ada@example.com")

    await worker.run_once(runtime)

    assert len(smtp_server.recorder.received) == 1
    got = smtp_server.recorder.received[0]
    assert got.rcpt_tos == ["ada@example.com"]
    assert got.mail_from == "shop@shop.example"
    msg = got.message
    assert msg["To"] == "ada@example.com"
    assert msg["Subject"] == f"Test Shop: order {order.id} confirmed"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    for body in (text, html):
        assert order.id in body
        assert "Steel kettle" in body
        assert "49.43 EUR" in body  # the total, as a decimal string
        assert "39.98 EUR" in body  # a line total
        assert "4.95 EUR" in body  # shipping
    assert f"https://shop.example/account/orders/{order.id}" in text
    [row] = await rows(runtime.db, EMAILS)
    assert row.status == "sent" and row.kind == "order_placed" and row.attempts == 1
    assert msg["Message-ID"] == f"<{row.event_id}.order_placed@shop.example>"


async def test_an_event_delivered_twice_sends_one_mail(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime.settings = smtp_settings
    await place_order(runtime.db)
    await worker.run_once(runtime)
    assert len(smtp_server.messages) == 1

    # The outbox hands the event over again (at least once): nothing new is recorded or sent.
    await forget_deliveries(runtime.db, notification_events.EMAIL_CONSUMER)
    await worker.run_once(runtime)
    await worker.run_once(runtime)

    assert len(smtp_server.messages) == 1
    assert await count(runtime.db, EMAILS) == 1


async def test_shipped_mail_has_the_tracking_number_and_link_and_escapes_html(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime.settings = smtp_settings
    order = await place_order(runtime.db, title='<script>alert("x")</script> & Kettle')
    kettle = order.lines[0]
    await publish(
        runtime.db,
        "ShipmentCreated",
        order.id,
        {
            "order_id": order.id,
            "shipment_id": "shp_1",
            "carrier": "DHL",
            "tracking_number": "JD0146000033",
            "tracking_url": "https://track.example/?n=JD0146000033&lang=en",
            "lines": [{"order_line_id": kettle.id, "quantity": 1}],
        },
    )
    await worker.run_once(runtime)

    shipped = [m for m in smtp_server.messages if "has shipped" in str(m["Subject"])]
    assert len(shipped) == 1
    text, html = parts(shipped[0])
    assert "JD0146000033" in text and "JD0146000033" in html
    assert "DHL" in text
    assert "https://track.example/?n=JD0146000033&lang=en" in text
    assert 'href="https://track.example/?n=JD0146000033&amp;lang=en"' in html
    # A title typed into the catalog is text in the HTML part, never markup.
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Kettle" in html
    assert '<script>alert("x")</script> & Kettle' in text
    assert "1 x " in text  # the shipped quantity, not the ordered one


async def test_a_tracking_link_that_is_not_http_is_left_out(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime.settings = smtp_settings
    order = await place_order(runtime.db)
    await publish(
        runtime.db,
        "ShipmentCreated",
        order.id,
        {
            "order_id": order.id,
            "shipment_id": "shp_1",
            "carrier": "DHL",
            "tracking_number": "T-1",
            "tracking_url": "javascript:alert(1)",
            "lines": [],
        },
    )
    await worker.run_once(runtime)
    shipped = [m for m in smtp_server.messages if "has shipped" in str(m["Subject"])]
    text, html = parts(shipped[0])
    assert "javascript:" not in html and "javascript:" not in text
    assert "T-1" in html


async def test_without_smtp_every_mail_is_an_eml_file(runtime: Runtime, settings: Settings) -> None:
    assert settings.smtp_host is None
    order = await place_order(runtime.db)
    db = runtime.db
    await publish(db, "ShipmentDelivered", order.id, {"order_id": order.id, "shipment_id": "s"})
    await publish(
        db,
        "ReturnReceived",
        order.id,
        {"order_id": order.id, "return_id": "ret_1", "lines": [{"sku": "MUG-1", "quantity": 1}]},
    )
    await publish(
        db,
        "RefundIssued",
        order.id,
        {"order_id": order.id, "return_id": "ret_1", "amount": 1234, "currency": "EUR"},
    )
    await publish(
        db,
        "OrderStatusChanged",
        order.id,
        {"order_id": order.id, "from": "paid", "to": "fulfilling", "reason": None},
    )
    await worker.run_once(runtime)

    mail_dir = settings.data_dir / "mail"
    files = sorted(mail_dir.glob("*.eml"))
    assert not list(mail_dir.glob(".tmp-*"))
    messages: dict[str, EmailMessage] = {}
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        messages[str(msg["X-Mercato-Mail-Kind"])] = msg
    # One mail per customer-facing event; a status change that is not a cancellation has none.
    assert sorted(messages) == [
        "order_delivered",
        "order_placed",
        "refund_issued",
        "return_received",
    ]
    assert len(files) == 4
    assert "12.34 EUR" in str(messages["refund_issued"]["Subject"])
    text, _ = parts(messages["return_received"])
    assert "ret_1" in text and "Mug" in text
    for row in await rows(db, EMAILS):
        assert row.status == "sent"
        assert row.file_name is not None and (mail_dir / row.file_name).is_file()
        assert row.file_name.endswith(f"-{row.kind}-{order.id}-{row.id}.eml")


async def test_a_cancellation_mails_the_reason(runtime: Runtime, settings: Settings) -> None:
    order = await place_order(runtime.db)
    await publish(
        runtime.db,
        "OrderStatusChanged",
        order.id,
        {"order_id": order.id, "from": "paid", "to": "cancelled", "reason": "Out of stock"},
    )
    await worker.run_once(runtime)
    [row] = await rows(runtime.db, EMAILS, kind="order_cancelled")
    assert "Out of stock" in row.message


async def test_an_event_for_an_unknown_order_does_not_block_later_mails(
    runtime: Runtime, settings: Settings
) -> None:
    await publish(runtime.db, "ShipmentDelivered", "ord_missing", {"order_id": "ord_missing"})
    await publish(runtime.db, "RefundIssued", "ord_x", {"order_id": "ord_x", "amount": "bad"})
    order = await place_order(runtime.db)
    await worker.run_once(runtime)
    [row] = await rows(runtime.db, EMAILS)
    assert row.order_id == order.id and row.status == "sent"


async def test_smtp_down_is_retried_with_backoff(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    db = runtime.db
    down = smtp_settings.model_copy(update={"smtp_port": free_port()})  # nothing listens there
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    now = utcnow()

    assert await senders.send_due_emails(db, down, now=now) == 0
    [row] = await rows(db, EMAILS)
    assert row.status == "failed" and row.attempts == 1 and row.last_error
    assert at(now, 1) <= row.next_attempt_at <= at(now, 2)  # base 2 s, equal jitter

    # Not due yet: nothing is tried; once due, it goes out.
    assert await senders.send_due_emails(db, smtp_settings, now=now) == 0
    assert smtp_server.messages == []
    assert await senders.send_due_emails(db, smtp_settings, now=at(now, 2)) == 1
    assert len(smtp_server.messages) == 1
    [row] = await rows(db, EMAILS)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None


async def test_a_mail_is_dead_after_the_last_attempt(
    runtime: Runtime, smtp_settings: Settings
) -> None:
    db = runtime.db
    down = smtp_settings.model_copy(update={"smtp_port": free_port()})
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    when = utcnow()
    for _ in range(service.EMAIL_MAX_ATTEMPTS + 2):
        await senders.send_due_emails(db, down, now=when, backoff_base=0.0)
    [row] = await rows(db, EMAILS)
    assert row.status == "dead" and row.attempts == service.EMAIL_MAX_ATTEMPTS


async def test_a_sender_that_died_mid_send_is_replaced_and_the_mail_goes_out(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    db = runtime.db
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    now = utcnow()
    # A worker claims the mail and dies before recording anything (it may or may not have
    # sent it): the row stays "sending" under its lease.
    async with db.transaction() as conn:
        await conn.execute(
            update(EMAILS).values(
                status="sending", attempts=1, next_attempt_at=at(now, service.EMAIL_LEASE_SECONDS)
            )
        )
    assert await senders.send_due_emails(db, smtp_settings, now=now) == 0  # lease still held
    assert smtp_server.messages == []

    later = at(now, service.EMAIL_LEASE_SECONDS + 1)
    assert await senders.send_due_emails(db, smtp_settings, now=later) == 1
    assert await senders.send_due_emails(db, smtp_settings, now=later) == 0
    assert len(smtp_server.messages) == 1
    [row] = await rows(db, EMAILS)
    assert row.status == "sent" and row.attempts == 2


async def test_a_refused_recipient_is_dead_at_once(
    runtime: Runtime, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    runtime.settings = smtp_settings
    await place_order(runtime.db, email="nobody@example.com")
    await place_order(runtime.db, email="somebody@example.com")
    await worker.run_once(runtime)
    await senders.send_due_emails(runtime.db, smtp_settings)
    by_address = {r.to_address: r for r in await rows(runtime.db, EMAILS)}
    assert by_address["nobody@example.com"].status == "dead"
    assert "No such mailbox" in (by_address["nobody@example.com"].last_error or "")
    assert by_address["somebody@example.com"].status == "sent"
    assert [m["To"] for m in smtp_server.messages] == ["somebody@example.com"]
