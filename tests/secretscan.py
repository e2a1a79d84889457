"""The whole suite's log output, scanned for every secret configured while it ran.

Every `Secret` made during the run (but not a value made up by a property test), and every secret-named variable a spawned process is given,
is a configured secret (values shorter than `MIN_LENGTH` are too common to tell apart from
ordinary text, and are skipped). Every log record emitted in the test process, and the whole
output of every process the suite spawns, is searched for each of them. A secret found fails
the run, naming where it was seen.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis.control import currently_in_test_context

from ticketwire.secret import Secret

MIN_LENGTH = 8
#: Environment variables whose values are secrets (as the product's settings name them).
SECRET_VARIABLE = re.compile(r"SECRET|TOKEN|API_KEY|PASSWORD")

#: A spawned simulator: `ticketwire simulate …` or `python -m simulator…`.
SIMULATOR = re.compile(r"ticketwire simulate|-m simulator")

#: What may show a key: `ticketwire up`'s banner names the key its bundled simulator issued, for
#: calling the simulator's API by hand (a local stand-in's key, not a helpdesk's).
SHOWN = re.compile(r"\(bundled simulator, API key [^)\s]*\)")

_secrets: set[str] = set()
_findings: dict[str, str] = {}
_outputs: list[tuple[str, Any]] = []


def configured(value: str) -> None:
    """Count `value` as a configured secret."""
    if len(value) >= MIN_LENGTH:
        _secrets.add(value)


def given(env: Mapping[str, str]) -> None:
    """Count the secret-named variables of a spawned process's environment."""
    for name, value in env.items():
        if SECRET_VARIABLE.search(name):
            for part in value.split(","):
                configured(part.strip())


def spawned(argv: str, proc: Any) -> None:
    """Scan `proc.output` (as it stands when the run ends) for secrets.

    A simulator's own output is not scanned: it prints the keys it issues, as a helpdesk's
    settings page shows them, and it is not the product.
    """
    if not SIMULATOR.search(argv):
        _outputs.append((argv, proc))


def _found(text: str, where: str) -> None:
    text = SHOWN.sub("", text)
    for secret in _secrets:
        if secret in text and secret not in _findings:
            line = next(ln for ln in text.splitlines() if secret in ln)
            _findings[secret] = f"{where}: {line.replace(secret, '<SECRET>')[:300]}"


class _Watch(logging.Handler):
    """Search every record the test process emits, at the level it is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is not ours to judge
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + repr(record.exc_info[1])
        _found(text, f"log record {record.name} ({record.pathname}:{record.lineno})")


_original_init = Secret.__init__


def _init(self: Secret, value: str) -> None:
    _original_init(self, value)
    # A value hypothesis made up for one example is no one's secret: it may be any word.
    if not currently_in_test_context():
        configured(value)


def pytest_configure(config: pytest.Config) -> None:
    """Start watching: every Secret made, every record emitted."""
    Secret.__init__ = _init  # type: ignore[method-assign]
    logging.getLogger().addHandler(_Watch(logging.DEBUG))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan the spawned processes' output; fail the run if any secret was seen anywhere."""
    for argv, proc in _outputs:
        _found(proc.output, f"output of {argv}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if _findings:
        if reporter is not None:
            reporter.write_sep("=", "secrets found in log output", red=True)
            for where in _findings.values():
                reporter.write_line(where)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(
            f"secret scan: {len(_secrets)} configured secrets, none in the log records or "
            f"the output of {len(_outputs)} spawned processes"
        )
