"""The fault scenarios at their short sizes (the full ones: `python -m tests.faults --full`, or
`TICKETWIRE_FAULTS=full` here): nothing lost, no write-back duplicated, every ticket as expected,
every recovery within its bound."""

from __future__ import annotations

import os

import pytest

from tests.faults.scenarios import SCENARIOS, SIZES

SIZE = SIZES[os.environ.get("TICKETWIRE_FAULTS", "short")]


@pytest.mark.parametrize("name", SCENARIOS)
async def test_fault_scenario(name: str) -> None:
    out = await SCENARIOS[name](SIZE)
    detail = "\n".join([out.error, *out.wrong_tickets[:5], *out.notes[:8]])
    assert not out.error, detail
    assert out.accepted > 0, "nothing was delivered: the scenario measured nothing"
    assert out.fault_hits > 0, f"the fault never showed ({out.fault_seen})\n{detail}"
    assert out.lost == 0, detail
    assert out.processed == out.sent, detail
    assert out.duplicated == 0, detail
    assert not out.wrong_tickets, detail
    assert out.dead_letters == 0, detail
    if out.recovery:
        assert out.recovery_s is not None, f"no recovery measured ({out.recovery})\n{detail}"
        assert out.recovery_s <= 30.0, detail
