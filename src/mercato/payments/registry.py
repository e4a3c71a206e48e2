"""Which payment provider a process uses: chosen by name in the settings, one per runtime."""

from __future__ import annotations

from collections.abc import Callable

from mercato.payments.provider import PaymentProvider
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime

ProviderFactory = Callable[[Runtime], PaymentProvider]

DEFAULT_PROVIDER = "sandbox"
_EXTRAS_KEY = "payments.provider"
_FACTORIES: dict[str, ProviderFactory] = {"sandbox": lambda runtime: SandboxProvider(runtime.db)}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make a processor adapter selectable with ``MERCATO_PAYMENT_PROVIDER=<name>``."""
    _FACTORIES[name] = factory


def provider_names() -> list[str]:
    return sorted(_FACTORIES)


def get_provider(runtime: Runtime) -> PaymentProvider:
    """The configured provider, created once per runtime (it may hold connections or state)."""
    name = getattr(runtime.settings, "payment_provider", DEFAULT_PROVIDER) or DEFAULT_PROVIDER
    cached: PaymentProvider | None = runtime.extras.get(_EXTRAS_KEY)
    if cached is not None and cached.name == name:
        return cached
    factory = _FACTORIES.get(name)
    if factory is None:
        known = ", ".join(provider_names())
        raise RuntimeError(f"unknown payment provider {name!r} (known: {known})")
    provider = factory(runtime)
    # Every call to it is bounded by this (see operations.call_timeout).
    provider.call_timeout_seconds = runtime.settings.payment_timeout_seconds  # type: ignore[attr-defined]
    runtime.extras[_EXTRAS_KEY] = provider
    return provider
