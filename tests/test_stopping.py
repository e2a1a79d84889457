"""Stopping for certain: background tasks that lose a cancellation, `up` stopped while it starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.procs import BIN, free_port, free_ports, spawn
from ticketwire import stoptask
from ticketwire.stoptask import stop_task


async def test_a_task_that_loses_a_cancellation_is_stopped_all_the_same() -> None:
    lost = 0

    async def poll() -> None:
        # What redis-py's use of asyncio.wait_for does on Python 3.11 when a cancellation lands
        # as a command completes: the CancelledError never reaches the loop.
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1

    task = asyncio.create_task(poll())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop_task(task, "the poller")
    assert task.done()
    assert lost == 1, "the first cancellation was lost, and the task still ended"


async def test_a_slow_stop_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stoptask, "SLOW_STOP_S", 0.2)
    monkeypatch.setattr(stoptask, "RECANCEL_S", 0.05)
    release = asyncio.Event()

    async def stubborn() -> None:
        # The behaviour under test: a loop that swallows every cancellation while it idles.
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(stop_task(task, "the stubborn poller"))
    with caplog.at_level(logging.WARNING, logger="ticketwire"):
        await wait_for(
            lambda: "still waiting for the stubborn poller after" in caplog.text,
            timeout=5,
            message="the slow stop is logged",
        )
        release.set()
        async with asyncio.timeout(5):
            await stopping
    assert task.done()


@pytest.mark.slow
async def test_up_stopped_while_its_worker_starts_exits_promptly(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "wake.yml").write_text(
        "name: wake\nevents: [ticket.updated]\n"
        "if: {field: common.priority, equals: urgent}\nthen:\n  - set_status: open\n"
    )
    up = await spawn(
        [str(BIN / "ticketwire"), "up", "--simulator-port", str(free_ports(3))],
        {
            "PORT": str(free_port()),
            "TICKETWIRE_DATA_DIR": str(tmp_path / "data"),
            "TICKETWIRE_RULES": str(rules),
        },
    )
    try:
        # arq says this before it runs the worker's start (connections, consumer, rules).
        await up.wait_output("Starting worker for", timeout=30)
    finally:
        code = await up.stop(signal.SIGINT, timeout=15)
    assert code == 0, up.output
    # Nothing the worker started outlived the stop (it would retry the stopped Valkey).
    after = up.output.split("stopped.", 1)[1]
    assert "redis unavailable" not in after, up.output
