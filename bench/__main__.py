"""Every benchmark, one command, with sizes that finish in about a quarter of an hour on two
cores; the figures are printed and written into ``docs/benchmarks.md``'s "Latest run" section
(between its markers; the hand-written analysis around it is left as it is).

    python -m bench                              # all of them, modest sizes
    python -m bench --only mixed,search          # some of them
    python -m bench --size full                  # each benchmark's own (much larger) defaults
    python -m bench --no-write                   # print only

Each benchmark runs as its own process (``python -m bench.<name> ...``) with the options below;
its output is kept whole in ``bench/results/<name>.txt`` and its last lines (the figures) go to
the document, beside the machine's description and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, machine

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
START = "<!-- bench:latest:start -->"
END = "<!-- bench:latest:end -->"
TAIL_LINES = 25

MODEST: dict[str, list[str]] = {
    "reservations": ["--seconds", "3"],
    "checkout": ["--seconds", "5", "--shoppers", "16,64"],
    "search": ["--sizes", "20000", "--queries", "300", "--budget", "120", "--no-sqlite"],
    "flashsale": ["--buyers", "300", "--units", "60", "--products", "300"],
    "recommendations": [
        "--build-orders",
        "20000",
        "--products",
        "20000",
        "--orders",
        "20000",
        "--requests",
        "200",
        "--http-requests",
        "100",
    ],
    "mixed": ["--seconds", "15"],
}
ORDER = tuple(MODEST)


def run(name: str, extra: list[str], timeout: float) -> tuple[str, float, int]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "COLUMNS": "160",  # rich wraps at 80 columns when its output is not a terminal
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C, as a person would: the benchmark's own clean-up stops the servers it started
        # (in sessions of their own, which killing it would leave running).
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        output = (output or "") + f"\n(stopped after {timeout:.0f} s)"
    code = proc.returncode if proc.returncode is not None else -1
    (RESULTS / f"{name}.txt").write_text(output)
    return output, time.monotonic() - started, code


Result = tuple[str, list[str], str, float, int]  # name, options, output, seconds, exit status
HEADING = "## Latest run (`python -m bench`, written by the command; do not edit by hand)"


def block(result: Result, load: tuple[float, float]) -> str:
    """One benchmark's figures, between markers of its own: a run of some benchmarks leaves
    the others' figures as they were."""
    name, extra, output, seconds, code = result
    info = machine()
    status = "" if code == 0 else f", exit status {code}"
    loaded = " (a shared, loaded machine: figures are lower bounds)" if max(load) > 1 else ""
    return "\n".join(
        [
            f"<!-- bench:{name}:start -->",
            f"### {name} (`python -m bench.{name} {' '.join(extra)}`, {seconds:.0f} s{status})",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {info['cpu']}, {info['cores']} cores, "
            f"{info['ram']}, Python {info['python']}; load average {load[0]:.1f} before, "
            f"{load[1]:.1f} after{loaded}.",
            "",
            "```",
            *[line.rstrip() for line in output.strip().splitlines()[-TAIL_LINES:]],
            "```",
            f"<!-- bench:{name}:end -->",
        ]
    )


def write(doc: Path, blocks: dict[str, str]) -> None:
    text = doc.read_text()
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    kept = {
        name: f"<!-- bench:{name}:start -->{body}<!-- bench:{name}:end -->"
        for name, body in re.findall(
            r"<!-- bench:(\w+):start -->(.*?)<!-- bench:\1:end -->", section, flags=re.S
        )
    }
    kept.update(blocks)
    ordered = "\n\n".join(kept[n] for n in ORDER if n in kept)
    doc.write_text(f"{head}{START}\n{HEADING}\n\n{ordered}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default=",".join(ORDER), help=f"some of: {','.join(ORDER)}")
    parser.add_argument(
        "--size", choices=("modest", "full"), default="modest", help="full: their own defaults"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(chosen) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmarks: {sorted(unknown)}")
    blocks: dict[str, str] = {}
    failed = False
    for name in (n for n in ORDER if n in chosen):
        extra = MODEST[name] if args.size == "modest" else []
        print(f"== {name}: python -m bench.{name} {' '.join(extra)}", flush=True)
        before = os.getloadavg()[0]
        output, seconds, code = run(name, extra, args.timeout)
        print(output.rstrip(), flush=True)
        failed = failed or code != 0
        blocks[name] = block((name, extra, output, seconds, code), (before, os.getloadavg()[0]))
    if args.write:
        write(DOC, blocks)
        print(f"wrote the latest figures into {DOC.relative_to(ROOT)}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
