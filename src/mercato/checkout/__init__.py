"""Checkout: pricing (shipping, tax, promo codes) and the checkout saga with crash recovery."""
