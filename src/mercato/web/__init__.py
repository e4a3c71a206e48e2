"""Server-rendered pages: the storefront (``shop``), the shopper's account and the back office
(``admin``). Pages call the same services as the API; nothing here holds commerce rules."""
