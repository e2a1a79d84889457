"""Keep a bundled simulator's state in a file across runs: its seed and its whole store.

`ticketwire up` keeps each simulator's tickets, tags, keys and ids in `TICKETWIRE_DATA_DIR`, as a
real helpdesk would keep them. The store is saved whole, as it is in memory (pickled), so any
field a store gains is kept without further work. What the simulator wires a store with (its
clock's methods, callbacks into the simulator: the store's attributes that are functions) is
not data: it is saved by name and taken from the new run's freshly built store on load.

A snapshot records its format and the shape of every simulator class it holds (dataclass fields,
the attributes of other objects); one written by another version of the code is refused with a
message saying how to start over, instead of failing later on a missing attribute. Writes go to
a temporary file renamed over the old one, so a killed process leaves the last complete
snapshot. The file is only ever read from the user's own data directory, written by this code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import io
import logging
import os
import pickle
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("simulator.persist")

#: Bumped whenever the layout below changes.
FORMAT = 1
#: Classes whose shape is recorded: everything of the simulators' own.
_OWN_MODULES = "simulator."
#: What unpickling damaged or foreign bytes raises.
_UNREADABLE = (
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
)


class StateError(Exception):
    """A snapshot that cannot be used: another format or code version, or unreadable."""


class Persistable(Protocol):
    """What a simulator offers to be saved and restored."""

    seed: int
    store: Any

    @property
    def clock(self) -> Any:
        """The simulator's clock; the store's references to it are saved by name."""
        ...


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A saved simulator: the seed it was built with and its store, still pickled."""

    seed: int
    kind: str
    store: bytes
    shapes: dict[str, tuple[str, ...]]


def kind_of(cls: type) -> str:
    """A simulator class's qualified name, so one vendor's file never loads into another."""
    return f"{cls.__module__}.{cls.__qualname__}"


def read(path: Path, kind: str) -> Snapshot | None:
    """The snapshot at `path` (None when there is none); `StateError` when it cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        head = _Plain(io.BytesIO(raw)).load()
    except _UNREADABLE as exc:
        raise StateError(f"{path} is not a simulator snapshot ({exc})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        found = head.get("format") if isinstance(head, dict) else None
        raise StateError(
            f"{path} was written in format {found!r}, this version reads format {FORMAT}"
        )
    if head.get("kind") != kind:
        raise StateError(f"{path} holds a {head.get('kind')!r}, not a {kind!r}")
    return Snapshot(
        seed=int(head["seed"]),
        kind=str(head["kind"]),
        store=bytes(head["store"]),
        shapes={k: tuple(v) for k, v in head["shapes"].items()},
    )


def restore(sim: Persistable, snap: Snapshot) -> None:
    """Replace `sim.store` with the snapshot's; `sim` must have been built with `snap.seed`."""
    if sim.seed != snap.seed:
        raise ValueError(f"the simulator has seed {sim.seed}, the snapshot {snap.seed}")
    changed = _shape_changes(snap.shapes, sim.store)
    if changed:
        raise StateError("it was written by another version of ticketwire (" + changed + ")")
    try:
        store = _StoreUnpickler(io.BytesIO(snap.store), sim.clock, sim.store).load()
    except _UNREADABLE as exc:
        raise StateError(f"its store cannot be read ({type(exc).__name__}: {exc})") from None
    sim.store = store


