"""`python -m bench.tracecost`: what traces cost the worker in a backlog drain (scenario 4's setup).

Each measurement stores a backlog of InboxOps deliveries in a fresh Redis, starts one worker cold
(traces on, or off with `TICKETWIRE_TRACE_RETENTION=0`) and waits until it has drained them.

- `--callgrind` counts the worker's instructions under `valgrind --tool=callgrind`, for two
  backlog sizes; the difference divided by the difference in events is the cost of one event,
  start-up and shut-down cancelling out. Counts barely move from run to run or machine to machine.
- Otherwise the worker's CPU time per event is read from /proc, from its first processed event
  to the last, as scenario 4 does, for `--reps` alternating pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.__main__ import RULES, SECRET, TICKETS
from bench.helpdesk import start_helpdesk
from bench.payload import Bodies
from bench.procs import BenchError, Procs, cpu_seconds
from bench.redisserver import server_binary, start_redis
from bench.stacks import TRACES_OFF, Ours, Setup, Stack

OURS = Ours()
#: Longest wait for one drain, valgrind's slowdown included.
BOUND_S = 1800.0


def _setup(server_url: str, port: int, api_url: str, api_key: str) -> Setup:
    return Setup(server_url, port, api_url, api_key, SECRET, RULES)


def _totals(path: Path) -> int:
    """Instructions a callgrind output file counts (its `summary:` or `totals:` line)."""
    match = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise BenchError(f"no instruction total in {path}")
    return int(match.group(1))


def drain(
    procs: Procs,
    binary: str,
    helpdesk_url: str,
    api_key: str,
    bodies: Bodies,
    stack: Stack,
    n: int,
    callgrind: Path | None,
    *,
    wrap: Sequence[str] = (),
) -> float:
    """Drain `n` stored events with one worker; its instructions, or CPU µs per event.

    `wrap` runs the worker's Python under a tool (e.g. `-m cProfile -o PATH`).
    """
    server = start_redis(procs, binary)
    try:
        setup = _setup(server.url, server.port, helpdesk_url, api_key)
        asyncio.run(stack.store(setup, list(bodies.make(n))))
        # `python -m arq`, not the console script: valgrind then follows the interpreter.
        argv = [sys.executable, *wrap, "-m", "arq", *stack.worker_argv()[1:]]
        if callgrind is not None:
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *argv]
        worker = procs.start(f"{stack.name}-worker", argv, stack.worker_env(setup))
        r = setup.client()
        first: tuple[float, int] | None = None
        try:
            deadline = time.monotonic() + BOUND_S
            while True:
                if not worker.alive:
                    raise BenchError(worker.describe_exit())
                done = stack.processed(r)
                if first is None and done > 0:
                    first = (cpu_seconds(worker.pid), done)
                if done >= n and stack.backlog(r) == 0:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{stack.name}: {done} of {n} events after {BOUND_S:.0f}s")
                time.sleep(0.025)
            cpu = cpu_seconds(worker.pid)
        finally:
            r.close()
            # Under valgrind the shutdown (and its final trace flush) is slow: give it time.
            procs.stop(worker, timeout=300.0)
        if callgrind is not None:
            return float(_totals(callgrind))
        assert first is not None
        return (cpu - first[0]) / max(done - first[1], 1) * 1e6
    finally:
        server.stop(procs)


def main(argv: list[str] | None = None) -> int:
    """Measure traces on and off; print per-event figures and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.tracecost", description=__doc__)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument(
        "--events", type=int, nargs=2, default=(1500, 6000), metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--reps", type=int, default=3, help="CPU-time pairs (default 3)")
    parser.add_argument("--only", choices=("on", "off"), help="measure one configuration only")
    args = parser.parse_args(argv)
    if args.callgrind and shutil.which("valgrind") is None:
        print("bench.tracecost: valgrind is not installed", file=sys.stderr)
        return 2
    stacks = {"on": OURS, "off": TRACES_OFF}
    if args.only:
        stacks = {args.only: stacks[args.only]}
    small, large = args.events
    workdir = Path(tempfile.mkdtemp(prefix="ticketwire-tracecost-"))
    results: dict[str, list[float]] = {name: [] for name in stacks}
    with Procs(workdir / "logs") as procs:
        helpdesk = start_helpdesk(procs, TICKETS)
        binary = server_binary()
        bodies = Bodies(helpdesk.workspace, SECRET)

        def run(stack: Stack, n: int, out: Path | None) -> float:
            return drain(procs, binary, helpdesk.url, helpdesk.api_key, bodies, stack, n, out)

        if args.callgrind:
            for name, stack in stacks.items():
                counts = [run(stack, n, workdir / f"callgrind.{name}.{n}") for n in (small, large)]
                per_event = (counts[1] - counts[0]) / (large - small)
                results[name].append(per_event)
                print(
                    f"traces {name}: {counts[0]:,.0f} instructions for {small:,} events, "
                    f"{counts[1]:,.0f} for {large:,}: {per_event:,.0f} per event",
                    flush=True,
                )
        else:
            for rep in range(args.reps):
                names = list(stacks) if rep % 2 == 0 else list(reversed(stacks))
                for name in names:
                    us = run(stacks[name], large, None)
                    results[name].append(us)
                    print(f"traces {name}: {us:.1f} µs CPU per event", flush=True)
    if len(results) == 2:
        on, off = statistics.median(results["on"]), statistics.median(results["off"])
        unit = "instructions" if args.callgrind else "µs"
        print(f"per event: traces on {on:,.1f} {unit}, off {off:,.1f}: {on / off:.3f}x")
    if args.callgrind:
        print(f"callgrind files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
