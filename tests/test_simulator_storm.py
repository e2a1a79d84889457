"""Time-bounded fault storms on every simulator: `POST /_sim/faults {"storm": …}` answers every
matching API request with the storm's status until it ends, then the API answers as before."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for

#: Each simulator and a path under its API that needs credentials (so 401 without them).
VENDORS = [
    (lambda: InboxOpsSimulator(SimulatorConfig(seed=7)), "/api/v1/tickets"),
    (lambda: CStarSimulator(CStarSimulatorConfig(seed=7)), "/api/v1/teams/x/tickets"),
    (lambda: ThenaSimulator(ThenaSimulatorConfig(seed=7)), "/v1/tickets"),
]


async def _client(aiohttp_client: Any, build: Any) -> TestClient[Any, Any]:
    sim = build()
    client: TestClient[Any, Any] = await aiohttp_client(type(sim).create_app(sim))
    return client


@pytest.mark.parametrize(("build", "path"), VENDORS)
async def test_a_storm_answers_every_request_until_it_ends(
    aiohttp_client: Any, build: Any, path: str
) -> None:
    client = await _client(aiohttp_client, build)
    resp = await client.post(
        "/_sim/faults", json={"storm": {"status": 429, "seconds": 0.5, "retry_after": 3}}
    )
    assert resp.status == 200
    shown = (await resp.json())["data"]["storm"]
    assert [(s["status"], s["retry_after"]) for s in shown] == [(429, 3)]
    assert 0 < shown[0]["seconds_left"] <= 0.5
    started = time.monotonic()
    answers = []
    for _ in range(5):  # more requests than any count: a storm is bounded by time alone
        got = await client.get(path)
        answers.append((got.status, got.headers.get("Retry-After")))
    assert answers == [(429, "3")] * 5

    async def over() -> bool:
        return (await client.get(path)).status == 401

    await wait_for(over, timeout=5.0, message="the storm to end")
    assert time.monotonic() - started >= 0.45
    assert (await (await client.get("/_sim/faults")).json())["data"]["storm"] == []


@pytest.mark.parametrize(("build", "path"), VENDORS)
async def test_a_storm_matches_method_and_path_and_clear_ends_it(
    aiohttp_client: Any, build: Any, path: str
) -> None:
    client = await _client(aiohttp_client, build)
    storm = {"status": 500, "seconds": 60, "method": "PATCH", "path": "*/tickets/*"}
    assert (await client.post("/_sim/faults", json={"storm": [storm]})).status == 200
    assert (await client.get(path)).status == 401
    assert (await client.patch(path + "/1", json={})).status == 500
    assert (await client.post("/_sim/faults", json={"clear": True})).status == 200
    assert (await client.patch(path + "/1", json={})).status != 500


@pytest.mark.parametrize(("build", "path"), VENDORS)
async def test_a_slow_storm_delays_answers(aiohttp_client: Any, build: Any, path: str) -> None:
    sim = build()
    client: TestClient[Any, Any] = await aiohttp_client(type(sim).create_app(sim))
    body = {"storm": {"status": 0, "seconds": 30, "delay": 0.3}}
    assert (await client.post("/_sim/faults", json=body)).status == 200
    started = time.monotonic()
    assert (await client.get(path)).status == 401
    assert time.monotonic() - started >= 0.3
    # The journal stamps the request when it arrived, as a rate limit counts it, not when the
    # late answer went out: a storm of slow answers must not pile requests into one window.
    (entry,) = sim.journal
    assert (sim.clock.now() - entry.at).total_seconds() >= 0.3


@pytest.mark.parametrize(
    "storm",
    [
        {"status": 429},
        {"seconds": 3},
        {"status": 429, "seconds": 0},
        {"status": 429, "seconds": 3, "delay": -1},
        {"status": 700, "seconds": 3},
    ],
)
async def test_a_storm_without_its_fields_is_refused(
    aiohttp_client: Any, storm: dict[str, Any]
) -> None:
    client = await _client(aiohttp_client, VENDORS[0][0])
    resp = await client.post("/_sim/faults", json={"storm": storm})
    assert resp.status == 400
    assert (await (await client.get("/_sim/faults")).json())["data"]["storm"] == []