def dump(sim: Persistable) -> bytes:
    """The simulator's seed and store as snapshot bytes."""
    buf = io.BytesIO()
    pickler = _StorePickler(buf, sim.clock, sim.store)
    pickler.dump(sim.store)
    head = {
        "format": FORMAT,
        "kind": kind_of(type(sim)),
        "seed": sim.seed,
        "store": buf.getvalue(),
        "shapes": {name: list(attrs) for name, attrs in sorted(pickler.shapes.items())},
    }
    return pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a temporary file renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class Autosave:
    """Save a simulator to `path` every `interval` seconds when its store changed, and at stop."""

    def __init__(self, sim: Persistable, path: Path, interval: float = 1.0) -> None:
        self.sim = sim
        self.path = path
        self.interval = interval
        self._last: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def save(self) -> bool:
        """Write the snapshot if it differs from the last one written; True when written."""
        try:
            data = dump(self.sim)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            # Logged once: the simulator keeps serving, only its state is not kept.
            if not self._failed:
                log.warning("%s: cannot save the simulator's state: %s", self.path, exc)
            self._failed = True
            return False
        if data == self._last:
            return False
        write_atomic(self.path, data)
        self._last = data
        return True

    def start(self) -> None:
        """Start saving periodically (after changes only)."""
        self._last = dump(self.sim)
        write_atomic(self.path, self._last)
        self._task = asyncio.create_task(self._run(), name=f"autosave {self.path.name}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.save()
            except OSError as exc:
                log.warning("%s: cannot write the simulator's state: %s", self.path, exc)

    async def stop(self) -> None:
        """Stop the periodic saves and save one last time."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.save()


# ----------------------------------------------------------------- pickling


def _shape(obj: object) -> tuple[str, ...]:
    if dataclasses.is_dataclass(obj):
        return tuple(f.name for f in dataclasses.fields(obj))
    return tuple(sorted(getattr(obj, "__dict__", {})))


def _wiring(store: object) -> dict[int, str]:
    """id → name of the store's attributes that are functions: what the simulator wired it with."""
    return {
        id(value): name
        for name, value in vars(store).items()
        if isinstance(value, types.FunctionType | types.MethodType | functools.partial)
    }


class _StorePickler(pickle.Pickler):
    """Pickle a store: its wiring and the clock's methods by name, and every own class's shape."""

    def __init__(self, file: io.BytesIO, clock: object, store: object) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._clock = clock
        self._wiring = _wiring(store)
        self.shapes: dict[str, tuple[str, ...]] = {}

    def persistent_id(self, obj: Any) -> Any:
        name = self._wiring.get(id(obj))
        if name is not None:
            return ("store", name)
        if type(obj) is types.MethodType and obj.__self__ is self._clock:
            return ("clock", obj.__name__)
        return None

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls.__module__.startswith(_OWN_MODULES):
            name = f"{cls.__module__}.{cls.__qualname__}"
            if name not in self.shapes:
                self.shapes[name] = _shape(obj)
        return NotImplemented


class _StoreUnpickler(pickle.Unpickler):
    """Unpickle a store, wiring it as this run's fresh store and clock are."""

    def __init__(self, file: io.BytesIO, clock: object, fresh_store: object) -> None:
        super().__init__(file)
        self._sources = {"clock": clock, "store": fresh_store}

    def persistent_load(self, pid: Any) -> Callable[..., Any]:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] in self._sources:
            wired: Callable[..., Any] = getattr(self._sources[pid[0]], pid[1])
            return wired
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


class _Plain(pickle.Unpickler):
    """The snapshot's envelope holds plain values only: refuse any class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the envelope")


def _shape_changes(saved: dict[str, tuple[str, ...]], fresh_store: object) -> str:
    """What differs between the saved class shapes and this code's; empty when nothing does."""
    store_name = f"{type(fresh_store).__module__}.{type(fresh_store).__qualname__}"
    diffs = []
    for name, attrs in saved.items():
        module, _, qualname = name.rpartition(".")
        try:
            cls = functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
        except (ImportError, AttributeError):
            diffs.append(f"{name} no longer exists")
            continue
        if name == store_name:
            now = _shape(fresh_store)
        elif dataclasses.is_dataclass(cls):
            now = tuple(f.name for f in dataclasses.fields(cls))
        else:
            continue
        if now != attrs:
            added = sorted(set(now) - set(attrs))
            removed = sorted(set(attrs) - set(now))
            parts = [f"+{a}" for a in added] + [f"-{a}" for a in removed] or ["field order"]
            diffs.append(f"{qualname}: {', '.join(parts)}")
    return "; ".join(diffs)
