"""Echo by change: does a delivery only reflect what our own write-backs just set? (pure)

Each vendor's `written_fields(call)` says which ticket fields a call sets, keyed the way the
vendor's webhook ticket names them (dotted paths for nested keys, `common.<field>` for the
neutral view), with one of three kinds of value:

- a plain value: the field now has it;
- `ANY`: the field follows a written one (e.g. `status_name` when we set `status`), any value;
- `members(has=..., lacks=...)`: a list field (tags) now contains / lacks these items.

A note sets no field: its call is recorded under the pseudo-field `NOTE` (with its text). The
helpdesk then sends a delivery in which nothing but bookkeeping changed (or only fields that
follow a new message, such as a message count); within the window, such a delivery is the note's
echo.

`match_echo` decides whether every changed field of a delivery is explained by such writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ticketwire.engine.durations import parse_datetime
from ticketwire.vocabulary import neutral_priority, neutral_status

#: A field that follows a written one: any new value is explained by the write.
ANY: Mapping[str, Any] = {"$any": True}
#: Where a note we left is recorded: not a ticket field, so no delivery ever shows it changed.
NOTE = "$note"


def members(has: Iterable[str] = (), lacks: Iterable[str] = ()) -> dict[str, Any]:
    """The value of a list field (tags) after adding `has` and removing `lacks`."""
    return {"$has": list(has), "$lacks": list(lacks)}


#: Per written field: the `common.*` field it shows in, and its value there.
CommonViews = Mapping[str, tuple[str, Callable[[Any], Any]]]


def kept(value: Any) -> Any:
    """The written value, as it is."""
    return value


def any_value(value: Any) -> Any:
    """`ANY`: the neutral view changes in a way the written value does not tell."""
    return ANY


def neutral(vendor: str, to_neutral: Callable[[str, Any], str | None]) -> Callable[[Any], Any]:
    """The written value's neutral one (`ANY` when it has none)."""
    return lambda value: to_neutral(vendor, value) or ANY


#: Per written field, the fields the helpdesk changes along with it.
Followers = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Shows:
    """The ticket fields one common field shows in: `written` ones a call may set, the first
    by its value, and `also` ones the helpdesk changes along with any of them."""

    written: tuple[str, ...]
    also: tuple[str, ...] = ()


def echo_fields(
    vendor: str,
    *,
    status: Shows | None = None,
    priority: Shows | None = None,
    assignee: Shows | None = None,
    subject: Shows | None = None,
) -> tuple[CommonViews, Followers]:
    """Each written field's `common.*` view, and the fields that change with it.

    The first written field of each shows its value in the common view (a status or priority as
    its neutral one); a write of any other changes it in a way the written value does not tell
    (an id, an email). Writing one changes the others and the `also` ones.
    """
    first: dict[str, Callable[[Any], Any]] = {
        "status": neutral(vendor, neutral_status),
        "priority": neutral(vendor, neutral_priority),
        "assignee": kept,
        "subject": kept,
    }
    shown = {"status": status, "priority": priority, "assignee": assignee, "subject": subject}
    views: dict[str, tuple[str, Callable[[Any], Any]]] = {}
    followers: dict[str, tuple[str, ...]] = {}
    for common, shows in shown.items():
        if shows is None:
            continue
        for position, name in enumerate(shows.written):
            views[name] = (f"common.{common}", any_value if position else first[common])
            others = tuple(n for n in shows.written if n != name) + shows.also
            if others:
                followers[name] = others
    return views, followers


