"""Flash sales: a limited allocation at a sale price, a waiting room and an admission gate."""
