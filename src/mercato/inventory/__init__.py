"""Inventory: warehouses, stock levels per (variant, warehouse), reservations, the stock ledger."""
