"""The InboxOps simulator for the benchmarks: started alone, rate limit off, tickets seeded.

Scenario 6 starts its own simulator per run, creates a tag through the API while the limit is
still off (so it costs none of the budget the stacks are measured under), then switches the
limit on (`POST /_sim/settings`) and reads the journal and the tickets' tags back.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from bench.payload import Workspace
from bench.procs import BenchError, Proc, Procs, command, free_port, http_ok, wait_until


@dataclass(frozen=True)
class Helpdesk:
    """A running simulator: where it is, its API key, and the seeded workspace."""

    proc: Proc
    url: str
    api_key: str
    workspace: Workspace


def _call(url: str, body: dict[str, Any] | None = None, *, key: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=data, headers=headers, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())["data"]


def create_tag(helpdesk: Helpdesk, name: str) -> str:
    """Create a tag through the API (`POST /api/v1/tags`); return its id."""
    tag = _call(f"{helpdesk.url}/api/v1/tags", {"name": name}, key=helpdesk.api_key)
    return str(tag["id"])


def set_rate_limit(helpdesk: Helpdesk, per_minute: int, window: str = "fixed") -> None:
    """Switch the simulator's per-workspace limit on (`POST /_sim/settings`), and check it took."""
    wanted = {"rate_limit_per_minute": per_minute, "rate_limit_window": window}
    now = _call(f"{helpdesk.url}/_sim/settings", wanted)
    if any(now.get(k) != v for k, v in wanted.items()):
        raise BenchError(f"the simulator did not take the rate limit {wanted}: it answered {now}")


def journal(url: str) -> list[dict[str, Any]]:
    """Every `/api/v1` request the simulator received so far (`GET /_sim/journal`)."""
    return list(_call(f"{url}/_sim/journal"))


def tickets_with_tags(url: str) -> list[dict[str, Any]]:
    """Every ticket with its tags (`GET /_sim/tickets?include=tags`)."""
    return list(_call(f"{url}/_sim/tickets?include=tags"))


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
