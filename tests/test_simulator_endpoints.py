"""Registering webhook endpoints on every simulator: the default tenant, another one by `tenant=`,
and an unknown one refused in the vendor's word for a tenant."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig

SECRET = "endpoint-secret-long-enough"

#: Each simulator, the field its endpoints name their tenant in, its default and other tenant.
VENDORS = [
    (lambda: CStarSimulator(CStarSimulatorConfig(seed=7)), "team_id", "team", "other_team_id"),
    (
        lambda: InboxOpsSimulator(SimulatorConfig(seed=7)),
        "workspace_id",
        "workspace",
        "other_workspace_id",
    ),
    (
        lambda: ThenaSimulator(ThenaSimulatorConfig(seed=7)),
        "org_id",
        "organisation",
        "other_org_id",
    ),
]


@pytest.mark.parametrize(("build", "field", "noun", "other"), VENDORS)
def test_endpoints_go_to_the_default_tenant_or_the_one_named(
    build: Any, field: str, noun: str, other: str
) -> None:
    sim = build()
    default = sim.add_endpoint("http://127.0.0.1:9/a", SECRET)
    second = sim.add_endpoint("http://127.0.0.1:9/b", SECRET, tenant=getattr(sim, other))
    endpoints = sim.emitter.endpoints
    assert endpoints[default].to_json()[field] == sim.store.default.id
    assert endpoints[second].to_json()[field] == getattr(sim, other)
    with pytest.raises(ValueError, match=f"unknown {noun} 'nope'"):
        sim.add_endpoint("http://127.0.0.1:9/c", SECRET, tenant="nope")
    assert list(endpoints) == [default, second]


@pytest.mark.parametrize("build", [vendor[0] for vendor in VENDORS])
def test_endpoint_ids_are_seeded(build: Any) -> None:
    first, again = build(), build()
    ids = [first.add_endpoint(f"http://127.0.0.1:9/{n}", SECRET) for n in range(2)]
    assert ids == [again.add_endpoint(f"http://127.0.0.1:9/{n}", SECRET) for n in range(2)]
    assert len(set(ids)) == 2
