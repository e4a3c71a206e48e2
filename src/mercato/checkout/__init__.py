"""Checkout: pricing (shipping, tax, promo codes) and the checkout workflow, from a cart to a
paid order."""
