"""Scenario 7: a burst on one account while another account sends a steady trickle.

Both are stored through the product's own intake (`receiver.intake.Intake`), as the receiver
stores them, while one worker runs: the burst on account A all at once, the trickle on account B
with Poisson arrivals from the same moment until A's burst is handled. B's received → handled
latency is read from the trace log, whose entry for a handled delivery carries its receive time
and is written within the trace writer's flush interval (75 ms) of its handling. With `shared`,
B's events are stored as A's, in A's lane: every account's events in one set of streams, as
before accounts had lanes of their own.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.stacks import OUR_KEYS, OUR_PARTITIONS, Delivery, Setup, stored

A, B = "brand-a", "brand-b"
#: B's tickets are in a workspace of their own: `tenant_id` gets this suffix.
B_TENANT_SUFFIX = "-b"
_TENANT = re.compile(rb'"tenant_id":"([^"]*)"')


def accounts_env(workdir: Path, setup: Setup) -> dict[str, str]:
    """The worker's TICKETWIRE_ACCOUNTS file naming A and B (both on the simulator's API)."""
    path = workdir / "accounts-7.toml"
    path.write_text(
        "".join(
            f'[inboxops.{name}]\nwebhook_secrets = {{env = "BENCH_SECRET"}}\n'
            f'api_url = "{setup.api_url}"\napi_key = {{env = "BENCH_API_KEY"}}\n'
            'rate_limit = "off"\n'
            for name in (A, B)
        )
    )
    return {
        "TICKETWIRE_ACCOUNTS": str(path),
        "BENCH_SECRET": setup.secret,
        "BENCH_API_KEY": setup.api_key,
    }


def b_bodies(bodies: Sequence[Delivery]) -> list[Delivery]:
    """B's deliveries: the same bodies about another workspace's tickets."""
    return [
        (
            sig,
            _TENANT.sub(lambda m: b'"tenant_id":"' + m[1] + B_TENANT_SUFFIX.encode() + b'"', body),
        )
        for sig, body in bodies
    ]


async def burst_beside_trickle(
    setup: Setup,
    burst: Sequence[Delivery],
    trickle: Sequence[Delivery],
    *,
    rate: float,
    shared: bool,
    bound_s: float,
    a_backlog: Callable[[], int],
    backlog: Callable[[], int],
    worker_cpu: Callable[[], float],
    seed: int = 7,
) -> dict[str, Any]:
    """Store the burst and the trickle; wait until both are handled; B's latencies from traces."""
    from redis.asyncio import Redis as AsyncRedis

    from receiver.intake import Intake

    keys = OUR_KEYS
    client = AsyncRedis.from_url(setup.redis_url, socket_timeout=30.0)
    intake = Intake(client, keys, partitions=OUR_PARTITIONS, dedupe_ttl_s=3600.0)
    await intake.start()

    done = asyncio.Event()
    b_ids: list[str] = []

    async def send_trickle() -> None:
        rng = random.Random(seed)
        due = time.monotonic()
        for sig, body in trickle:
            due += rng.expovariate(rate)
            # Pacing the open-loop arrivals, not waiting for anything to happen.
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if done.is_set():
                return
            d = stored(sig, body, A if shared else B)
            b_ids.append(d.event_id)
            await intake.store(d)

    async def wait(condition: Callable[[], bool], until: float) -> bool:
        while time.monotonic() < until:
            if await asyncio.to_thread(condition):
                return True
            await asyncio.sleep(0.05)  # the poll of a condition bounded by `until`
        return False

    try:
        began, cpu = time.monotonic(), worker_cpu()
        sender = asyncio.create_task(send_trickle())
        for start in range(0, len(burst), 1000):
            chunk = burst[start : start + 1000]
            await asyncio.gather(*(intake.store(stored(s, b, A)) for s, b in chunk))
        store_s = time.monotonic() - began
        drained = await wait(lambda: a_backlog() == 0, began + bound_s)
        drain_s, cpu = time.monotonic() - began, worker_cpu() - cpu
        done.set()
        await sender
        await wait(lambda: backlog() == 0, time.monotonic() + 30.0)
        latencies = await _latencies(client, keys.trace_log, set(b_ids))
        # The trace writer flushes every 75 ms: give the last entries their flush.
        deadline = time.monotonic() + 5.0
        while len(latencies) < len(b_ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the poll of a condition bounded by `deadline`
            latencies = await _latencies(client, keys.trace_log, set(b_ids))
    finally:
        done.set()
        await intake.close()
        await client.aclose()
    return {
        "burst": len(burst),
        "burst_store_s": store_s,
        "burst_drained": drained,
        "burst_drain_s": drain_s,
        "worker_cpu_s": cpu,
        "trickle_rate": rate,
        "trickle_sent": len(b_ids),
        "trickle_traced": len(latencies),
        "b_latency_ms": sorted(latencies),
    }


async def _latencies(client: Any, trace_log: str, wanted: set[str]) -> list[float]:
    """Handled (trace entry time) minus received, in ms, of the deliveries in `wanted`."""
    out: list[float] = []
    lower = "-"
    while True:
        page = await client.xrange(trace_log, min=lower, count=5000)
        for entry_id, fields in page:
            if fields.get(b"e", b"").decode() in wanted and fields.get(b"o") != b"duplicate":
                handled = int(entry_id.split(b"-")[0])
                out.append(float(handled - int(fields[b"r"])))
        if len(page) < 5000:
            return out
        lower = "(" + page[-1][0].decode()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0..1) of sorted `values`, nearest rank; None when there are none."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]
