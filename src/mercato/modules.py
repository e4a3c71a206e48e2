"""The list of domain modules, in dependency order, and loaders for their parts.

Adding a module means adding its name here; its ``models``, ``api`` and ``events`` are picked up.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastapi import APIRouter

MODULES: tuple[str, ...] = (
    "identity",
    "catalog",
    "inventory",
    "cart",
    "payments",
    "orders",
    "checkout",
    "search",
    "fulfilment",
    "returns",
    "notifications",
    "web",
)


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        return None


def load_models() -> None:
    import mercato.events  # noqa: F401  (the outbox tables)

    for module in MODULES:
        _import(f"mercato.{module}.models")


def routers() -> list[APIRouter]:
    found = []
    for module in MODULES:
        api = _import(f"mercato.{module}.api")
        if api is not None:
            found.append(api.router)
    return found


def load_event_handlers() -> None:
    """Import each module's ``events`` so its consumers register with the dispatcher."""
    for module in MODULES:
        _import(f"mercato.{module}.events")
