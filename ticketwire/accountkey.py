"""How one helpdesk account is named inside a worker: its clients, budgets and bulk specs."""

from __future__ import annotations

import re

#: The account the single-account variables (INBOXOPS_*, ...) configure, and `/webhooks/<vendor>`.
DEFAULT = "default"
#: An account's name: what a route, a rule's `accounts:` and the accounts file may name.
ACCOUNT_PATTERN = r"^[a-z0-9-]{1,32}$"
ACCOUNT_NAME = re.compile(ACCOUNT_PATTERN)


def account_key(vendor: str, account: str) -> str:
    """`vendor` for the default account, else `vendor@account` (`@` is in no vendor name)."""
    return vendor if account == DEFAULT else f"{vendor}@{account}"


def lane_of(vendor: str, account: str) -> str:
    """The lane of an account's deliveries: "" (shared) for a default account, else its key."""
    return "" if account == DEFAULT else account_key(vendor, account)
