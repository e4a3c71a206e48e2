"""Real Mercato processes for the scale-out tests: API servers (``mercato serve``) and workers
on 127.0.0.1, each its own process, killed with SIGKILL when a test says so.

``python -m tests.support.processes`` is a ``mercato worker`` with two probes added: an outbox
consumer and a periodic job that write one line when they start and one when they end (with
the process id) to the file named by ``MERCATO_TEST_PROBE_LOG``, so that a test can tell whether
two workers ever ran the same thing at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PROBE_CONSUMER = "test-probe"
PROBE_TYPES = frozenset({"OrderPlaced", "ProductUpdated", "StockChanged"})
PROBE_JOB = "test.probe"


def mercato(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a ``mercato`` command to its end."""
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=out)
        out.close()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"{self.name}: {text[-3000:]}"

    def kill(self) -> None:
        """``kill -9``: no cleanup, no lease released, connections dropped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def api(env: dict[str, str], logs: Path, name: str, port: int | None = None) -> Proc:
    port = port or free_port()
    argv = [sys.executable, "-m", "mercato.cli", "serve", "--host", "127.0.0.1"]
    return Proc(name, [*argv, "--port", str(port)], env, logs / f"{name}.log", port)


def worker(env: dict[str, str], logs: Path, name: str) -> Proc:
    return Proc(name, [sys.executable, "-m", "tests.support.processes"], env, logs / f"{name}.log")


STARTUP_SECONDS = 150.0
"""Generous: on a loaded two-core machine four processes importing the app take a while."""


async def wait_healthy(*apis: Proc) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient() as client:
        for p in apis:
            while True:
                assert p.proc is not None and p.proc.poll() is None, p.tail()
                try:
                    if (await client.get(f"{p.url}/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, p.tail()
                await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Span:
    what: str
    pid: int
    start: float
    end: float | None


def probe_spans(path: Path) -> list[Span]:
    """The probes' runs: (what, pid, start, end); end None for a run cut short by a kill."""
    open_: dict[tuple[str, int], float] = {}
    spans: list[Span] = []
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue  # a line torn by a kill
        what, pid, phase, at = parts[0], int(parts[1]), parts[2], float(parts[3])
        if phase == "start":
            open_[(what, pid)] = at
        elif (what, pid) in open_:
            spans.append(Span(what, pid, open_.pop((what, pid)), at))
    spans += [Span(what, pid, at, None) for (what, pid), at in open_.items()]
    return spans


def overlapping(spans: list[Span]) -> list[tuple[Span, Span]]:
    """Pairs of runs of the same probe in two processes that were running at the same time."""
    found = []
    for a in spans:
        for b in spans:
            if a.what.split(":")[0] != b.what.split(":")[0] or a.pid >= b.pid:
                continue
            a_end, b_end = a.end or float("inf"), b.end or float("inf")
            if a.start < b_end and b.start < a_end:
                found.append((a, b))
    return found


def _probe_main() -> None:
    from mercato import events
    from mercato import worker as worker_mod
    from mercato.cli import app
    from mercato.events import Consumer, Event
    from mercato.modules import wire
    from mercato.runtime import Runtime

    log = os.environ["MERCATO_TEST_PROBE_LOG"]
    pid = os.getpid()

    def note(what: str, phase: str) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {pid} {phase} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)

    async def consume(_runtime: Runtime, event: Event) -> None:
        note(f"consumer:{event.seq}", "start")
        await asyncio.sleep(0.02)  # a handler that takes a moment, so a kill can land inside
        note(f"consumer:{event.seq}", "end")

    async def tick(_runtime: Runtime) -> int:
        note("job", "start")
        await asyncio.sleep(0.05)
        note("job", "end")
        return 1

    wire()
    events.dispatcher.register(Consumer.of(PROBE_CONSUMER, PROBE_TYPES, consume))
    worker_mod.register(worker_mod.Job(PROBE_JOB, 0.5, tick))
    app(["worker"])


if __name__ == "__main__":
    _probe_main()
