"""``mercato backup`` / ``mercato restore``: a consistent copy of the embedded shop taken while
it writes, restored and checked; PostgreSQL shops are sent to PostgreSQL's own tools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mercato import backup as backups
from mercato import migrate
from mercato.cli import app as cli
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.settings import get_settings
from tests.factories import make_product


def invoke(*args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, list(args))
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def test_a_backup_taken_during_writes_is_consistent_and_restores(
    db: Database, database_url: str, backend: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        for command in ("backup", "restore"):
            code, output = await asyncio.to_thread(
                invoke, command, str(tmp_path / "x.db"), "--database", database_url
            )
            assert code == 2 and "pg_dump" in output, output
        return
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BK", name="Backup test", countries=["DE"])
        _, variants = await make_product(uow, variants=[{}, {}, {}])
    stop, underway = asyncio.Event(), asyncio.Event()
    receipts = 0

    async def keep_receiving() -> None:
        # Every receipt writes a stock row and its ledger row in one transaction: a copy
        # taken between them would fail the ledger check below.
        nonlocal receipts
        while not stop.is_set() or receipts < 20:
            async with db.transaction() as uow:
                await inventory.receive(uow, variants[receipts % 3], "BK", 1)
            receipts += 1
            if receipts >= 10:
                underway.set()

    writers = [asyncio.create_task(keep_receiving()) for _ in range(2)]
    copy = tmp_path / "shop-backup.db"
    try:
        await underway.wait()
        code, output = await asyncio.to_thread(
            invoke, "backup", str(copy), "--database", database_url
        )
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert code == 0 and "integrity ok" in output, output

    info = backups.inspect(copy)
    assert info.revision == migrate.head_revision()

    # The live shop has the database open: restoring over it needs --force.
    code, output = await asyncio.to_thread(invoke, "restore", str(copy), "--database", database_url)
    assert code == 1 and "running shop" in output, output

    restored = tmp_path / "restored.db"
    code, output = await asyncio.to_thread(
        invoke, "restore", str(copy), "--database", str(restored)
    )
    assert code == 0 and "mercato reindex" in output, output
    copy_db = Database(f"sqlite+aiosqlite:///{restored}", pool_size=1)
    try:
        async with copy_db.transaction() as uow:
            assert await inventory.check_ledger(uow) == []
            levels = await inventory.stock_for_variants(uow, variants)
        units = sum(s.on_hand for found in levels.values() for s in found)
        assert 10 <= units <= receipts  # what had committed when the copy was taken
    finally:
        await copy_db.dispose()


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(backups.BackupError):
        backups.restore(damaged, tmp_path / "target.db")
