"""The marketplace: sellers with their own offers (price, stock in their own warehouse,
handling days, shipping) for the catalog's variants, and the buy box that picks each
variant's featured offer. The shop itself is the first seller, the house."""
