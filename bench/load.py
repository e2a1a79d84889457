"""Drive the load generator: wrk with `wrk_post.lua` when wrk is installed, else `bench.loadgen`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from bench.procs import BenchError, Proc, Procs

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"
Tool = Literal["wrk", "aiohttp"]


@dataclass(frozen=True)
class LoadResult:
    """What one load run saw: answers by kind, and latency percentiles of every answer."""

    tool: str
    duration_s: float
    requests: int
    accepted: int
    duplicates: int
    other: int
    errors: int
    wraps: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def accepted_per_s(self) -> float:
        """202 answers per second."""
        return self.accepted / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def answered_per_s(self) -> float:
        """All answers per second (for servers that answer every request the same way)."""
        return (self.requests - self.errors) / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields, plus the rates."""
        return {
            **asdict(self),
            "accepted_per_s": self.accepted_per_s,
            "answered_per_s": self.answered_per_s,
        }


class Options(TypedDict, total=False):
    """How a load is offered: connections, a paced rate (0: flat out), the signature header."""

    conns: int
    rate: float
    sig_header: str


@dataclass(frozen=True)
class Loading:
    """A running load and where the aiohttp generator writes its result (None: wrk prints it)."""

    proc: Proc
    duration: int
    out: Path | None


@dataclass(frozen=True)
class Sending:
    """A running `bench.loadgen --once` and where it writes its result."""

    proc: Proc
    out: Path
    count: int
    rate: float


@dataclass(frozen=True)
class SentOnce:
    """What a `--once` run saw, plus the wall-clock times its first and last delivery left."""

    result: LoadResult
    first_sent_at: float
    last_sent_at: float


def pick_tool(choice: str) -> Tool:
    """`auto` means wrk if it is on PATH, else the aiohttp generator."""
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        if not shutil.which("wrk"):
            raise BenchError("--loadgen wrk: wrk is not on PATH (Debian: apt-get install -y wrk)")
        return "wrk"
    return "aiohttp"


def tool_version(tool: Tool) -> str:
    """Version line of the generator."""
    if tool == "aiohttp":
        from importlib.metadata import version

        return f"bench.loadgen on aiohttp {version('aiohttp')}"
    out = subprocess.run(
        ["wrk", "--version"], check=False, capture_output=True, text=True, timeout=10
    )
    first = (out.stdout or out.stderr).splitlines()[0]
    return first.split(" Copyright")[0].strip()


class LoadGen:
    """Run one load against a URL and collect the result; the generator runs as a child."""

    def __init__(self, tool: Tool, procs: Procs, workdir: Path) -> None:
        self.tool = tool
        self.procs = procs
        self.workdir = workdir
        self._runs = 0

    def run(self, url: str, bodies: Path, duration: int, **options: Unpack[Options]) -> LoadResult:
        """Load `url` for `duration` seconds, flat out or paced at `rate`/s (see `start`)."""
        return self.finish(self.start(url, bodies, duration, **options))

    def start(self, url: str, bodies: Path, duration: int, **options: Unpack[Options]) -> Loading:
        """Start a load without waiting for it; `finish` waits and reads its result.

        Flat out, or paced at `rate`/s; each line's signature is sent in the header `sig_header`.
        """
        conns = options.get("conns", 64)
        rate = options.get("rate", 0.0)
        sig_header = options.get("sig_header", "X-InboxOps-Signature")
        self._runs += 1
        env = {"BENCH_SIG_HEADER": sig_header}
        if self.tool == "wrk":
            argv = [
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_SCRIPT),
                url,
            ]
            env.update(BENCH_BODIES=str(bodies), BENCH_RATE=str(rate), BENCH_CONNS=str(conns))
            return Loading(self.procs.start("wrk", argv, env), duration, None)
        out = self.workdir / f"loadgen-{self._runs}.json"
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            url,
            "--bodies",
            str(bodies),
            "--duration",
            str(duration),
            "--conns",
            str(conns),
            "--rate",
            str(rate),
            "--out",
            str(out),
        ]
        return Loading(self.procs.start("loadgen", argv, env), duration, out)

    def finish(self, loading: Loading) -> LoadResult:
        """Wait for a load started by `start` to end and read what it saw."""
        proc, limit = loading.proc, loading.duration + 60
        try:
            code = proc.popen.wait(limit)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            raise BenchError(f"{proc.name} did not finish within {limit}s") from None
        self.procs.stop(proc)
        output = proc.log.read_text(errors="replace")
        if code != 0:
            raise BenchError(f"{proc.name} failed with status {code}:\n{output[-2000:]}")
        if loading.out is not None:
            data = json.loads(loading.out.read_text())
            loading.out.unlink()
            return LoadResult(**data)
        return _wrk_result(output)

    def start_once(
        self,
        url: str,
        bodies: Path,
        count: int,
        rate: float,
        *,
        sig_header: str = "X-InboxOps-Signature",
    ) -> Sending:
        """Start sending every line of `bodies` once, evenly at `rate`/s; do not wait.

        Always the aiohttp generator: wrk has no exact-count, evenly spaced open loop.
        """
        self._runs += 1
        out = self.workdir / f"loadgen-once-{self._runs}.json"
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            url,
            "--bodies",
            str(bodies),
            "--once",
            "--rate",
            str(rate),
            "--out",
            str(out),
        ]
        proc = self.procs.start("loadgen-once", argv, {"BENCH_SIG_HEADER": sig_header})
        return Sending(proc, out, count, rate)

    def finish_once(self, sending: Sending) -> SentOnce:
        """Wait for a `--once` run to end (well past its nominal length) and read its result."""
        limit = sending.count / sending.rate + 60
        try:
            code = sending.proc.popen.wait(limit)
        except subprocess.TimeoutExpired:
            self.procs.stop(sending.proc)
            raise BenchError(f"loadgen --once did not finish within {limit:.0f}s") from None
        self.procs.stop(sending.proc)
        if code != 0:
            output = sending.proc.log.read_text(errors="replace")
            raise BenchError(f"loadgen --once failed with status {code}:\n{output[-2000:]}")
        data = json.loads(sending.out.read_text())
        sending.out.unlink()
        first, last = float(data.pop("first_sent_at")), float(data.pop("last_sent_at"))
        return SentOnce(LoadResult(**data), first, last)


def _wrk_result(output: str) -> LoadResult:
    """The `BENCH name value` lines `wrk_post.lua` prints, as a result."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "BENCH":
            values[parts[1]] = float(parts[2])
    if "requests" not in values:
        raise BenchError(f"wrk printed no result:\n{output[-2000:]}")
    return LoadResult(
        tool="wrk",
        duration_s=values["duration_us"] / 1e6,
        requests=int(values["requests"]),
        accepted=int(values["accepted"]),
        duplicates=int(values["duplicates"]),
        other=int(values["other"]),
        errors=int(values["errors"]),
        wraps=int(values["wraps"]),
        p50_ms=values["p50_us"] / 1000,
        p90_ms=values["p90_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        p999_ms=values["p99.9_us"] / 1000,
        max_ms=values["max_us"] / 1000,
    )
