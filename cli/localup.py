"""The running `ticketwire up` of a data directory: a lock that says one runs, and how to reach it.

`up` holds an exclusive lock on `<data dir>/up.lock` for as long as it runs and writes
`<data dir>/up.json` (mode 0600: it holds the local webhook secrets) once it listens. Other
commands (`replay`, `fire`, `dlq`, `capture`, `rules`) read it to reach that `up` without flags. The lock,
not the file, says whether an `up` runs: a file left by a killed `up` is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Self

LOCK_NAME = "up.lock"
INFO_NAME = "up.json"


@dataclass(frozen=True)
class LocalUp:
    """Where a running `up` listens and what it signs with."""

    data_dir: str
    pid: int
    #: The receiver's webhook base, e.g. `http://127.0.0.1:8000/webhooks`.
    receiver_url: str
    redis_url: str
    #: Vendor name → the webhook secret (or Thena token) the receiver accepts.
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    #: Vendor name → the bundled simulator's base URL (empty when real helpdesks are configured).
    simulators: dict[str, str] = field(default_factory=dict)
    #: Named accounts (`vendor@account`) → the webhook secret their route accepts.
    account_secrets: dict[str, str] = field(default_factory=dict)
    #: Named accounts (`vendor@account`) → their own bundled simulator's base URL.
    account_simulators: dict[str, str] = field(default_factory=dict)
    #: The key prefix of its Redis keys (`TICKETWIRE_KEY_PREFIX`); an older `up.json` has none,
    #: and the `up` that wrote it used the default.
    key_prefix: str = "tw:"

    def __repr__(self) -> str:
        # Never show the secrets.
        return (
            f"LocalUp(data_dir={self.data_dir!r}, pid={self.pid}, "
            f"receiver_url={self.receiver_url!r}, vendors={sorted(self.webhook_secrets)})"
        )


class AlreadyRunning(Exception):
    """Another `up` holds the data directory's lock."""

    def __init__(self, data_dir: Path, holder: LocalUp | None) -> None:
        self.data_dir = data_dir
        self.holder = holder
        who = f" (pid {holder.pid}, receiver {holder.receiver_url})" if holder else ""
        super().__init__(
            f"another `ticketwire up` is already running in {data_dir}{who}; stop it, or give "
            "this one its own directory with TICKETWIRE_DATA_DIR=…"
        )


class DataDirLock:
    """Hold `<data dir>/up.lock` for the life of one `up`; publish and withdraw `up.json`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise `AlreadyRunning`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.data_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the process
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise AlreadyRunning(self.data_dir, _read_info(self.data_dir)) from None
        self._file = f

    def publish(self, info: LocalUp) -> None:
        """Write `up.json` (0600) atomically."""
        path = self.data_dir / INFO_NAME
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(info), out, indent=2)
        os.replace(tmp, path)

    def release(self) -> None:
        """Remove `up.json` and drop the lock."""
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / INFO_NAME).unlink()
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_info(data_dir: Path) -> LocalUp | None:
    try:
        raw = json.loads((data_dir / INFO_NAME).read_text())
        return LocalUp(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _is_locked(data_dir: Path) -> bool:
    try:
        f = open(data_dir / LOCK_NAME)  # noqa: SIM115 - closed below
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def find_local_up(data_dir: Path | None = None) -> LocalUp | None:
    """The `up` running in `data_dir` (default `TICKETWIRE_DATA_DIR` or `.ticketwire`), if any."""
    if data_dir is None:
        data_dir = Path(os.environ.get("TICKETWIRE_DATA_DIR") or ".ticketwire")
    if not _is_locked(data_dir):
        return None
    return _read_info(data_dir)
