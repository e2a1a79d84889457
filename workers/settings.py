"""`arq workers.settings.WorkerSettings`: the Procfile's `worker` process.

Settings and rules are read once, here, when arq imports this module; a bad variable or a rule
file with a typo stops the worker before it takes any event, with a message saying what to fix.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ticketwire.config import Settings
from ticketwire.engine import check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import setup_logging
from workers import arqhost
from workers.app import worker_options


def _load() -> dict[str, Any]:
    try:
        settings = Settings.from_env(os.environ, role="worker")
    except ConfigError as exc:
        sys.exit(f"ticketwire worker: configuration error: {exc}")
    setup_logging(settings.log_level)
    router, errors = check_rules(settings.rules_dir)
    if errors or router is None:
        lines = "\n".join(f"  {e}" for e in errors)
        sys.exit(f"ticketwire worker: {len(errors)} error(s) in {settings.rules_dir}:\n{lines}")
    # arq's CLI replaces the logging configuration after importing this module, so the worker
    # sets its own up again when it starts.
    return worker_options(settings, router, configure_logging=True)


class WorkerSettings:
    """arq reads its options from this class's attributes, set below from the environment."""


for _name, _value in _load().items():
    setattr(WorkerSettings, _name, _value)

# arq's command line then builds the worker that rides out Redis outages instead of exiting.
arqhost.install()

try:
    import uvloop

    uvloop.install()
except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
    pass
