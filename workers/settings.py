"""`arq workers.settings.WorkerSettings`: the Procfile's `worker` process.

Settings and rules are read once, here, when arq imports this module; a bad variable or a rule
file with a typo stops the worker before it takes any event, with a message saying what to fix.
"""

from __future__ import annotations

import os
from typing import Any

import arq.cli

from ticketwire.config import Settings, log_format_of
from ticketwire.engine import check_rules
from ticketwire.errors import ConfigError
from ticketwire.logs import arq_log_config, configure_logging, exit_misconfigured
from workers import arqhost
from workers.app import worker_options


def _load() -> dict[str, Any]:
    try:
        settings = Settings.from_env(os.environ, role="worker")
    except ConfigError as exc:
        exit_misconfigured(
            f"ticketwire worker: configuration error: {exc}",
            log_format_of(os.environ, strict=False),
        )
    configure_logging(settings)
    router, errors = check_rules(settings.rules_dir)
    if errors or router is None:
        lines = "\n".join(f"  {e}" for e in errors)
        exit_misconfigured(
            f"ticketwire worker: {len(errors)} error(s) in {settings.rules_dir}:\n{lines}",
            settings.log_format,
        )
    # arq's CLI configures logging after importing this module: with this, only arq's level,
    # so its start-up lines go through the handler above. The worker sets logging up again
    # when it starts, in case arq was given a logging configuration of its own.
    arq.cli.default_log_config = arq_log_config  # type: ignore[attr-defined]
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
