"""Live counters: intake and handling rates, lag, queue, outbox, dead letters, paused budgets."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from receiver.console.context import console_key
from ticketwire.backlog import Backlog, read_backlog
from workers.deadletter import partition_count

#: Counters whose per-second rate the page shows.
RATED = ("accepted", "processed")
#: Samples kept for rates; the oldest within `RATE_WINDOW_S` is compared with the newest.
SAMPLES = 120
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class Sample:
    """The stats counters at one moment."""

    at: float
    counters: Mapping[str, int]


class Rates:
    """Per-second rates of the stats counters, from samples taken when the page is read."""

    def __init__(self) -> None:
        self._samples: deque[Sample] = deque(maxlen=SAMPLES)

    def add(self, sample: Sample) -> dict[str, float | None]:
        """Record `sample`; the rate of each rated counter since the oldest recent sample."""
        while self._samples and self._samples[0].at < sample.at - RATE_WINDOW_S:
            self._samples.popleft()
        base = self._samples[0] if self._samples else None
        self._samples.append(sample)
        if base is None or sample.at - base.at < 0.5:
            return {name: None for name in RATED}
        span = sample.at - base.at
        return {
            name: max(0, sample.counters.get(name, 0) - base.counters.get(name, 0)) / span
            for name in RATED
        }


rates_key = web.AppKey("console_rates", Rates)


def decode_counters(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    """The stats hash as names and integers; a value that is not one is left out."""
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            out[k.decode("utf-8", "replace")] = int(v)
        except ValueError:
            continue
    return dict(sorted(out.items()))


async def snapshot(request: web.Request) -> tuple[Backlog, dict[str, int], dict[str, float | None]]:
    """The backlog, the counters and their rates, read now."""
    console = request.app[console_key]
    partitions = await partition_count(console.redis, console.keys, console.settings.partitions)
    backlog = await read_backlog(console.redis, console.keys, partitions)
    counters = decode_counters(await console.redis.hgetall(console.keys.stats))  # type: ignore[misc]
    rates = request.app[rates_key].add(Sample(time.monotonic(), counters))
    return backlog, counters, rates


def figures(
    backlog: Backlog, counters: Mapping[str, int], rates: Mapping[str, float | None]
) -> list[tuple[str, str, str]]:
    """The headline cards: (id, label, value)."""

    def rate(name: str) -> str:
        value = rates.get(name)
        return "…" if value is None else f"{value:.1f}/s"

    paused = backlog.paused_budgets
    return [
        ("rate-in", "Received", rate("accepted")),
        ("rate-out", "Handled", rate("processed")),
        ("lag", "Lag (oldest unhandled)", f"{backlog.oldest_unhandled_s:.1f} s"),
        ("queue", "Queue depth", f"{backlog.queue_depth}{'+' if backlog.approximate else ''}"),
        ("outbox", "Write-backs due", f"{backlog.outbox_due} of {backlog.outbox_tickets}"),
        ("outbox-age", "Oldest due write-back", f"{backlog.oldest_due_s:.1f} s"),
        ("dead", "Dead letters", str(backlog.dead_letters)),
        ("paused", "Budgets paused by 429", str(len(paused))),
    ]


async def page(request: web.Request) -> web.Response:
    """The counters, refreshed by a small script when JavaScript runs."""
    backlog, counters, rates = await snapshot(request)
    return request.app[console_key].render(
        request,
        "live.html",
        cards=figures(backlog, counters, rates),
        paused=sorted(backlog.paused_budgets.items()),
        counters=counters,
    )


async def counters(request: web.Request) -> web.Response:
    """The same figures as JSON, for the page's auto-refresh."""
    backlog, counts, rates = await snapshot(request)
    return web.json_response(
        {
            "cards": {cid: value for cid, _, value in figures(backlog, counts, rates)},
            "paused": {scope: round(left, 1) for scope, left in backlog.paused_budgets.items()},
            "counters": counts,
        },
        headers={"Cache-Control": "no-store"},
    )
