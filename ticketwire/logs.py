"""Logging set-up: one line per step, `key=value` fields, secrets never formatted."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    """Send ticketwire's step lines to stderr as `time level logger: message`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our own step lines say; arq logs every job start.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # A later dictConfig (arq's CLI runs one) disables loggers created before it; undo that.
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("ticketwire") and isinstance(logger, logging.Logger):
            logger.disabled = False