def with_followers(
    written: Mapping[str, Any],
    common: CommonViews,
    followers: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """`written` plus each field's `common.*` view and the fields the helpdesk changes with it."""
    out = dict(written)
    for name, value in written.items():
        if name in common:
            field, view = common[name]
            out.setdefault(field, view(value))
    for name in list(out):
        for follower in followers.get(name, ()):
            out.setdefault(follower, ANY)
    return out


def is_any(value: Any) -> bool:
    """True for the `ANY` marker."""
    return isinstance(value, Mapping) and value.get("$any") is True and len(value) == 1


def _is_members(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"$has", "$lacks"}


def _items(value: Any) -> set[str] | None:
    """A list's items as strings (objects count by their id and their name); None if no list."""
    if not isinstance(value, list | tuple):
        return None
    out: set[str] = set()
    for item in value:
        if isinstance(item, Mapping):
            out.update(str(item[k]) for k in ("id", "name") if item.get(k) is not None)
        elif item is not None:
            out.add(str(item))
    return out


def same_value(written: Any, actual: Any) -> bool:
    """True when a field showing `actual` is what writing `written` produces.

    Lenient where helpdesks are: date-times compare as instants, names ignore case, a written
    id matches an object carrying it, and lists of names compare as sets.
    """
    if is_any(written):
        return True
    if _is_members(written):
        items = _items(actual)
        return (
            items is not None
            and set(map(str, written["$has"])) <= items
            and not set(map(str, written["$lacks"])) & items
        )
    if isinstance(written, bool) or isinstance(actual, bool):
        return isinstance(written, bool) and isinstance(actual, bool) and written == actual
    if written == actual:
        return True
    if isinstance(written, str) and isinstance(actual, Mapping):
        return any(same_value(written, actual.get(k)) for k in ("id", "name") if k in actual)
    if isinstance(written, str) and isinstance(actual, str):
        if written.casefold() == actual.casefold():
            return True
        a, b = parse_datetime(written), parse_datetime(actual)
        return a is not None and b is not None and a == b
    if isinstance(written, list | tuple) and isinstance(actual, list | tuple):
        return _items(written) == _items(actual)
    if isinstance(written, Mapping) and isinstance(actual, Mapping):
        return set(written) == set(actual) and all(
            same_value(v, actual[k]) for k, v in written.items()
        )
    return False


@dataclass(frozen=True)
class Write:
    """One field a write-back set on a ticket: its path, value, the rules behind it, and when."""

    path: str
    value: Any
    rules: tuple[str, ...]
    at_ms: int


@dataclass(frozen=True)
class EchoMatch:
    """A delivery explained by our own writes: which changed fields, by which rules, how long ago."""

    fields: tuple[str, ...]
    rules: tuple[str, ...]
    age_ms: int

    def reason(self) -> str:
        """The suppression reason the log shows."""
        seconds = self.age_ms / 1000
        rules = ", ".join(self.rules)
        return (
            f"echo: this delivery only reflects our own write of {', '.join(self.fields)} "
            f"{seconds:.1f}s ago (rule {rules})"
        )


def _descend(value: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    for part in parts:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


def _explaining(path: str, new: Any, writes: Sequence[Write]) -> list[Write]:
    """Writes that set `path` (or a mapping holding it) to `new`."""
    found = []
    for w in writes:
        if w.path == path:
            if same_value(w.value, new):
                found.append(w)
        elif path.startswith(w.path + "."):
            if is_any(w.value):
                found.append(w)
                continue
            ok, inner = _descend(w.value, path[len(w.path) + 1 :].split("."))
            if ok and same_value(inner, new):
                found.append(w)
    return found


def _explain(path: str, old: Any, new: Any, writes: Sequence[Write]) -> list[Write] | None:
    """The writes explaining one change, or None when some part of it is not ours."""
    direct = _explaining(path, new, writes)
    if direct:
        return direct
    if isinstance(new, Mapping) and (old is None or isinstance(old, Mapping)):
        # A mapping (custom fields, metadata) explained key by key: we may have set only some.
        before: Mapping[str, Any] = old or {}
        changed = [k for k in {*before, *new} if before.get(k) != new.get(k)]
        if not changed:
            return None
        found: list[Write] = []
        for key in changed:
            part = _explain(f"{path}.{key}", before.get(key), new.get(key), writes)
            if part is None:
                return None
            found.extend(part)
        return found
    return None


def match_echo(
    changes: Mapping[str, tuple[Any, Any]],
    writes: Sequence[Write],
    *,
    ignore: frozenset[str] = frozenset(),
    now_ms: int,
    window_ms: int,
) -> EchoMatch | None:
    """Return the match when every changed field (bookkeeping `ignore`d) is one of our writes.

    At least one changed field must be explained by a value we wrote, not only by following one
    (a change of `status_id` alone is not evidence of our write of `status`). A note we left is
    the exception: it explains a delivery in which nothing else changed.
    """
    relevant = {
        path: (old, new)
        for path, (old, new) in changes.items()
        if path not in ignore and path.split(".", 1)[0] not in ignore and old != new
    }
    live = [w for w in writes if 0 <= now_ms - w.at_ms < window_ms]
    if not live:
        return None
    notes = [w for w in live if w.path == NOTE]
    if not relevant:
        return _note_echo(notes, [], now_ms)
    fields: list[str] = []
    used: list[Write] = []
    for path, (old, new) in relevant.items():
        found = _explain(path, old, new, live)
        if found is None:
            return None
        if any(not is_any(w.value) for w in found):
            fields.append(path)
        used.extend(found)
    if not fields:
        return _note_echo(notes, used, now_ms)
    rules = tuple(dict.fromkeys(r for w in used for r in w.rules))
    latest = max(w.at_ms for w in used)
    return EchoMatch(tuple(sorted(fields)), rules, now_ms - latest)


def _note_echo(notes: Sequence[Write], followers: Sequence[Write], now_ms: int) -> EchoMatch | None:
    """The echo of our notes: a delivery in which nothing changed but what follows a message."""
    if not notes:
        return None
    used = [*notes, *followers]
    rules = tuple(dict.fromkeys(r for w in used for r in w.rules))
    return EchoMatch(("a note",), rules, now_ms - max(w.at_ms for w in used))
