"""Every helpdesk ticketwire speaks, built from settings: the one place processes look vendors up.

`BUILTIN` lists each shipped vendor's bundle once; everything else is derived from the active
`Registry` (the built-in one unless `installed()` swaps in another, e.g. with one more vendor).
What other modules keep per vendor for speed (actions, `select:` keys, echo, views,
vocabulary) they keep through `derived()`, so a change of the active registry empties it all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ticketwire.accountkey import account_key
from ticketwire.vendors import HelpdeskClient, WebhookIntake
from ticketwire.vendors.bundle import Vendor
from ticketwire.vendors.cstar import VENDOR as CSTAR
from ticketwire.vendors.inboxops import VENDOR as INBOXOPS
from ticketwire.vendors.thena import VENDOR as THENA

if TYPE_CHECKING:
    import aiohttp

    from ticketwire.config import Settings
    from ticketwire.event import Event
    from ticketwire.ratebudget import Limit
    from ticketwire.writeback import BatchSpec

#: The vendors shipped with ticketwire, in the order help texts and defaults name them.
BUILTIN: tuple[Vendor[Any], ...] = (
    INBOXOPS,
    CSTAR,
    THENA,
)
VENDORS: tuple[str, ...] = tuple(v.name for v in BUILTIN)


@dataclass(frozen=True)
class Registry:
    """A set of vendor bundles, and what processes build from them."""

    vendors: tuple[Vendor[Any], ...]

    def __post_init__(self) -> None:
        seen = [v.name for v in self.vendors]
        if len(set(seen)) != len(seen):
            raise ValueError(f"vendor names must be unique: {', '.join(seen)}")

    @property
    def names(self) -> tuple[str, ...]:
        """Every vendor's name, in registry order."""
        return tuple(v.name for v in self.vendors)

    def get(self, name: str) -> Vendor[Any]:
        """The bundle of `name`; raise `KeyError` naming the known vendors."""
        for v in self.vendors:
            if v.name == name:
                return v
        raise KeyError(f"unknown vendor {name!r} (known: {', '.join(self.names)})")

    def parser(self, vendor: str) -> Callable[[bytes], Event]:
        """The pure parser workers use on stored bodies."""
        return self.get(vendor).parser()

    def intakes(self, settings: Settings) -> list[WebhookIntake]:
        """The webhook verifier/parser of every vendor whose secrets are configured."""
        out = (v.intake(settings.vendor(v.name)) for v in self.vendors)
        return [i for i in out if i is not None]

    def account_intakes(
        self, settings: Settings, *, default: bool = True
    ) -> dict[str, dict[str, WebhookIntake]]:
        """Per vendor, the webhook seam of each account whose secrets are configured."""
        out: dict[str, dict[str, WebhookIntake]] = {}
        for v in self.vendors:
            for name, account in v.accounts(settings).items():
                seam = v.intake(account) if default or name != "default" else None
                if seam is not None:
                    out.setdefault(v.name, {})[name] = seam
        return out

    def accounts(self, settings: Settings) -> Iterator[tuple[str, Vendor[Any], Any]]:
        """Every account of every vendor: its key (`vendor`, `vendor@account`), bundle, settings."""
        for v in self.vendors:
            for name, account in v.accounts(settings).items():
                yield account_key(v.name, name), v, account

    def clients(
        self, settings: Settings, session: aiohttp.ClientSession
    ) -> dict[str, HelpdeskClient]:
        """An API client for every account whose API is configured, by account key."""
        out: dict[str, HelpdeskClient] = {}
        for v in self.vendors:
            for name, account in v.accounts(settings).items():
                client = v.client(account, session, settings.http_timeout_s)
                if client is not None:
                    client.account = name
                    out[account_key(v.name, name)] = client
        return out

    def batch_specs(self, settings: Settings) -> dict[str, BatchSpec]:
        """How each account's write-backs combine into bulk calls, with its sizes, by account key."""
        return {key: v.batching(account) for key, v, account in self.accounts(settings)}

    def budget_scopes(self, settings: Settings) -> dict[str, tuple[str, tuple[Limit, ...]]]:
        """Each configured API's budget scope (vendor and account) and limits, by account key.

        The account is the workspace, team or organisation the API key acts for; where only the
        key identifies it, a digest of the key stands in (never the key itself).
        """
        out: dict[str, tuple[str, tuple[Limit, ...]]] = {}
        for key, v, account in self.accounts(settings):
            scope = v.budget(account)
            if scope is not None:
                out[key] = scope
        return out


_ACTIVE: list[Registry] = [Registry(BUILTIN)]
#: Every per-vendor cache `derived()` filled, by identity: emptied when the active registry changes.
_DERIVED: dict[int, dict[str, Any]] = {}

T = TypeVar("T")


def active() -> Registry:
    """The registry processes use now."""
    return _ACTIVE[-1]


@contextmanager
def installed(registry: Registry) -> Iterator[Registry]:
    """Use `registry` instead of the active one until the block ends."""
    _ACTIVE.append(registry)
    _forget_derived()
    try:
        yield registry
    finally:
        _ACTIVE.remove(registry)
        _forget_derived()


def derived(cache: dict[str, T], vendor: str, build: Callable[[Vendor[Any]], T]) -> T:
    """`build(bundle of vendor)`, kept in `cache[vendor]` while the active registry stays.

    Callers look `cache` up first (a dict lookup per event) and come here on a miss; a vendor
    the active registry lacks raises `KeyError` and leaves `cache` as it was.
    """
    value = build(active().get(vendor))
    cache[vendor] = value
    _DERIVED[id(cache)] = cache
    return value


def derived_or_none(
    cache: dict[str, T], vendor: str, build: Callable[[Vendor[Any]], T]
) -> T | None:
    """`derived`, or None for a vendor the active registry lacks."""
    if vendor not in active().names:
        return None
    return derived(cache, vendor, build)


def _forget_derived() -> None:
    for cache in _DERIVED.values():
        cache.clear()


def names() -> tuple[str, ...]:
    """Names of the active registry's vendors."""
    return active().names


def bundle(name: str) -> Vendor[Any]:
    """The bundle of vendor `name` in the active registry; raise `KeyError` when unknown."""
    return active().get(name)


def spoken_list(items: tuple[str, ...]) -> str:
    """`a, b or c`: the vendor names for a help or error text."""
    return items[0] if len(items) < 2 else f"{', '.join(items[:-1])} or {items[-1]}"


def parser(vendor: str) -> Callable[[bytes], Event]:
    """The pure parser workers use on stored bodies, of the active registry's `vendor`."""
    return active().parser(vendor)


def intakes(settings: Settings) -> list[WebhookIntake]:
    """The webhook verifier/parser of every configured vendor of the active registry."""
    return active().intakes(settings)


def account_intakes(
    settings: Settings, *, default: bool = True
) -> dict[str, dict[str, WebhookIntake]]:
    """Per configured vendor of the active registry, each receiving account's webhook seam."""
    return active().account_intakes(settings, default=default)


def clients(settings: Settings, session: aiohttp.ClientSession) -> dict[str, HelpdeskClient]:
    """An API client for every configured vendor of the active registry."""
    return active().clients(settings, session)


def batch_specs(settings: Settings) -> dict[str, BatchSpec]:
    """Each vendor's bulk-call batching, with the configured sizes."""
    return active().batch_specs(settings)


def budget_scopes(settings: Settings) -> dict[str, tuple[str, tuple[Limit, ...]]]:
    """Each configured API's budget scope and limits."""
    return active().budget_scopes(settings)
