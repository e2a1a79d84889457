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
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, UnsignalledShutdown) for f in arq_worker.filters):
        arq_worker.addFilter(UnsignalledShutdown())
    # A later dictConfig (arq's CLI runs one) disables loggers created before it; undo that.
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("ticketwire") and isinstance(logger, logging.Logger):
            logger.disabled = False


class UnsignalledShutdown(logging.Filter):
    """Drop arq's `shutdown on SIGUSR1` line: no such signal was sent.

    arq writes it when a worker that does not handle signals itself (`ticketwire up`, which
    says on its own which signal stopped it) is closed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one line; every other record passes."""
        args = record.args
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("shutdown on %s")
            and isinstance(args, tuple)
            and args[:1] == ("SIGUSR1",)
        )
