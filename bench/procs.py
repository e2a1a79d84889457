"""Start and stop the processes a benchmark needs; read their CPU time and RSS from /proc.

Every child gets its own session (so Ctrl-C reaches only the benchmark, which then stops them in
order), and the kernel kills it if the benchmark itself is killed before it could clean up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A benchmark could not run (a process failed to start, a wait ran out)."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: no orphans even if the benchmark is SIGKILLed.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (`/proc/<pid>/stat` utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (`/proc/<pid>/statm`)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def command(name: str) -> list[str]:
    """argv prefix for a console script of this environment (`arq`, `ticketwire`)."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", {"ticketwire": "cli"}.get(name, name)]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without ticketwire's variables, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKETWIRE_", "INBOXOPS_", "BENCH_")) and k != "REDIS_URL"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """One running child, its output going to a log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    @property
    def alive(self) -> bool:
        """True while the child has not exited."""
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines of the child's output."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        """Why the child is gone, with its last output, for an error message."""
        return f"{self.name} exited with status {self.popen.returncode}:\n{self.tail()}"


class Procs:
    """Children started for one benchmark; all of them are stopped on exit, whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: list[Proc] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path = ROOT,
    ) -> Proc:
        """Start `argv` with `env` (on top of a clean environment); output to a log file."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}-{len(self._procs)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=child_env(env or {}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The benchmark starts children from its only thread, where preexec_fn is safe.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc, *, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Ask `proc` to stop, wait up to `timeout`, then kill it; return its exit status."""
        if proc.alive:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.popen.returncode

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for proc in reversed(list(self._procs)):
            self.stop(proc, timeout=10.0)


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, watch: Sequence[Proc] = ()
) -> None:
    """Poll `check` until true; fail early if a watched process exits, late after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in watch:
            if not proc.alive:
                raise BenchError(f"waiting for {what}: {proc.describe_exit()}")
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.tail()}" for p in watch)
            raise BenchError(f"gave up after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    """True if `GET url` answers 2xx within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    """True if something accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False
