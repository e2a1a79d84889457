"""How one helpdesk account is named inside a worker: its clients, budgets and bulk specs."""

from __future__ import annotations

#: The account the single-account variables (INBOXOPS_*, ...) configure, and `/webhooks/<vendor>`.
DEFAULT = "default"


def account_key(vendor: str, account: str) -> str:
    """`vendor` for the default account, else `vendor@account` (`@` is in no vendor name)."""
    return vendor if account == DEFAULT else f"{vendor}@{account}"
