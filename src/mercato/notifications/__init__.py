"""Notifications: customer e-mails and signed webhooks, both fed from the outbox."""
