"""Loop safety decisions (pure): which firing rules may act on a ticket now, and why not the others.

The worker's `LoopGuard` reads a ticket's memory from Redis into a `GuardState` and calls
`decide`; `ticketwire dry-run` keeps the same memory in a `MemoryGuard`. In the order checked:

1. echo by change: the delivery only reflects fields our own write-backs set within the echo
   window, or changed nothing right after a note we left; the rules that wrote them are skipped
   (other rules still run);
2. echo by actions: a rule would take exactly the actions it took on this ticket within the echo
   window (covers helpdesks whose deliveries do not say what changed);
3. `once_per_ticket`: the rule fired on this ticket and has not re-armed since;
4. `cooldown`: the rule fired on this ticket less than its cooldown ago;
5. the loop fuse: at most N rule firings per ticket per fuse window, whatever the rules do.

A firing already recorded by the same event id is a re-run after a crash: it is allowed again and
not counted twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ticketwire.engine.actions import Action
from ticketwire.engine.echo import EchoMatch, Write, match_echo
from ticketwire.engine.limits import FiringLimits, human_duration
from ticketwire.engine.notes import is_note, note_text
from ticketwire.event import Event


def fingerprint(actions: Iterable[tuple[str, object]]) -> str:
    """Digest of a rule's actions (name and parameters), independent of dict ordering."""
    canon = json.dumps([[n, p] for n, p in actions], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def firing_print(actions: Iterable[Action], event: Event) -> str:
    """The fingerprint of a rule's actions on `event`, a note by its text as filled in.

    A note's template reads the same on every event; its text tells "Status is now open" from
    "Status is now waiting", so only a note saying the same thing counts as the same action.
    """
    return fingerprint(
        (a.name, {**a.params, "text": note_text(a.params, event)} if is_note(a) else a.params)
        for a in actions
    )


@dataclass(frozen=True)
class Clearance:
    """Which fired rules may act, why the others may not, and which rules this event re-armed."""

    allowed: tuple[str, ...]
    suppressed: tuple[tuple[str, str], ...]
    rearmed: tuple[str, ...] = ()
    echo: EchoMatch | None = None
    #: Per suppressed rule, in the same order: `[reason code, *args]` (`ticketwire.trace.codes`).
    codes: tuple[list[Any], ...] = ()


@dataclass(frozen=True)
class GuardPolicy:
    """The guard's settings: echo window, fuse limit and fuse window."""

    echo_window_ms: int = 600_000
    fuse_limit: int = 10
    fuse_window_ms: int = 3_600_000


@dataclass(frozen=True)
class LastFiring:
    """A rule's last firing on a ticket within the echo window: its actions' fingerprint."""

    fingerprint: str
    at_ms: int
    event_id: str

    def encode(self) -> str:
        """Stored form: `fingerprint|at|event id`."""
        return f"{self.fingerprint}|{self.at_ms}|{self.event_id}"

    @classmethod
    def decode(cls, raw: str) -> LastFiring | None:
        """Inverse of `encode`; None for a value that is not one."""
        fp, _, rest = raw.partition("|")
        at, _, event_id = rest.partition("|")
        return cls(fp, int(at), event_id) if at.isdigit() else None


@dataclass(frozen=True)
class Memory:
    """A limited rule's last firing on a ticket, and whether its rearm condition held since."""

    at_ms: int
    event_id: str
    rearmed: bool = False

    def encode(self) -> str:
        """Stored form: `at|event id`."""
        return f"{self.at_ms}|{self.event_id}"

    @classmethod
    def decode(cls, raw: str, *, rearmed: bool = False) -> Memory | None:
        """Inverse of `encode`; None for a value that is not one."""
        at, _, event_id = raw.partition("|")
        return cls(int(at), event_id, rearmed) if at.isdigit() else None


@dataclass(frozen=True)
class GuardState:
    """What the guard remembers about one ticket, as read before deciding."""

    #: rule → its last firing within the echo window.
    last: Mapping[str, LastFiring] = field(default_factory=dict)
    #: One event id per rule firing within the fuse window.
    fuse_events: Sequence[str] = ()
    #: rule → its memory (rules with once_per_ticket or cooldown).
    memory: Mapping[str, Memory] = field(default_factory=dict)
    #: Fields our write-backs set on the ticket recently.
    writes: Sequence[Write] = ()


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def decide(
    fired: Sequence[tuple[str, str]],
    state: GuardState,
    *,
    policy: GuardPolicy,
    now_ms: int,
    event_id: str,
    limits: Mapping[str, FiringLimits] | None = None,
    rearm: Sequence[str] = (),
    changes: Mapping[str, tuple[Any, Any]] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> Clearance:
    """Split `(rule, fingerprint)` pairs into allowed and suppressed-with-reason.

    `rearm` names the rules whose rearm condition holds on this event; `changes` is what the
    delivery changed (None when unknown), `ignore` the helpdesk's bookkeeping fields.
    """
    limits = limits or {}
    memory = dict(state.memory)
    rearmed: list[str] = []
    for name in rearm:
        mem = memory.get(name)
        if mem is not None and not mem.rearmed and mem.event_id != event_id:
            memory[name] = Memory(mem.at_ms, mem.event_id, True)
            rearmed.append(name)
    echo = None
    # An empty `changes` is known too: nothing but bookkeeping changed (e.g. our note's echo).
    if fired and changes is not None:
        echo = match_echo(
            changes,
            state.writes,
            ignore=ignore,
            now_ms=now_ms,
            window_ms=policy.echo_window_ms,
        )
    used = sum(1 for e in state.fuse_events if e != event_id)
    allowed: list[str] = []
    suppressed: list[tuple[str, str]] = []
    codes: list[list[Any]] = []
    for name, fp in fired:
        found = _why_not(
            name,
            fp,
            state.last.get(name),
            memory.get(name),
            limits.get(name),
            echo,
            policy=policy,
            now_ms=now_ms,
            event_id=event_id,
        )
        why, code = found if found is not None else (None, [])
        if why is None and used >= policy.fuse_limit:
            code = ["fuse", used, policy.fuse_window_ms // 1000, policy.fuse_limit]
            why = (
                f"loop fuse: {used} rule firings on this ticket in the last "
                f"{human_duration(policy.fuse_window_ms / 1000)} (limit {policy.fuse_limit}, "
                "TICKETWIRE_FUSE_PER_HOUR per TICKETWIRE_FUSE_WINDOW)"
            )
        if why is not None:
            suppressed.append((name, why))
            codes.append(code)
            continue
        used += 1
        allowed.append(name)
    return Clearance(tuple(allowed), tuple(suppressed), tuple(rearmed), echo, tuple(codes))


def _why_not(
    name: str,
    fp: str,
    last: LastFiring | None,
    mem: Memory | None,
    limits: FiringLimits | None,
    echo: EchoMatch | None,
    *,
    policy: GuardPolicy,
    now_ms: int,
    event_id: str,
) -> tuple[str, list[Any]] | None:
    """The reason this rule may not fire (fuse aside) and its trace code, or None."""
    if (last is not None and last.event_id == event_id) or (
        mem is not None and mem.event_id == event_id
    ):
        return None
    if echo is not None and name in echo.rules:
        return echo.reason(), ["echo", list(echo.fields), echo.age_ms, list(echo.rules)]
    if last is not None and last.fingerprint == fp and now_ms - last.at_ms < policy.echo_window_ms:
        ago = (now_ms - last.at_ms) / 1000
        why = f"echo: same actions as its own firing {ago:.1f}s ago on this ticket"
        return why, ["same", now_ms - last.at_ms]
    if limits is None or mem is None:
        return None
    if limits.once_per_ticket and not mem.rearmed:
        fired = f"fired at {_iso(mem.at_ms)} (event {mem.event_id})"
        code = ["once", mem.at_ms, mem.event_id, 0 if limits.rearm is None else 1]
        if limits.rearm is None:
            why = f"once_per_ticket: {fired}; it has no rearm: condition, so it stays disarmed"
            return why, code
        return f"once_per_ticket: {fired}; re-arms when {limits.rearm_text()}", code
    cooldown = limits.cooldown_s
    if cooldown is not None and now_ms - mem.at_ms < cooldown * 1000:
        if mem.rearmed and not limits.once_per_ticket:
            return None
        since = human_duration((now_ms - mem.at_ms) / 1000)
        why = f"cooldown: fired {since} ago, cooldown {human_duration(cooldown)}"
        if limits.rearm is not None and not limits.once_per_ticket:
            why += f" (or until {limits.rearm_text()})"
        code = ["cooldown", mem.at_ms, cooldown, 0 if limits.rearm is None else 1]
        return why, code
    return None


class MemoryGuard:
    """The same decisions over memory kept in this process (`ticketwire dry-run`: no Redis).

    Nothing is written back during a dry run, so echo by change never applies here.
    """

    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self._last: dict[str, dict[str, LastFiring]] = {}
        #: ticket → (event id, rule) → when it fired, as the worker's fuse log.
        self._fuse: dict[str, dict[tuple[str, str], int]] = {}
        self._memory: dict[str, dict[str, Memory]] = {}

    def check(
        self,
        ticket_key: str,
        fired: Sequence[tuple[str, str]],
        *,
        event_id: str,
        now_ms: int,
        limits: Mapping[str, FiringLimits] | None = None,
        rearm: Sequence[str] = (),
    ) -> Clearance:
        """Decide, then remember the allowed firings and re-arms as the worker would."""
        fuse_start = now_ms - self.policy.fuse_window_ms
        fuse = {k: at for k, at in self._fuse.get(ticket_key, {}).items() if at > fuse_start}
        echo_start = now_ms - self.policy.echo_window_ms
        last = {k: v for k, v in self._last.get(ticket_key, {}).items() if v.at_ms > echo_start}
        memory = self._memory.setdefault(ticket_key, {})
        state = GuardState(last=last, fuse_events=[e for e, _ in fuse], memory=memory)
        clearance = decide(
            fired,
            state,
            policy=self.policy,
            now_ms=now_ms,
            event_id=event_id,
            limits=limits,
            rearm=rearm,
        )
        for name in clearance.rearmed:
            mem = memory[name]
            memory[name] = Memory(mem.at_ms, mem.event_id, True)
        prints = dict(fired)
        for name in clearance.allowed:
            last[name] = LastFiring(prints[name], now_ms, event_id)
            fuse.setdefault((event_id, name), now_ms)
            if limits and name in limits:
                memory[name] = Memory(now_ms, event_id)
        self._last[ticket_key] = last
        self._fuse[ticket_key] = fuse
        return clearance
