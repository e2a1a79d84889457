"""API keys: each of one tenant, with what it may do; a simulator keeps them by value."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiKey:
    """An API key of one tenant, its scope in the vendor's words, and whether it was retired."""

    key: str
    tenant_id: str
    scope: str
    #: Expired or revoked: known to the simulator, and answered with 401.
    retired: bool = False


@dataclass(frozen=True)
class KeySpec:
    """A key a store issues when seeded: its name, how its value starts, whose it is, its scope."""

    name: str
    prefix: str
    #: The tenant, as the store's table of tenant ids names it (`default`, `other`, ...).
    tenant: str
    scope: str
    retired: bool = False


class KeyRing(dict[str, ApiKey]):
    """Every API key of a simulator, by its value."""

    def __init__(self) -> None:
        super().__init__()
        #: The value of every key `issue` made, by its name.
        self.named: dict[str, str] = {}

    def add(self, key: str, tenant_id: str, scope: str, *, retired: bool = False) -> str:
        """Keep a new key; returns its value."""
        self[key] = ApiKey(key, tenant_id, scope, retired)
        return key

    def issue(
        self, specs: Iterable[KeySpec], token: Callable[[], str], tenants: Mapping[str, str]
    ) -> None:
        """Keep a key for each spec, in order, its value the prefix and a fresh `token()`."""
        for spec in specs:
            tenant_id = tenants[spec.tenant]
            key = self.add(spec.prefix + token(), tenant_id, spec.scope, retired=spec.retired)
            self.named[spec.name] = key
