"""Rules pinned to accounts: `accounts: [name, ...]` runs a rule on those accounts' events only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ticketwire.engine import load_rules
from ticketwire.errors import RuleConfigError

PINNED = """
name: pinned
vendor: inboxops
events: [ticket.updated]
accounts: [brand-b, default]
then:
  - update: {status: in_progress}
---
name: everywhere
vendor: inboxops
events: [ticket.updated]
then:
  - add_tags: [seen]
"""


def _rules(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "rules.yml").write_text(text)
    return d


def test_a_pinned_rule_runs_only_on_its_accounts(tmp_path):
    router = load_rules(_rules(tmp_path, PINNED))
    assert router.get("pinned").accounts == {"brand-b", "default"}
    assert router.get("everywhere").accounts is None

    def names(account: str | None) -> list[str]:
        return [r.name for r in router.rules_for("ticket.updated", "inboxops", account)]

    assert names("brand-b") == ["pinned", "everywhere"]
    assert names("default") == ["pinned", "everywhere"]
    assert names("brand-a") == ["everywhere"]
    # Without an account (e.g. `ticketwire check`'s table) every rule is listed.
    assert names(None) == ["pinned", "everywhere"]


@pytest.mark.parametrize(
    ("accounts", "says"),
    [
        ("brand-a", "accounts: expects a list of account names"),
        ("[]", "accounts: expects a list of account names"),
        ("[Brand_A]", "account names are 1 to 32 lowercase letters"),
        ("[1]", "account names are 1 to 32 lowercase letters"),
    ],
)
def test_bad_accounts_are_rule_errors(tmp_path, accounts, says):
    text = f"name: r\nvendor: inboxops\nevents: [ticket.updated]\naccounts: {accounts}\nthen:\n  - add_tags: [x]\n"
    with pytest.raises(RuleConfigError, match=says):
        load_rules(_rules(tmp_path, text))


def test_a_scheduled_rule_takes_no_accounts(tmp_path):
    text = (
        "name: r\nvendor: inboxops\nschedule: '@hourly'\naccounts: [brand-a]\n"
        "then:\n  - add_tags: [x]\n"
    )
    with pytest.raises(RuleConfigError, match="accounts: applies to event rules"):
        load_rules(_rules(tmp_path, text))


def _check(rules: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETWIRE_", "INBOXOPS_"))}
    return subprocess.run(
        [sys.executable, "-m", "cli", "check", str(rules)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_reports_an_account_no_helpdesk_has(tmp_path):
    rules = _rules(tmp_path, PINNED)
    done = _check(rules)
    assert done.returncode == 1
    assert "rule pinned: accounts: 'brand-b' is not among inboxops's accounts (default)" in (
        done.stderr
    )
    # Named in the accounts file, the account is known: its secrets are not needed to check.
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("inboxops:\n  brand-b:\n    api_key: {env: UNSET_IN_CHECK}\n")
    done = _check(rules, TICKETWIRE_ACCOUNTS=str(accounts))
    assert done.returncode == 0, done.stderr
    assert "2 rule(s)" in done.stdout


def test_check_reports_a_bad_accounts_file(tmp_path):
    accounts = tmp_path / "accounts.toml"
    accounts.write_text("[zendesk.a]\n")
    done = _check(_rules(tmp_path, PINNED), TICKETWIRE_ACCOUNTS=str(accounts))
    assert done.returncode == 1
    assert "zendesk: expected a helpdesk name" in done.stderr


def test_a_python_rule_may_be_pinned_to_accounts():
    from ticketwire.engine import Router

    router = Router()

    @router.on("ticket.updated", vendor="inboxops", accounts=["brand-a"])
    async def pinned(ctx):  # type: ignore[no-untyped-def]
        """Runs on brand-a's events only."""

    assert [r.name for r in router.rules_for("ticket.updated", "inboxops", "brand-a")] == [
        "test_rules_accounts.pinned"
    ]
    assert router.rules_for("ticket.updated", "inboxops", "default") == []
    with pytest.raises(RuleConfigError, match="accounts: expects account names"):
        router.on("ticket.updated", accounts=["Brand A"])(pinned)
