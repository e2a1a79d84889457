"""Run ticketwire's own commands as subprocesses and watch their output without sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests import secretscan
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _ephemeral() -> range:
    """The ports the kernel hands out to outgoing connections and to `bind(0)`."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(int(low), int(high) + 1)


# A port taken by `bind(0)` and let go is in the range every outgoing connection (to Redis, to a
# simulator) draws from, so a subprocess told to listen on it can find it taken meanwhile. Ports
# below that range are given to no connection, only to whoever binds them by number.
_EPHEMERAL = _ephemeral()
_CHOICE = range(20000, min(_EPHEMERAL.start, 32768)) if _EPHEMERAL.start > 20100 else None


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1, outside the ephemeral range."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive TCP ports that were all free a moment ago."""
    for _ in range(100):
        if _CHOICE is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                first = int(s.getsockname()[1])
        else:
            first = random.randrange(_CHOICE.start, _CHOICE.stop - count)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports found")


class Proc:
    """A running command whose combined output is collected as it arrives."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output += line.decode(errors="replace")

    async def wait_output(self, text: str, timeout: float = 20.0) -> None:
        """Wait until `text` appears in the output (fail if the process exits first)."""
        await wait_for(
            lambda: text in self.output or self.proc.returncode is not None,
            timeout=timeout,
            message=f"{text!r} in output:\n{self.output}",
        )
        assert text in self.output, f"exited {self.proc.returncode} before {text!r}:\n{self.output}"

    async def finish(self, timeout: float = 20.0) -> int:
        """Wait for exit and the last output; past `timeout`, kill it and fail with its output."""
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
                await self._reader
        except TimeoutError:
            # Killed, so a hung process fails this test alone and leaves nothing to later ones.
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"still running {timeout:.0f}s later; killed. Its output:\n{self.output}"
            ) from None
        return code

    async def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.finish(timeout)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.finish()


async def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT) -> Proc:
    """Start `argv` (a command from the venv's bin, or a path) with `env` on top of a clean one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETWIRE_", "INBOXOPS_"))}
    base.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**base, "PYTHONUNBUFFERED": "1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    secretscan.given(env)
    running = Proc(proc)
    secretscan.spawned(" ".join(str(a) for a in argv)[:120], running)
    return running
