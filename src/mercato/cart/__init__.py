"""Guest and customer carts: lines with the price seen, merge on login, price/stock notices."""
