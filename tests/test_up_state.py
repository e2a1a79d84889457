"""`ticketwire up` keeps its simulators' state per data directory, and one `up` holds it.

Real `up` processes in one data directory: the second run finds the tickets, tags, API keys and
webhook secrets of the first, a rule written with a simulator's tag id works after the restart
that loads it, `--reset` starts over, a second `up` beside a running one is refused, and `dlq`
finds the running `up`'s Redis. The snapshot format itself is tested in-process below.
"""

from __future__ import annotations

import pickle
import re
import shutil
import signal
import stat
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.localup import LocalUp, find_local_up
from simulator import persist
from simulator.common.clock import ManualClock, iso
from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, ROOT, Proc, free_port, free_ports, spawn

BANNER_END = "Ctrl-C stops everything."
VENDORS = ("inboxops", "cstar", "thena")


class Project:
    """A directory with the shipped rules, a data directory, and the ports one `up` uses."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "project"
        self.data = (tmp_path / "data").resolve()
        shutil.copytree(ROOT / "rules", self.dir / "rules")
        self.port = free_port()
        self.sim_port = free_ports(3)

    async def up(
        self,
        *args: str,
        port: int | None = None,
        sim_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start `ticketwire up` here (not waiting for its banner), `env` added to its own."""
        env = {"PORT": str(port or self.port), "TICKETWIRE_DATA_DIR": str(self.data), **(env or {})}
        argv = [str(BIN / "ticketwire"), "up", "--simulator-port", str(sim_port or self.sim_port)]
        return await spawn([*argv, *args], env, cwd=self.dir)

    async def running(self, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        """Start `ticketwire up` and wait for its banner."""
        proc = await self.up(*args, env=env)
        await proc.wait_output(BANNER_END, timeout=60)
        return proc


def api_keys(output: str) -> list[str]:
    return re.findall(r"API key (\S+)\)", output)


async def ticket_ids(http: aiohttp.ClientSession, info: LocalUp) -> dict[str, list[str]]:
    out = {}
    for vendor in VENDORS:
        async with http.get(f"{info.simulators[vendor]}/_sim/tickets") as r:
            assert r.status == 200, await r.text()
            out[vendor] = [t["id"] for t in (await r.json())["data"]]
    return out


def inboxops_key(output: str) -> str:
    (key,) = [k for k in api_keys(output) if k.startswith("ixk_")]
    return key


def valkey_runs(pid: int) -> bool:
    """Whether `pid` is a live valkey-server (not a pid since reused by another program)."""
    try:
        return b"valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow
async def test_a_restart_keeps_tickets_tags_keys_and_secrets(tmp_path: Path) -> None:
    project = Project(tmp_path)
    state_file = project.data / "simulators" / "inboxops.state"
    first = await project.running()
    try:
        assert "tickets    new (inboxops 3, cstar 3, thena 3)" in first.output
        assert f"secrets    {project.data / 'secrets.env'}" in first.output
        info = find_local_up(project.data)
        assert info is not None and info.pid == first.proc.pid
        assert stat.S_IMODE((project.data / "up.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((project.data / "secrets.env").stat().st_mode) == 0o600
        assert set(info.webhook_secrets) == set(VENDORS) == set(info.simulators)
        for secret in info.webhook_secrets.values():
            assert secret not in first.output
            assert f"={secret}\n" in (project.data / "secrets.env").read_text()
        key = inboxops_key(first.output)
        auth = {"Authorization": f"Bearer {key}"}
        io = info.simulators["inboxops"]
        async with aiohttp.ClientSession() as http:
            before = await ticket_ids(http, info)
            assert all(len(ids) == 3 for ids in before.values())
            async with http.post(
                f"{io}/api/v1/tags", json={"name": "Key account"}, headers=auth
            ) as r:
                assert r.status == 201, await r.text()
                tag_id = (await r.json())["data"]["id"]
        # A rule written with an id from the simulator's API; rules load at start: restart.
        (project.dir / "rules" / "tag_vip.yml").write_text(
            "name: tag-vip\nvendor: inboxops\nevents: [ticket.updated]\n"
            "if: {field: priority, equals: high}\nthen:\n"
            f"  - add_tags: [{tag_id}]\n"
        )
        # Saved within a second of the change: a killed `up` loses at most that.
        await wait_for(lambda: tag_id.encode() in state_file.read_bytes(), message="tag saved")
    finally:
        await first.kill()
    # The killed `up` left its up.json; the lock, not the file, says nothing runs.
    assert (project.data / "up.json").exists()
    assert find_local_up(project.data) is None
    # Its Valkey outlived it, on the data directory's files.
    orphan = int((project.data / "valkey" / "valkey.pid").read_text())
    assert valkey_runs(orphan)

    second = await project.running()
    try:
        # The next `up` stops that Valkey before it starts its own on the same files.
        assert f"stopping the Valkey (pid {orphan}) left by an `up` that was killed" in (
            second.output
        ), second.output
        assert not valkey_runs(orphan)
        assert (
            "tickets    kept from the last run (inboxops 3, cstar 3, thena 3)" in second.output
        ), second.output
        assert api_keys(second.output) == api_keys(first.output)
        again = find_local_up(project.data)
        assert again is not None and again.pid == second.proc.pid
        assert again.webhook_secrets == info.webhook_secrets
        async with aiohttp.ClientSession() as http:
            assert await ticket_ids(http, again) == before
            async with http.post(f"{io}/_sim/tickets/1/change", json={"priority": "high"}) as r:
                assert r.status == 200, await r.text()
            await second.wait_output("rule tag-vip fired")

            async def tagged() -> bool:
                url = f"{io}/api/v1/tickets/1?include=tags"
                async with http.get(url, headers=auth) as r:
                    return [t["id"] for t in (await r.json())["data"]["tags"]] == [tag_id]

            await wait_for(tagged, message="ticket 1 tagged vip")
            # New ids continue the kept sequence: none repeats one from before the restart.
            async with http.post(f"{io}/_sim/tickets", json={"subject": "After"}) as r:
                made = (await r.json())["data"]
            assert made["id"] not in before["inboxops"] and made["ticket_number"] == 4
            # Event ids are new each run: the receiver, whose dedupe window outlives a restart,
            # stores every delivery of this run instead of dropping it as a repeat.
            await second.wait_output("processing inboxops ticket.created event=")
            await second.wait_output(f"ticket={made['id']}")
            assert "duplicate " not in second.output
    finally:
        assert await second.stop(signal.SIGINT) == 0, second.output
    assert not (project.data / "up.json").exists()
    # The stop saved the last change.
    assert made["id"].encode() in state_file.read_bytes()

    third = await project.running("--reset")
    try:
        assert "--reset: starting over in" in third.output
        assert "tickets    new (inboxops 3, cstar 3, thena 3)" in third.output
        assert set(api_keys(third.output)).isdisjoint(api_keys(first.output))
        fresh = find_local_up(project.data)
        assert fresh is not None
        assert set(fresh.webhook_secrets.values()).isdisjoint(info.webhook_secrets.values())
        async with aiohttp.ClientSession() as http:
            now = await ticket_ids(http, fresh)
        for vendor in VENDORS:
            assert set(now[vendor]).isdisjoint(before[vendor])
    finally:
        assert await third.stop(signal.SIGINT) == 0, third.output


@pytest.mark.slow
async def test_webhook_secrets_from_the_environment_win_and_are_not_written(
    tmp_path: Path,
) -> None:
    project = Project(tmp_path)
    env = {
        "PORT": str(project.port),
        "TICKETWIRE_DATA_DIR": str(project.data),
        "CSTAR_WEBHOOK_SECRETS": "whsec_from_the_environment",
    }
    argv = [str(BIN / "ticketwire"), "up", "--simulator-port", str(project.sim_port)]
    up = await spawn(argv, env, cwd=project.dir)
    try:
        await up.wait_output(BANNER_END, timeout=60)
        info = find_local_up(project.data)
        assert info is not None
        assert info.webhook_secrets["cstar"] == "whsec_from_the_environment"
        written = (project.data / "secrets.env").read_text()
        assert "CSTAR_WEBHOOK_SECRETS" not in written
        assert f"INBOXOPS_WEBHOOK_SECRETS={info.webhook_secrets['inboxops']}" in written
        # The simulator signs with it: the receiver accepts its deliveries.
        await up.wait_output("stored cstar event=")
    finally:
        assert await up.stop(signal.SIGINT) == 0, up.output


@pytest.mark.slow
async def test_a_second_up_in_the_data_directory_is_refused(tmp_path: Path) -> None:
    project = Project(tmp_path)
    first = await project.running()
    try:
        second = await project.up(port=free_port(), sim_port=free_ports(3))
        assert await second.finish() == 2, second.output
        assert (
            f"another `ticketwire up` is already running in {project.data} "
            f"(pid {first.proc.pid}, receiver http://127.0.0.1:{project.port}/webhooks)"
        ) in second.output
        assert "Traceback" not in second.output
        # The first one goes on, alone.
        info = find_local_up(project.data)
        assert info is not None and info.pid == first.proc.pid

        # `dlq` without REDIS_URL uses the running up's Redis.
        env = {"TICKETWIRE_DATA_DIR": str(project.data)}
        dlq = await spawn([str(BIN / "ticketwire"), "dlq", "list"], env, cwd=project.dir)
        assert await dlq.finish() == 0, dlq.output
        assert f"using the Redis of the `ticketwire up` running in {project.data}" in dlq.output
        assert "no dead letters" in dlq.output
    finally:
        assert await first.stop(signal.SIGINT) == 0, first.output
    dlq = await spawn([str(BIN / "ticketwire"), "dlq", "list"], env, cwd=project.dir)
    assert await dlq.finish() == 2
    assert "set REDIS_URL" in dlq.output and f"no `ticketwire up` runs in {project.data}" in (
        dlq.output
    )


@pytest.mark.slow
async def test_reminders_kept_in_the_state_fire_on_time_without_a_request(tmp_path: Path) -> None:
    project = Project(tmp_path)
    # The InboxOps state a stopped `up` left: two tickets waiting on the customer, one whose
    # reminder fell due while `up` was stopped, one whose reminder falls due soon after it starts.
    kept = InboxOpsSimulator(SimulatorConfig(seed=21), clock=ManualClock())
    soon = datetime.now(UTC) + timedelta(seconds=3)
    overdue = kept.create_ticket(
        subject="Due while stopped", status="waiting", remind_at="2025-01-06T10:00:00Z"
    )
    later = kept.create_ticket(subject="Due after start", status="waiting", remind_at=iso(soon))
    persist.write_atomic(project.data / "simulators" / "inboxops.state", persist.dump(kept))

    up = await project.running()
    try:
        # Nothing asks the InboxOps simulator anything until both reminders have fired.
        for ticket in (overdue, later):
            await up.wait_output(f"reminder of ticket {ticket['ticket_number']} fell due", 30)
        info = find_local_up(project.data)
        assert info is not None
        io = info.simulators["inboxops"]
        async with aiohttp.ClientSession() as http:

            async def delivered() -> set[str]:
                async with http.get(f"{io}/_sim/deliveries") as r:
                    log = (await r.json())["data"]
                return {d["ticket_id"] for d in log if d["succeeded"]}

            # Their webhooks reached the receiver: the rules saw the reminders.
            await wait_for(
                lambda: _has(delivered(), {overdue["id"], later["id"]}), message="delivered"
            )
            async with http.get(f"{io}/_sim/tickets") as r:
                statuses = {t["id"]: t["status"] for t in (await r.json())["data"]}
        assert statuses[overdue["id"]] == statuses[later["id"]] == "open"
    finally:
        assert await up.stop(signal.SIGINT) == 0, up.output


async def _has(found: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await found


async def test_an_unreadable_snapshot_stops_up_with_how_to_start_over(tmp_path: Path) -> None:
    project = Project(tmp_path)
    state = project.data / "simulators" / "cstar.state"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a snapshot")
    up = await project.up()
    assert await up.finish() == 2, up.output
    assert f"cannot use the simulator state in {state}" in up.output
    assert "`ticketwire up --reset`" in up.output
    assert "Traceback" not in up.output
    # Nothing else was written or started: no secrets, no lock holder left.
    assert not (project.data / "secrets.env").exists()
    assert find_local_up(project.data) is None


async def test_up_without_rules_says_to_run_init(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"TICKETWIRE_DATA_DIR": str(tmp_path / "data")}
    up = await spawn([str(BIN / "ticketwire"), "up"], env, cwd=empty)
    assert await up.finish() == 1
    assert "no rules directory rules/ here" in up.output
    assert "`ticketwire init`" in up.output


@pytest.mark.parametrize("argv", [["check"], ["check", "elsewhere"]], ids=["default", "given"])
async def test_check_without_rules_says_to_run_init_as_up_does(
    tmp_path: Path, argv: list[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    check = await spawn([str(BIN / "ticketwire"), *argv], {}, cwd=empty)
    assert await check.finish() == 1
    missing = argv[1] if len(argv) > 1 else "rules"
    assert check.output == (
        f"ticketwire check: no rules directory {missing}/ here ({empty}). Run `ticketwire init` "
        "to start a project with example rules, or point TICKETWIRE_RULES at your rules.\n"
    )


# ------------------------------------------------------------------------- snapshots in-process

SIMULATORS: list[tuple[Any, Any, dict[str, Any]]] = [
    (InboxOpsSimulator, SimulatorConfig, {"subject": "Printer on fire"}),
    (CStarSimulator, CStarSimulatorConfig, {"title": "Printer on fire"}),
    (
        ThenaSimulator,
        ThenaSimulatorConfig,
        {"title": "Printer on fire", "requestorEmail": "a@b.io"},
    ),
]


@pytest.mark.parametrize(("cls", "config", "fields"), SIMULATORS, ids=lambda x: "")
def test_a_snapshot_brings_back_the_whole_store(
    tmp_path: Path, cls: Any, config: Any, fields: dict[str, Any]
) -> None:
    sim = cls(config(seed=7, event_seed=1))
    made = [sim.create_ticket(**fields)["id"] for _ in range(3)]
    path = tmp_path / "sim.state"
    persist.write_atomic(path, persist.dump(sim))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    snap = persist.read(path, persist.kind_of(cls))
    assert snap is not None and snap.seed == 7
    again = cls(config(seed=snap.seed, event_seed=2))
    persist.restore(again, snap)
    assert [t["id"] for t in again.tickets()] == made
    assert again.api_key == sim.api_key
    # The store runs on the new simulator's clock, and its id sequence goes on where it was.
    assert again.store._now.__self__ is again.clock
    later = again.create_ticket(**fields)["id"]
    assert later == sim.create_ticket(**fields)["id"]
    assert later not in made


class _WiredStore:
    """A store as the simulators build one: data, plus functions the simulator gives it."""

    def __init__(self, now: Callable[[], Any], keep: Callable[[], bool]) -> None:
        self._now = now
        self._keep = keep
        self.tickets: list[str] = []


class _WiringSimulator:
    def __init__(self, seed: int, keep: bool) -> None:
        self.seed = seed
        self.keep = keep
        self.clock = ManualClock()
        self.store = _WiredStore(self.clock.now, lambda: self.keep)


def test_what_the_simulator_wires_a_store_with_comes_from_the_new_run(tmp_path: Path) -> None:
    old = _WiringSimulator(seed=1, keep=False)
    old.store.tickets.append("T-1")
    persist.write_atomic(tmp_path / "sim.state", persist.dump(old))
    snap = persist.read(tmp_path / "sim.state", persist.kind_of(_WiringSimulator))
    assert snap is not None
    new = _WiringSimulator(seed=1, keep=True)
    persist.restore(new, snap)
    assert new.store.tickets == ["T-1"]
    # The callback (a closure over the simulator) and the clock are the new run's.
    assert new.store._keep() is True
    assert new.store._now.__self__ is new.clock


def test_a_fresh_event_seed_gives_new_event_ids_over_the_same_store() -> None:
    one = InboxOpsSimulator(SimulatorConfig(seed=3, event_seed=1))
    two = InboxOpsSimulator(SimulatorConfig(seed=3, event_seed=2))
    assert one.api_key == two.api_key
    assert one._event_ids.uuid() != two._event_ids.uuid()
    # Without one, event ids follow the seed as before.
    same = InboxOpsSimulator(SimulatorConfig(seed=3))
    assert same._event_ids.uuid() == InboxOpsSimulator(SimulatorConfig(seed=3))._event_ids.uuid()


def test_a_snapshot_of_another_shape_is_refused(tmp_path: Path) -> None:
    sim = InboxOpsSimulator(SimulatorConfig(seed=7))
    sim.create_ticket(subject="x")
    path = tmp_path / "sim.state"
    persist.write_atomic(path, persist.dump(sim))
    snap = persist.read(path, persist.kind_of(InboxOpsSimulator))
    assert snap is not None
    # As written by a version whose tickets had no `tags` field and whose store had no `keys`.
    shapes = dict(snap.shapes)
    record = "simulator.inboxops.models.TicketRecord"
    shapes[record] = tuple(f for f in shapes[record] if f != "tags")
    store = "simulator.inboxops.store.Store"
    shapes[store] = tuple(a for a in shapes[store] if a != "keys")
    old = persist.Snapshot(snap.seed, snap.kind, snap.store, shapes)
    with pytest.raises(persist.StateError) as err:
        persist.restore(InboxOpsSimulator(SimulatorConfig(seed=7)), old)
    assert "written by another version of ticketwire" in str(err.value)
    assert "TicketRecord: +tags" in str(err.value) and "Store: +keys" in str(err.value)


def test_another_format_or_simulator_is_refused(tmp_path: Path) -> None:
    sim = CStarSimulator(CStarSimulatorConfig(seed=7))
    path = tmp_path / "sim.state"
    persist.write_atomic(path, persist.dump(sim))
    with pytest.raises(persist.StateError, match="holds a 'simulator.cstar.sim.CStarSimulator'"):
        persist.read(path, persist.kind_of(ThenaSimulator))
    head = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps({**head, "format": 0}))
    with pytest.raises(persist.StateError, match="written in format 0, this version reads"):
        persist.read(path, persist.kind_of(CStarSimulator))
    # The envelope never builds objects: a class reference in it is refused, not imported.
    path.write_bytes(pickle.dumps({"format": persist.FORMAT, "x": Path("/")}))
    with pytest.raises(persist.StateError, match="is not a simulator snapshot"):
        persist.read(path, persist.kind_of(CStarSimulator))
    assert persist.read(tmp_path / "missing.state", persist.kind_of(CStarSimulator)) is None


@pytest.mark.slow
async def test_up_serves_every_account_of_the_accounts_file(tmp_path: Path) -> None:
    project = Project(tmp_path)
    # Three simulators for the default accounts, then one for each named account.
    project.sim_port = free_ports(5)
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        '[inboxops.brand-a]\nwebhook_secrets = {env = "BRAND_A_SECRET"}\nrate_limit = "50/min"\n'
        "\n[cstar.eu]\n"
    )
    env = {"TICKETWIRE_ACCOUNTS": str(accounts), "BRAND_A_SECRET": "whsec_brand_a_up"}
    up = await project.running(env=env)
    try:
        base = f"http://127.0.0.1:{project.port}/webhooks"
        for route in ("inboxops", "inboxops/brand-a", "cstar", "cstar/eu", "thena"):
            assert f"webhooks {base}/{route}\n" in up.output
        assert "tickets    new (inboxops 3, cstar 3, thena 3, inboxops@brand-a 3, cstar@eu 3)" in (
            up.output
        )
        info = find_local_up(project.data)
        assert info is not None
        assert set(info.account_simulators) == {"inboxops@brand-a", "cstar@eu"}
        brand_a, default = info.account_simulators["inboxops@brand-a"], info.simulators["inboxops"]
        assert brand_a == f"http://127.0.0.1:{project.sim_port + 3}"
        # The file's secret is the account's; an account without one gets one kept for it.
        assert info.account_secrets["inboxops@brand-a"] == "whsec_brand_a_up"
        written = (project.data / "secrets.env").read_text()
        assert f"CSTAR_EU_WEBHOOK_SECRETS={info.account_secrets['cstar@eu']}\n" in written
        assert "whsec_brand_a_up" not in written + up.output

        # The printed example of brand-a works as pasted: the rule acts in brand-a's workspace.
        [command] = re.findall(
            r"# InboxOps account brand-a: .*\n  (curl .*)\n", up.output.replace("\r", "")
        )
        assert brand_a in command
        curl = await spawn(["sh", "-c", command], {})
        assert await curl.finish() == 0, curl.output
        ticket = re.search(r"/_sim/tickets/(\d+)/change", command)
        assert ticket is not None
        async with aiohttp.ClientSession() as http:

            async def assignee(sim: str) -> Any:
                async with http.get(f"{sim}/_sim/tickets") as r:
                    tickets = (await r.json())["data"]
                [t] = [t for t in tickets if str(t["ticket_number"]) == ticket[1]]
                return t["assignee_id"]

            await wait_for(lambda: assignee(brand_a), message="brand-a's ticket routed")
            assert await assignee(default) is None
        await up.wait_output("received inboxops/brand-a ticket.updated")

        # `fire` reaches a named account of this `up` with no file of its own.
        fire = await spawn(
            [str(BIN / "ticketwire"), "fire", "cstar", "--account", "eu", "--ticket", "t1"],
            {"TICKETWIRE_DATA_DIR": str(project.data)},
            cwd=project.dir,
        )
        assert await fire.finish() == 0, fire.output
        assert f"→ {base}/cstar/eu (signed with the local `ticketwire up`'s cstar account eu" in (
            fire.output
        )
        await up.wait_output("stored cstar/eu event=")
    finally:
        assert await up.stop(signal.SIGINT) == 0, up.output
    assert (project.data / "simulators" / "inboxops@brand-a.state").is_file()
