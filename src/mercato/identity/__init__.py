"""Identity: who is calling, and what they may do.

Other modules talk to identity through :mod:`mercato.identity.service` (users, tokens, login
hooks) and :mod:`mercato.identity.deps` (FastAPI dependencies that resolve and check the caller);
the tables stay private to this package.
"""
