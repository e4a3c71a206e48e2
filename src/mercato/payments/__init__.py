"""Payments: the provider port, the sandbox processor, payment intents, captures and refunds.

Other modules call :mod:`mercato.payments.service` (authorize, capture, void, refund, recover,
get_provider); the tables stay private to this package.
"""
