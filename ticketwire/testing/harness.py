"""A whole ticketwire on loopback for testing rules: simulators, receiver and one worker.

The helpdesk simulators deliver real signed webhooks to a real receiver, which stores them in a
real Redis; one worker in this event loop runs the rules and writes back through the
simulators' APIs. A test changes a ticket as an agent would and waits for the effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from redis.asyncio import Redis

from receiver.app import create_app, vendor_intakes
from ticketwire.config import Settings
from ticketwire.engine import Router, check_rules
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from ticketwire.streams import handled
from ticketwire.vendors.cstar.settings import CStarSettings
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.registry import VENDORS, bundle
from ticketwire.vendors.thena.settings import ThenaSettings
from workers.arqhost import in_process_worker

#: The simulators' seed unless a test gives one: the same seeded tickets and ids in every run, so
#: a test that passes once passes always (a fresh seed each run made a seeded ticket's fields,
#: and so what a change of it does, vary between runs).
SEED = 0
#: Log records kept to show when an expected effect does not come.
LOG_TAIL = 60
#: The logger whose records tell what ticketwire did (receiver, worker and rules log under it).
_LOGGER = "ticketwire"

Expected = Mapping[str, Any] | Callable[[dict[str, Any]], Any]


class RulesError(Exception):
    """The rules directory does not load; the message lists every error."""


class _Tail(logging.Handler):
    """Keeps the last records of ticketwire's loggers, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=LOG_TAIL)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Harness:
    """ticketwire running against the bundled simulators, for tests of rules.

    `change(vendor, ticket_id, **fields)` edits a ticket in a simulator as an agent would (the
    simulator then delivers its webhook to the receiver), and `await effect(vendor, ticket_id,
    expected)` waits until the simulator's ticket shows what the rules should have done.
    """

    def __init__(
        self,
        rules_dir: Path,
        redis_url: str,
        *,
        vendors: Iterable[str] = VENDORS,
        seed_tickets: int = 3,
        seed: int = SEED,
        key_prefix: str | None = None,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.vendors = tuple(vendors)
        for vendor in self.vendors:
            if vendor not in VENDORS:
                raise ValueError(f"unknown helpdesk {vendor!r}; one of {', '.join(VENDORS)}")
        self.seed_tickets = seed_tickets
        self.seed = seed
        self.keys = Keys(key_prefix or f"twtest:{uuid.uuid4().hex[:12]}:")
        self._redis_url = redis_url
        self.sims: dict[str, Any] = {}
        self.router: Router | None = None
        self.settings: Settings | None = None
        self.receiver_url = ""
        self._stack = contextlib.AsyncExitStack()
        self._tail = _Tail()
        self._redis: Redis | None = None
        #: (vendor, ticket id) → the fields of its last change when that change sent no webhook.
        self._silent: dict[tuple[str, str], dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"Harness(rules={str(self.rules_dir)!r}, vendors={list(self.vendors)})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load the rules, start the simulators, receiver and worker; seed tickets; settle."""
        router, errors = check_rules(self.rules_dir)
        if errors or router is None:
            listing = "\n".join(f"  {e}" for e in errors)
            raise RulesError(f"{len(errors)} error(s) in {self.rules_dir}:\n{listing}")
        self.router = router
        logger = logging.getLogger(_LOGGER)
        logger.addHandler(self._tail)
        self._stack.callback(logger.removeHandler, self._tail)
        if logger.getEffectiveLevel() > logging.INFO:
            # What each rule decided is logged at INFO: keep it for the failure report.
            self._stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.INFO)
        await self._start_simulators()
        settings = self._settings()
        self._redis = connect(self._redis_url)
        self._stack.push_async_callback(self._drop_keys)
        app = create_app(settings, self._redis, vendor_intakes(settings))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.receiver_url = f"http://127.0.0.1:{port}/webhooks"
        self.settings = dataclasses.replace(settings, port=port)
        await self._start_worker(self.settings, router)
        for vendor, sim in self.sims.items():
            secrets_of = bundle(vendor).webhook_secrets(settings.vendor(vendor))
            sim.add_endpoint(f"{self.receiver_url}/{vendor}", secrets_of[0].reveal())
            sim.seed_tickets(self.seed_tickets)
        await self.settle()

    async def stop(self) -> None:
        """Stop everything started, newest first; delete this harness's Redis keys."""
        await self._stack.aclose()

    async def _start_simulators(self) -> None:
        from simulator.cstar import CStarSimulator, CStarSimulatorConfig
        from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
        from simulator.thena import ThenaSimulator, ThenaSimulatorConfig

        seed = self.seed
        for vendor in self.vendors:
            sim: InboxOpsSimulator | CStarSimulator | ThenaSimulator
            if vendor == "inboxops":
                sim = InboxOpsSimulator(SimulatorConfig(seed=seed))
            elif vendor == "cstar":
                sim = CStarSimulator(CStarSimulatorConfig(seed=seed))
            else:
                sim = ThenaSimulator(ThenaSimulatorConfig(seed=seed))
            await sim.start(host="127.0.0.1", port=0)
            self._stack.push_async_callback(sim.stop)
            self.sims[vendor] = sim

    def _settings(self) -> Settings:
        def secret() -> tuple[Secret, ...]:
            return (Secret("whsec_" + secrets.token_hex(16)),)

        io, cs, th = (self.sims.get(v) for v in VENDORS)
        return Settings(
            redis_url=self._redis_url,
            rules_dir=self.rules_dir,
            key_prefix=self.keys.prefix,
            partitions=4,
            lease_ttl_s=2.0,
            http_timeout_s=5.0,
            backoff_s=0.05,
            max_attempts=3,
            # Tests wait for write-backs: send them nearly at once, still coalesced.
            coalesce_window_s=0.05,
            vendors={
                "inboxops": InboxOpsSettings(
                    webhook_secrets=secret(), api_url=io.url, api_key=Secret(io.api_key)
                )
                if io
                else InboxOpsSettings(),
                "cstar": CStarSettings(
                    webhook_secrets=secret(),
                    api_url=cs.url,
                    team_id=cs.team_id,
                    api_key=Secret(cs.api_key),
                )
                if cs
                else CStarSettings(),
                "thena": ThenaSettings(
                    webhook_secrets=secret(), api_url=th.url, api_key=Secret(th.api_key)
                )
                if th
                else ThenaSettings(),
            },
        )

    async def _start_worker(self, settings: Settings, router: Router) -> None:
        await self._stack.enter_async_context(
            in_process_worker(settings, router, started_within=10.0, poll_delay=0.05)
        )

    async def _drop_keys(self) -> None:
        if self._redis is None:
            return
        async for key in self._redis.scan_iter(match=f"{self.keys.prefix}*", count=1000):
            await self._redis.delete(key)
        await self._redis.aclose()

    # ------------------------------------------------------------------ tickets

    def simulator(self, vendor: str) -> Any:
        """The running simulator of `vendor` (its `url`, `journal`, `deliveries`, …)."""
        try:
            return self.sims[vendor]
        except KeyError:
            raise ValueError(
                f"no {vendor} simulator in this harness (running: {', '.join(self.sims)})"
            ) from None

    def tickets(self, vendor: str) -> list[dict[str, Any]]:
        """Every ticket of `vendor`'s simulator, oldest first (the seeded ones to begin with)."""
        return list(self.simulator(vendor).tickets())

    def ticket(self, vendor: str, ticket_id: str | int) -> dict[str, Any]:
        """One ticket as the helpdesk's API shows it now."""
        return dict(self.simulator(vendor).ticket(ticket_id))

    def create(self, vendor: str, **fields: Any) -> dict[str, Any]:
        """Create a ticket as an agent would; its `ticket.created` webhook goes to the receiver."""
        return dict(self.simulator(vendor).create_ticket(**fields))

    def change(self, vendor: str, ticket_id: str | int, **fields: Any) -> dict[str, Any]:
        """Edit a ticket as an agent would (the helpdesk's own field names); it sends webhooks.

        An edit that changes nothing sends none, as the helpdesk does; `effect` then says so.
        """
        sim = self.simulator(vendor)
        # The emitter counts a queued delivery at once, so an unchanged count means no webhook.
        queued = sim.emitter.pending
        ticket = dict(sim.change_ticket(ticket_id, **fields))
        key = (vendor, str(ticket_id))
        if sim.emitter.pending == queued:
            self._silent[key] = fields
        else:
            self._silent.pop(key, None)
        return ticket

    # ------------------------------------------------------------------ waiting

    async def effect(
        self,
        vendor: str,
        ticket_id: str | int,
        expected: Expected,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a test helper's deadline is its job
    ) -> dict[str, Any]:
        """Wait until the ticket matches `expected` (field values, or a predicate); return it.

        On timeout, fail with the ticket as it is, the simulator's recent API calls and
        deliveries, and ticketwire's recent log lines.
        """
        deadline = time.monotonic() + timeout
        while True:
            ticket = self.ticket(vendor, ticket_id)
            if _matches(ticket, expected):
                return ticket
            if time.monotonic() > deadline:
                raise AssertionError(self._report(vendor, ticket_id, ticket, expected, timeout))
            # The poll of a condition wait bounded by the deadline above.
            await asyncio.sleep(0.02)

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - see effect()
        """Wait until every webhook is delivered and handled and every write-back is sent."""
        deadline = time.monotonic() + timeout
        while True:
            # The write-backs of handled events make new webhooks: quiet means all at once.
            if await self._quiet():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ticketwire did not settle within {timeout}s")
            # The poll of a condition wait bounded by the deadline above.
            await asyncio.sleep(0.02)

    async def _quiet(self) -> bool:
        assert self._redis is not None and self.settings is not None
        if any(sim.emitter.pending for sim in self.sims.values()):
            return False
        if await self._redis.zcard(self.keys.wb_due):
            return False
        return await handled(self._redis, self.keys, self.settings.partitions)

    def _report(
        self, vendor: str, ticket_id: str | int, ticket: dict[str, Any], want: Expected, t: float
    ) -> str:
        sim = self.simulator(vendor)
        wanted = (
            json.dumps(dict(want), sort_keys=True, default=str)
            if isinstance(want, Mapping)
            else getattr(want, "__name__", repr(want))
        )
        calls = [
            f"  {e.method} {e.path} {json.dumps(e.body, default=str) if e.body else ''}"
            f" → {e.status}"
            for e in sim.journal[-15:]
        ]
        sent = [
            f"  {d.event} {d.event_id} → {d.status or d.error}"
            for d in sim.deliveries
            if d.ticket_id == str(ticket_id)
        ][-10:]
        # This ticket's lines when there are any: the seeded tickets' are noise here.
        mine = [line for line in self._tail.lines if str(ticket_id) in line]
        silent = self._silent.get((vendor, str(ticket_id)))
        if silent is not None:
            edit = ", ".join(f"{k}={v!r}" for k, v in silent.items())
            sent.append(
                f"  (none for the last change({edit}): the ticket had those values already,"
                " so the helpdesk sent no webhook)"
            )
        return "\n".join(
            [
                f"{vendor} ticket {ticket_id} did not match {wanted} within {t}s; it is now:",
                json.dumps(ticket, indent=2, sort_keys=True, default=str),
                f"last API calls the {vendor} simulator received:",
                *(calls or ["  (none)"]),
                f"last webhooks of this ticket the {vendor} simulator delivered:",
                *(sent or ["  (none)"]),
                "ticketwire's log:",
                *(f"  {line}" for line in (mine or self._tail.lines)),
            ]
        )


def _matches(ticket: Mapping[str, Any], expected: Expected) -> bool:
    if isinstance(expected, Mapping):
        return all(_value(ticket, k) == v for k, v in expected.items())
    return bool(expected(dict(ticket)))


def _value(ticket: Mapping[str, Any], path: str) -> Any:
    """`a.b` reads `b` inside `a`; a missing key reads as a marker equal to nothing."""
    here: Any = ticket
    for part in path.split("."):
        if not isinstance(here, Mapping) or part not in here:
            return _MISSING
        here = here[part]
    return here


_MISSING = object()
