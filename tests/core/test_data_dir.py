"""The default data directory (search index, mail files) is one per database: two shops started
in one folder never share an index; ``MERCATO_DATA_DIR`` still decides when it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.cli_support import settings_with
from mercato.settings import Settings, default_data_dir, get_settings


def test_two_databases_get_two_data_directories() -> None:
    first = Settings(database_url="sqlite+aiosqlite:////srv/shops/one.db")
    second = Settings(database_url="postgresql+asyncpg://shop@localhost:5432/one")
    assert first.data_dir != second.data_dir


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////srv/shops/mercato.db", Path("/srv/shops/mercato-data")),
        ("sqlite+aiosqlite:///./shop.db", Path("shop-data")),
        ("sqlite+aiosqlite:////srv/shops/shop.sqlite3", Path("/srv/shops/shop.sqlite3.data")),
        ("sqlite+aiosqlite:////srv/shops/shop", Path("/srv/shops/shop.data")),
    ],
)
def test_a_sqlite_shop_keeps_its_data_beside_its_file(url: str, expected: Path) -> None:
    assert default_data_dir(url) == expected


def test_a_postgresql_shop_is_named_after_host_port_and_database() -> None:
    url = "postgresql+asyncpg://mercato:s3cret@db.example.com:6543/shop/../x?ssl=require"
    name = default_data_dir(url)
    assert name.parent == Path(".")  # under the working directory, never elsewhere
    assert str(name) == "mercato-postgresql-db.example.com-6543-shop_.._x-data"
    assert "s3cret" not in str(name) and "mercato:" not in str(name)
    other_port = default_data_dir("postgresql+asyncpg://mercato@db.example.com:6544/shop")
    other_db = default_data_dir("postgresql+asyncpg://mercato@db.example.com:6543/shop2")
    assert len({name, other_port, other_db}) == 3
    # A socket connection has no host in the URL.
    assert str(default_data_dir("postgresql+asyncpg:///shop")) == (
        "mercato-postgresql-local-default-shop-data"
    )


def test_an_explicit_data_directory_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "sqlite+aiosqlite:////srv/shops/one.db"
    assert Settings(database_url=url, data_dir=tmp_path).data_dir == tmp_path
    monkeypatch.setenv("MERCATO_DATA_DIR", str(tmp_path / "env"))
    assert Settings(database_url=url).data_dir == tmp_path / "env"
    # and a command's --database keeps it
    get_settings.cache_clear()
    try:
        assert settings_with(database_url=url).data_dir == tmp_path / "env"
    finally:
        get_settings.cache_clear()


def test_a_commands_database_brings_its_own_data_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MERCATO_DATA_DIR", raising=False)
    monkeypatch.setenv("MERCATO_DATABASE_URL", "sqlite+aiosqlite:////srv/a/first.db")
    get_settings.cache_clear()
    try:
        assert get_settings().data_dir == Path("/srv/a/first-data")
        moved = settings_with(database_url="sqlite+aiosqlite:////srv/b/second.db")
        assert moved.data_dir == Path("/srv/b/second-data")
    finally:
        get_settings.cache_clear()
