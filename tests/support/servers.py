"""Private PostgreSQL and Redis servers for tests and benchmarks.

Each server runs from a fresh temporary directory on a free 127.0.0.1 port and is stopped (and
its directory removed) by :meth:`stop`. Services on the machine's standard ports are never used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def postgres_bindir() -> Path:
    """Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries not found: install the postgresql package")


def _launch_postgres(directory: Path, port: int, run_as: dict[str, Any]) -> subprocess.Popen[bytes]:
    bindir = postgres_bindir()
    data = directory / "data"
    log = open(directory / "postgres.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(directory),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "log_min_messages=warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        **run_as,
    )
    _wait_for_port(port, proc, "postgres")
    return proc


@dataclass
class PostgresServer:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]
    user: str = "postgres"
    _owns_dir: bool = field(default=True, repr=False)

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = postgres_bindir()
        directory = Path(tempfile.mkdtemp(prefix="mercato-pg-"))
        data = directory / "data"
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root: run them as the postgres user.
            pw = pwd.getpwnam("postgres")
            os.chown(directory, pw.pw_uid, pw.pw_gid)
            run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        port = free_port()
        server = cls(port=port, directory=directory, proc=_launch_postgres(directory, port, run_as))
        server._wait_ready(bindir)
        return server

    def pause(self) -> None:
        """Stop the server, keeping its data (``resume`` starts it again on the same port)."""
        _stop(self.proc)

    def resume(self) -> None:
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.proc = _launch_postgres(self.directory, self.port, run_as)
        self._wait_ready(postgres_bindir())

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready")

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return self.url(database, driver="postgresql")

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def _launch_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, proc, "redis-server")
    return proc


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    directory: Path

    @classmethod
    def start(cls) -> RedisServer:
        directory = Path(tempfile.mkdtemp(prefix="mercato-redis-"))
        port = free_port()
        proc = _launch_redis(directory, port)
        return cls(port=port, proc=proc, directory=directory)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def pause(self) -> None:
        """Stop the server (``resume`` starts an empty one again on the same port)."""
        _stop(self.proc, signal.SIGTERM)

    def resume(self) -> None:
        self.proc = _launch_redis(self.directory, self.port)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        shutil.rmtree(self.directory, ignore_errors=True)
