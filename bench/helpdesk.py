"""The InboxOps simulator for the benchmarks: started alone, rate limit off, tickets seeded."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from bench.payload import Workspace
from bench.procs import Proc, Procs, command, free_port, http_ok, wait_until


@dataclass(frozen=True)
class Helpdesk:
    """A running simulator: where it is, its API key, and the seeded workspace."""

    proc: Proc
    url: str
    api_key: str
    workspace: Workspace


def _call(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())["data"]


def start_helpdesk(procs: Procs, tickets: int) -> Helpdesk:
    """`ticketwire simulate inboxops --rate-limit 0`, then seed `tickets` tickets (no webhooks)."""
    port = free_port()
    argv = [
        *command("ticketwire"),
        "simulate",
        "inboxops",
        "--port",
        str(port),
        "--rate-limit",
        "0",
        "--seed-tickets",
        "0",
    ]
    proc = procs.start("simulator", argv)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/_sim"), timeout=30.0, what="the simulator", watch=[proc])
    _call(f"{url}/_sim/seed", {"tickets": tickets, "emit": False})
    info = _call(f"{url}/_sim")
    seeded = _call(f"{url}/_sim/tickets")
    return Helpdesk(proc, url, str(info["api_key"]), Workspace.from_simulator(info, seeded))
