"""Configuration from ``MERCATO_*`` environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
INSECURE_DEFAULT_SECRET = "insecure-development-secret-change-me"  # noqa: S105
SECRET_KEY_MIN_LENGTH = 32
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_data_dir(database_url: str) -> Path:
    """Where a shop keeps its search index and mail files unless ``MERCATO_DATA_DIR`` says
    otherwise: one directory per database, so two shops started in one folder never share an
    index. A SQLite file's sits beside it (``shop.db`` -> ``shop-data``, any other name gets
    ``.data`` appended); a server database's is named after its host, port and database under
    the working directory."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return Path("mercato-data")
        path = Path(url.database)
        name = f"{path.stem}-data" if path.suffix == ".db" else f"{path.name}.data"
        return path.with_name(name)
    parts = (url.get_backend_name(), url.host or "local", str(url.port or "default"), url.database)
    name = "-".join(_UNSAFE_IN_NAME.sub("_", part or "") for part in ("mercato", *parts))
    return Path(f"{name}-data")


class Settings(BaseSettings):
    """Every knob of a Mercato process. Each field maps to ``MERCATO_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MERCATO_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./mercato.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///file.db or postgresql+asyncpg://...",
    )
    redis_url: str | None = Field(default=None, description="redis://host:port/db; optional")
    redis_max_connections: int = Field(
        default=100, ge=1, description="Redis connections per process"
    )
    redis_pool_timeout: float = Field(
        default=10.0, gt=0, description="How long a call waits for a free Redis connection (s)"
    )
    redis_socket_timeout: float = Field(
        default=5.0, gt=0, description="How long connecting to Redis, or one call, may take (s)"
    )
    secret_key: str = Field(
        default=INSECURE_DEFAULT_SECRET,
        description="Signs tokens, guest carts and forms; a long random value outside demo mode",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(
        default=Path("mercato-data"),
        description="Search index and mail files; by default one directory per database "
        "(see default_data_dir)",
    )
    demo_mode: bool = False
    embedded_worker: bool = Field(
        default=False, description="Run the background worker inside the API process"
    )
    default_country: str = Field(
        default="DE",
        description="ISO 3166-1 alpha-2: where a shopper who chose nothing is delivered to",
    )
    timezone: str = Field(
        default="Europe/Berlin",
        description="The shop's IANA time zone: business days and the order cut-off are counted "
        "in it (delivery estimates)",
    )
    order_cutoff_hour: int = Field(
        default=14,
        ge=0,
        le=24,
        description="Orders placed at or after this local hour count from the next business day "
        "(24: none do)",
    )
    currency: str = Field(
        default="EUR",
        description="The shop's ISO 4217 currency: prices, the demo shop and pages are in it",
    )

    max_body_bytes: int = Field(
        default=1024 * 1024, description="Largest request body accepted (413 beyond)"
    )

    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_echo: bool = False
    db_connect_timeout: float = Field(
        default=5.0, gt=0, description="How long opening a PostgreSQL connection may take (s)"
    )
    db_pool_timeout: float = Field(
        default=10.0, gt=0, description="How long a request waits for a free connection (s)"
    )
    db_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After of a 503 database_unavailable answer"
    )

    # observability (docs/operations.md): logs, metrics
    log_format: Literal["auto", "json", "plain"] = Field(
        default="auto",
        description="json, plain, or auto: plain on a terminal, JSON otherwise",
    )
    log_level: str = Field(default="INFO", pattern="(?i)^(debug|info|warning|error)$")
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token /metrics requires; without one only loopback, unproxied "
        "clients may scrape",
    )

    # identity
    token_ttl_seconds: int = 14 * 24 * 3600
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a process remembers a good token for the endpoints that check it "
        "in a transaction of their own; another process may honour a revoked token that long "
        "(0: off)",
    )
    cookie_secure: bool = False
    # Failed logins only (a success spends nothing): per client IP, per account from one IP,
    # and per account from anywhere; once the last is spent only addresses that have not failed
    # on the account may try (see identity/login_limits.py). Burst, then refill per second.
    login_rate_capacity: int = 10
    login_rate_refill_per_second: float = 10 / 60
    login_account_ip_capacity: int = 5
    login_account_ip_refill_per_second: float = 5 / 900
    login_account_capacity: int = 20
    login_account_refill_per_second: float = 20 / 3600
    # Other account actions, as attempts per hour (also the burst)
    register_per_ip_per_hour: int = 10
    password_reset_per_ip_per_hour: int = 10
    password_reset_per_address_per_hour: int = 3
    password_change_per_user_per_hour: int = 10
    verification_mail_per_user_per_hour: int = 3
    account_link_per_ip_per_hour: int = 30  # reset and verification links redeemed per client IP
    password_reset_ttl_seconds: int = 3600
    email_verification_ttl_seconds: int = 3 * 24 * 3600

    # inventory and carts
    reservation_ttl_seconds: int = 600
    low_stock_threshold: int = 5
    cart_max_line_quantity: int = 99
    cart_max_lines: int = 100
    guest_cart_ttl_seconds: int = 30 * 24 * 3600
    cart_cache_ttl_seconds: int = 3600

    # the page cache (product pages, listings, the home page's rows): Redis when configured,
    # else this process's memory; entries expire after the TTL even if no change was heard of
    page_cache_ttl_seconds: int = Field(default=60, ge=0, description="0 turns the cache off")
    page_cache_max_entries: int = Field(default=10_000, ge=1, description="In memory only")

    # guessing and flooding: each limit is a burst of that many, then that many per period
    promo_failures_per_cart_per_hour: int = Field(
        default=10, ge=1, description="Promo codes that do not exist a cart may try"
    )
    promo_failures_per_ip_per_hour: int = Field(
        default=30, ge=1, description="Promo codes that do not exist one client IP may try"
    )
    guest_writes_per_ip_per_minute: int = Field(
        default=120, ge=1, description="Cart changes and quotes by guests from one client IP"
    )
    guest_carts_per_ip_per_hour: int = Field(
        default=100, ge=1, description="Guest carts one client IP may create"
    )
    order_lookups_per_ip_per_minute: int = Field(
        default=10,
        ge=1,
        description="Order lookups by order number and e-mail from one client IP",
    )

    # payments
    payment_provider: str = Field(default="sandbox", description="sandbox, or a registered name")
    payment_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long one call to the payment processor may take before it counts as "
        "timed out (its outcome is then looked up by idempotency key)",
    )

    # fulfilment and returns
    return_window_days: int = 30
    refund_shipping_on_full_return: bool = True

    # orders: the sales rank (units sold over a trailing window, each day's units weighing half
    # as much every half-life; the worker recomputes it every five minutes)
    sales_rank_window_days: int = Field(default=90, ge=1, le=3650)
    sales_rank_half_life_days: float = Field(default=14.0, gt=0)

    # reviews: the abuse filter (a burst of reviews from one customer or address, a new account
    # giving extreme ratings to many products) and how fast one customer may write or vote
    review_burst_count: int = 4
    review_burst_window_seconds: int = 3600
    review_new_account_days: int = 7
    review_extreme_count: int = 3
    review_write_rate_per_hour: int = 20
    review_vote_rate_per_minute: int = 60

    # recommendations: association rules kept when their support and confidence reach these
    # (arules' measures), how many products each list keeps, the similarity model behind "also
    # bought" (chosen by `mercato recommendations evaluate`; see docs/benchmarks.md), and the
    # worker's hourly rebuild runs only when this many orders arrived since the last build
    recs_min_support: float = Field(default=0.001, gt=0, le=1)
    recs_min_confidence: float = Field(default=0.05, ge=0, le=1)
    recs_list_size: int = Field(default=20, ge=1, le=200)
    recs_also_bought_model: str = Field(default="rp3beta", pattern="^(itemknn|rp3beta|ease)$")
    recs_rebuild_min_new_orders: int = Field(default=20, ge=1)
    # How often a process asks whether another one rebuilt the lists (0: on every request).
    recs_reload_seconds: float = Field(default=5.0, ge=0)

    # flash sales: a buyer who stops polling the waiting room for the grace period loses the
    # place; an admitted buyer holds the units (and the admission token) for the hold; the
    # waiting room's endpoints are limited per customer and per client IP
    flashsale_grace_seconds: int = Field(default=60, ge=5, le=3600)
    flashsale_hold_seconds: int = Field(default=300, ge=30, le=3600)
    flashsale_checkout_grace_seconds: int = Field(
        default=600, ge=30, le=86400, description="How long a purchase in progress keeps units"
    )
    flashsale_polls_per_customer_per_minute: int = Field(default=60, ge=1)
    flashsale_requests_per_ip_per_minute: int = Field(default=600, ge=1)
    # marketplace: a seller above any of these rates over the window (basis points: 100 = 1 %)
    # has no offer in the buy box (Amazon's published targets: order defects under 1 %, late
    # shipments under 4 %, cancellations before fulfilment under 2.5 %)
    marketplace_max_defect_rate_bp: int = Field(default=100, ge=0, le=10_000)
    marketplace_max_late_shipment_rate_bp: int = Field(default=400, ge=0, le=10_000)
    marketplace_max_cancel_rate_bp: int = Field(default=250, ge=0, le=10_000)
    marketplace_performance_days: int = Field(default=90, ge=1, le=365)

    # notifications: with no SMTP host, mails are written as .eml files under data_dir/mail
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "Mercato <shop@example.com>"
    shop_name: str = "Mercato"
    public_url: str = "http://127.0.0.1:8000"
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 5.0
    webhook_disable_after_failures: int = 20
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and link-local addresses",
    )

    # worker: new events wake it at once (in process, or PostgreSQL's NOTIFY); without a signal
    # (a separate worker process on SQLite) it checks the outbox this often
    worker_idle_poll_seconds: float = 0.5
    # worker claims: a worker that stops renewing (killed) loses its outbox consumers and jobs
    # to another worker after this long
    worker_lease_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _data_dir_of_the_database(self) -> Self:
        if "data_dir" not in self.model_fields_set:
            # Not through setattr: that would count the directory as given explicitly.
            self.__dict__["data_dir"] = default_data_dir(self.database_url)
        return self

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with ``changes``; a default data directory follows a new database."""
        copy = self.model_copy(update=changes)
        if "data_dir" not in copy.model_fields_set:
            copy.__dict__["data_dir"] = default_data_dir(copy.database_url)
        return copy

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        # Refused rather than normalised: a shop must not start in a currency it was not told.
        if not _CURRENCY.fullmatch(value):
            raise ValueError(
                f"MERCATO_CURRENCY must be an ISO 4217 code of three upper-case letters, "
                f"such as EUR, GBP or JPY; got {value!r}"
            )
        return value

    @field_validator("default_country")
    @classmethod
    def _country_code(cls, value: str) -> str:
        if not _COUNTRY.fullmatch(value):
            raise ValueError(
                f"MERCATO_DEFAULT_COUNTRY must be an ISO 3166-1 alpha-2 code of two upper-case "
                f"letters, such as DE or FR; got {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"MERCATO_TIMEZONE must be an IANA time zone name such as Europe/Berlin or "
                f"America/New_York; got {value!r}"
            ) from exc
        return value

    def secret_key_refusal(self) -> str | None:
        """Why this process must not serve with its secret key (``None``: it may). Anyone who
        knows the key can forge guest-cart tokens and form tokens offline, and the default is
        public; the demo shop, on a laptop, may keep it."""
        if self.demo_mode:
            return None
        if self.secret_key == INSECURE_DEFAULT_SECRET:
            return (
                "MERCATO_SECRET_KEY is not set: it signs tokens and the default is public. "
                'Set it to a long random value, such as the output of python3 -c "import '
                'secrets; print(secrets.token_urlsafe(48))"'
            )
        if len(self.secret_key) < SECRET_KEY_MIN_LENGTH:
            return (
                f"MERCATO_SECRET_KEY is too short to sign tokens safely: use at least "
                f"{SECRET_KEY_MIN_LENGTH} random characters"
            )
        return None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
