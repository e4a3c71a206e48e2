"""Catalog: categories, brands, products, variants (SKUs), attributes, prices and media."""
