"""The README's Simulators section: every `/_sim` route is documented, and every example works."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.procs import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
#: The ports the section's examples use: `ticketwire up`'s defaults.
PORTS = {"8081": "inboxops", "8082": "cstar", "8083": "thena"}
CURL = re.compile(r"curl -s (?:-X (?P<method>[A-Z]+) )?(?P<url>[^\s`]+)(?: -d '(?P<body>[^']*)')?")


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Simulators\n")
    return text[start : text.index("\n## ", start + 1)]


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, Any]]:
    made = {
        "inboxops": InboxOpsSimulator(SimulatorConfig(seed=41, rate_limit_per_minute=None)),
        "cstar": CStarSimulator(CStarSimulatorConfig(seed=41)),
        "thena": ThenaSimulator(ThenaSimulatorConfig(seed=41)),
    }
    for sim in made.values():
        await sim.start()
    yield made
    for sim in made.values():
        await sim.stop()


async def test_every_control_route_is_documented(sims):
    text = section()
    async with aiohttp.ClientSession() as http:
        for vendor, sim in sims.items():
            async with http.get(f"{sim.url}/_sim") as r:
                routes = (await r.json())["data"]["routes"]
            assert routes, vendor
            for route in routes:
                assert f"| `{route}` |" in text, f"{vendor}: {route} is not in the README"


async def test_every_example_works(sims):
    text = section()
    # `first_id`'s own curl takes its URL as an argument; the lines that call it are checked.
    commands = [m for m in CURL.finditer(text) if m["url"].startswith("http")]
    assert len(commands) >= 20
    dead = f"http://127.0.0.1:{free_port()}"
    async with aiohttp.ClientSession() as http:

        async def first_id(sim: Any) -> str:
            async with http.get(f"{sim.url}/_sim/tickets") as r:
                tickets = (await r.json())["data"]
            if not tickets:
                async with http.post(f"{sim.url}/_sim/tickets", json={"title": "x"}) as r:
                    return str((await r.json())["data"]["id"])
            return str(tickets[0]["id"])

        for m in commands:
            url = m["url"].strip('"')
            port = re.match(r"http://127\.0\.0\.1:(\d+)", url)
            assert port and port[1] in PORTS, url
            sim = sims[PORTS[port[1]]]
            url = url.replace(port[0], sim.url)
            for name, vendor in (("$CSTAR_ID", "cstar"), ("$THENA_ID", "thena")):
                if name in url:
                    url = url.replace(name, await first_id(sims[vendor]))
            # The example's receiver is not running here; a closed port stands in for it.
            body = (m["body"] or "").replace("http://127.0.0.1:8000", dead)
            async with http.request(
                m["method"] or ("POST" if body else "GET"),
                url,
                data=body or None,
                headers={"Content-Type": "application/x-www-form-urlencoded"} if body else None,
            ) as r:
                answer = await r.text()
                assert 200 <= r.status < 300, f"{m[0]} → {r.status} {answer}"
                assert "data" in json.loads(answer), m[0]
