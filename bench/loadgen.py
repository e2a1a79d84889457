"""HTTP load generator on aiohttp, for machines without wrk: one process, keep-alive connections.

    python -m bench.loadgen URL --bodies FILE --duration 10 [--conns 64] [--rate 1000] --out R.json
    python -m bench.loadgen URL --bodies FILE --once --rate 1000 --out R.json

Flat out (no --rate) is a closed loop: `conns` connections each send the next body as soon as the
previous answer arrived. With --rate it is an open loop: arrivals are scheduled in advance with
exponential gaps (Poisson), and each latency is measured from the scheduled time, so a slow server
cannot hide its queueing by slowing the generator down. With --once (needs --rate) every line
of the file is sent exactly once, evenly spaced at `rate`/s (no duration): N lines take N / rate
seconds to offer. Bodies come from a file of `<signature> <body>` lines, read in order; every
line is sent once unless the file runs out.
The signature goes in the header named by $BENCH_SIG_HEADER (default X-InboxOps-Signature), as
in `wrk_post.lua`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

SIGNATURE_HEADER = os.environ.get("BENCH_SIG_HEADER") or "X-InboxOps-Signature"


class BodyFile:
    """The next (signature, body) of a bodies file; starts over (counting a wrap) at the end."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("rb")
        self.wraps = 0

    def next(self) -> tuple[str, bytes]:
        """Read the next line."""
        line = self._file.readline()
        if not line:
            self._file.seek(0)
            self.wraps += 1
            line = self._file.readline()
        sig, _, body = line.rstrip(b"\n").partition(b" ")
        return sig.decode(), body

    def close(self) -> None:
        """Close the file."""
        self._file.close()


@dataclass
class Tally:
    """Answers by status, transport errors, and latencies in seconds."""

    status: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


async def _post(
    session: aiohttp.ClientSession, url: str, sig: str, body: bytes, tally: Tally, since: float
) -> None:
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sig}
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - since)
    tally.status[status] += 1


async def closed_loop(
    session: aiohttp.ClientSession, url: str, bodies: BodyFile, conns: int, duration: float
) -> tuple[Tally, float]:
    """Each of `conns` connections posts back to back until `duration` has passed."""
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration

    async def connection() -> None:
        while time.perf_counter() < deadline:
            sig, body = bodies.next()
            await _post(session, url, sig, body, tally, time.perf_counter())

    await asyncio.gather(*(connection() for _ in range(conns)))
    return tally, time.perf_counter() - start


async def open_loop(
    session: aiohttp.ClientSession, url: str, bodies: BodyFile, rate: float, duration: float
) -> tuple[Tally, float]:
    """Send at Poisson-distributed times averaging `rate`/s, whatever the answers take."""
    tally = Tally()
    rng = random.Random()
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    due = start
    while True:
        due += rng.expovariate(rate)
        if due - start >= duration:
            break
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        sig, body = bodies.next()
        task = asyncio.create_task(_post(session, url, sig, body, tally, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return tally, time.perf_counter() - start


async def each_once(
    session: aiohttp.ClientSession, url: str, lines: list[tuple[str, bytes]], rate: float
) -> tuple[Tally, float, float, float]:
    """Send every line once, evenly spaced at `rate`/s (open loop); also when sending began/ended.

    Returns the tally, the elapsed seconds until every answer arrived, and the wall-clock times
    (epoch seconds) the first and the last delivery were sent.
    """
    tally = Tally()
    tasks: set[asyncio.Task[None]] = set()
    first_sent = time.time()
    start = time.perf_counter()
    last_sent = first_sent
    for n, (sig, body) in enumerate(lines):
        due = start + n / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        last_sent = time.time()
        task = asyncio.create_task(_post(session, url, sig, body, tally, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return tally, time.perf_counter() - start, first_sent, last_sent


def read_lines(path: Path) -> list[tuple[str, bytes]]:
    """Every `(signature, body)` line of a bodies file."""
    out = []
    with path.open("rb") as f:
        for line in f:
            sig, _, body = line.rstrip(b"\n").partition(b" ")
            if body:
                out.append((sig.decode(), body))
    return out


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of an ascending list; 0 if empty."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load described by `args`; return the result as JSON-ready data."""
    if args.once:
        return await run_once(args)
    bodies = BodyFile(Path(args.bodies))
    limit = args.conns if not args.rate else max(args.conns, 256)
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if args.rate:
                tally, elapsed = await open_loop(
                    session, args.url, bodies, args.rate, args.duration
                )
            else:
                tally, elapsed = await closed_loop(
                    session, args.url, bodies, args.conns, args.duration
                )
    finally:
        bodies.close()
    return summary(tally, elapsed, bodies.wraps)


async def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """`--once`: every line exactly once at `--rate`/s; the summary plus when sending began/ended."""
    lines = read_lines(Path(args.bodies))
    connector = aiohttp.TCPConnector(limit=max(args.conns, 256), force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tally, elapsed, first, last = await each_once(session, args.url, lines, args.rate)
    return {**summary(tally, elapsed, 0), "first_sent_at": first, "last_sent_at": last}


def summary(tally: Tally, elapsed: float, wraps: int) -> dict[str, Any]:
    """The result JSON of one run: answers by kind and latency percentiles."""
    lat = sorted(tally.latencies)
    return {
        "tool": "aiohttp",
        "duration_s": elapsed,
        "requests": sum(tally.status.values()) + tally.errors,
        "accepted": tally.status.get(202, 0),
        "duplicates": tally.status.get(200, 0),
        "other": sum(n for s, n in tally.status.items() if s not in (200, 202)),
        "errors": tally.errors,
        "wraps": wraps,
        "p50_ms": percentile(lat, 50) * 1000,
        "p90_ms": percentile(lat, 90) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "p999_ms": percentile(lat, 99.9) * 1000,
        "max_ms": (lat[-1] if lat else 0.0) * 1000,
    }


def main() -> None:
    """Parse arguments, run, write the result JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--bodies", required=True, help="file of '<signature> <body>' lines")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--once", action="store_true", help="send every line once, evenly at --rate/s"
    )
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0, help="offered req/s (open loop)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args()
    if args.once and not args.rate > 0:
        parser.error("--once needs --rate (deliveries per second)")
    if not args.once and not args.duration > 0:
        parser.error("--duration is required (seconds > 0) unless --once is given")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
