"""`ticketwire check [DIR]`: load every rule, print errors or the event → rules table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cli.init import no_rules_dir
from ticketwire.config import account_names_of, rules_dir_of
from ticketwire.engine import render_table
from ticketwire.engine.router import Rule
from ticketwire.engine.ruleset import load_rule_set
from ticketwire.errors import ConfigError
from ticketwire.vendors.registry import active


def run_check(directory: Path | None) -> int:
    """Validate `directory`; return 0 when every rule loads, 1 otherwise."""
    path = directory or rules_dir_of(os.environ)
    if not path.is_dir():
        print(f"ticketwire check: {no_rules_dir(path)}", file=sys.stderr)
        return 1
    loaded = load_rule_set(path)
    router = loaded.router
    if not loaded.ok or router is None:
        print(f"{len(loaded.errors)} error(s) in {path}:", file=sys.stderr)
        for err in loaded.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    try:
        unknown = unknown_accounts(router.rules, account_names_of(os.environ))
    except ConfigError as exc:
        print(f"ticketwire check: {exc}", file=sys.stderr)
        return 1
    if unknown:
        print(f"{len(unknown)} error(s) in {path}:", file=sys.stderr)
        for line in unknown:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(render_table(router))
    notes = [note for v in active().vendors for note in v.rule_notes(router.rules)]
    if notes:
        print("\nReminders:")
        for note in notes:
            print(f"  {note}")
    # The fingerprint workers log and `ticketwire rules` shows for exactly these files.
    print(f"\n{len(router.rules)} rule(s) in {path}: OK, rules {loaded.fingerprint}")
    return 0


def unknown_accounts(rules: list[Rule], accounts: dict[str, frozenset[str]]) -> list[str]:
    """A line per account a rule's `accounts:` names that its helpdesk (or every one) lacks."""
    out = []
    for rule in rules:
        vendors = [rule.vendor] if rule.vendor else list(accounts)
        known = frozenset().union(*(accounts.get(v, frozenset()) for v in vendors))
        for name in sorted((rule.accounts or frozenset()) - known):
            where = f"{rule.vendor}'s accounts" if rule.vendor else "any helpdesk's accounts"
            out.append(
                f"{rule.source} rule {rule.name}: accounts: {name!r} is not among {where} "
                f"({', '.join(sorted(known))}); TICKETWIRE_ACCOUNTS names the accounts file"
            )
    return out
