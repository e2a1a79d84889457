"""API keys: each of one tenant, with what it may do; a simulator keeps them by value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiKey:
    """An API key of one tenant, its scope in the vendor's words, and whether it was retired."""

    key: str
    tenant_id: str
    scope: str
    #: Expired or revoked: known to the simulator, and answered with 401.
    retired: bool = False


class KeyRing(dict[str, ApiKey]):
    """Every API key of a simulator, by its value."""

    def add(self, key: str, tenant_id: str, scope: str, *, retired: bool = False) -> str:
        """Keep a new key; returns its value."""
        self[key] = ApiKey(key, tenant_id, scope, retired)
        return key
