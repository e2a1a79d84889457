"""Logging set-up: one line per step, readable text or JSON, secrets never written.

Every line a process writes goes through the root logger's one handler on stderr, arq's and
aiohttp's included. `TICKETWIRE_LOG_FORMAT=json` writes each as one JSON object: `time`,
`level`, `logger`, `message`, and `vendor`, `event_id`, `ticket`, `rule` where they apply, and
`exception` for a traceback. The vendor, event and ticket come from the context the receiver
(per request) and the pipeline (per event) set with `set_log_context`; the rule from the
record, either bound by a rule's own logger or, for the worker's step lines about a rule, their
first argument (they all read `rule %s …` or `scheduled rule %s …`).

The JSON is built with the standard library: the fields are few and fixed, and the context and
redaction are ours either way, so a JSON logging package would add a dependency for a dozen lines.

Secrets: the handler's formatter replaces every configured secret value (webhook secrets, API
keys, the console token, Redis's password) with `***` in the finished line, exception text and
arguments included, in both formats. It works on the formatted text rather than in a filter
because %-arguments and tracebacks are only turned into text at formatting, after filters ran.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlparse

if TYPE_CHECKING:
    from ticketwire.config import Settings

#: The fields a JSON line carries beside time, level, logger and message, where they apply.
CONTEXT_FIELDS = ("vendor", "event_id", "ticket", "rule")

_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "ticketwire_log_context", default=None
)
# `rule %s …` and `scheduled rule %s …`: the worker's lines about one rule.
_RULE_LINE = re.compile(r"^(?:scheduled )?rule %s\b")
_TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def set_log_context(**fields: str | None) -> None:
    """Name the vendor, event and ticket the current task's lines are about (None: not known).

    Each request and each event is handled in its own task (or lane of one ticket), so the
    context stays with it and needs no reset.
    """
    merged = dict(_context.get() or {})
    for key, value in fields.items():
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    _context.set(merged)


def log_context() -> Mapping[str, str]:
    """The fields set for the current task."""
    return _context.get() or {}


class Redactor:
    """Replace each of a set of secret values with `***` wherever it appears in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        """`text` with every secret replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub("***", text)


class ContextFilter(logging.Filter):
    """Put the task's vendor, event and ticket, and the rule a line is about, on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True: this filter only adds fields."""
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if getattr(record, "rule", None) is None:
            args = record.args
            if (
                isinstance(record.msg, str)
                and isinstance(args, tuple)
                and args
                and _RULE_LINE.match(record.msg)
            ):
                record.rule = str(args[0])
        ticket_id = getattr(record, "ticket_id", None)
        if getattr(record, "ticket", None) is None and ticket_id:
            # A rule's own logger binds the ticket's id (the pipeline's context has its key).
            record.ticket = ticket_id
        return True


class TextFormatter(logging.Formatter):
    """`time level logger: message`, with secrets replaced."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(_TEXT_FORMAT, "%H:%M:%S")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The line (and any traceback) with secrets replaced."""
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with secrets replaced in every value."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        redact = self._redact
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = redact(str(value))
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exception"] = redact(record.exc_text)
        if record.stack_info:
            doc["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def setup_logging(level: str = "INFO", *, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Send every line of the process to stderr, as text or JSON (`fmt`), secrets replaced."""
    handler = logging.StreamHandler(sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our own step lines say; arq logs every job start.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, UnsignalledShutdown) for f in arq_worker.filters):
        arq_worker.addFilter(UnsignalledShutdown())
    # Lines of a logger with a handler of its own (arq's, set before) go through ours alone.
    for name, logger in logging.Logger.manager.loggerDict.items():
        if not isinstance(logger, logging.Logger):
            continue
        if name.startswith(("arq", "aiohttp")):
            logger.handlers[:] = []
            logger.propagate = True
        # A later dictConfig (arq's CLI runs one) disables loggers created before it; undo that.
        if name.startswith("ticketwire"):
            logger.disabled = False
    # Python's warnings and uncaught exceptions are lines of the process too.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("ticketwire").critical("uncaught exception", exc_info=(kind, exc, tb))


def exit_misconfigured(message: str, fmt: str) -> NoReturn:
    """Stop the process with `message`: as is in text, as one JSON line (level ERROR) in JSON."""
    if fmt != "json":
        sys.exit(message)
    setup_logging(fmt="json")
    logging.getLogger("ticketwire").error("%s", message)
    sys.exit(1)


def arq_log_config(verbose: bool) -> dict[str, Any]:
    """What arq's command line configures logging with: arq's level only, no handler of its own.

    arq's default gives its logger a handler and format of its own; its lines then escape the
    JSON format and the redaction. With this they go through the root handler like every line.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {"arq": {"level": "DEBUG" if verbose else "INFO", "propagate": True}},
    }


def configure_logging(settings: Settings) -> None:
    """`setup_logging` with a process's settings: level, format, and the secrets to replace."""
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=secret_values(settings))


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in `settings`, to keep out of logs."""
    out: list[str] = []
    from ticketwire.vendors.registry import active

    for vendor in active().vendors:
        for account in settings.accounts(vendor.name).values():
            out.extend(s.reveal() for s in vendor.secrets(account))
    if settings.console_token is not None:
        out.append(settings.console_token.reveal())
    if settings.redis_url:
        password = urlparse(settings.redis_url).password
        if password:
            out.append(password)
    return out


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
