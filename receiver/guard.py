"""The last line of defence: no request ends in a bare 500, and every 5xx says when to retry."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from receiver.answers import RETRY_AFTER_S, error
from receiver.logbudget import RefusalLogBudget

log = logging.getLogger("ticketwire.receiver")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an unexpected exception into a logged 500 with `Retry-After`, never a bare 500."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # 404, 405, 413 from aiohttp itself: answers as they are, with a retry hint on a 5xx.
        if exc.status >= 500:
            exc.headers.setdefault("Retry-After", str(RETRY_AFTER_S))
        raise
    except Exception:
        # A bug, not the sender's fault: the delivery was not stored, so the sender must retry.
        log.exception(
            "internal error %s %r: not stored, answered 500", request.method, request.path
        )
        return error(
            500,
            "internal_error",
            "the receiver failed on this request; it was not stored, retry later",
        )
    if response.status >= 500 and not response.prepared:
        response.headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return response


class SenderErrors(logging.Filter):
    """Log a request aiohttp refuses at the HTTP level as one warning line, not a traceback.

    Bad framing, a header over 8 KiB, a coding aiohttp cannot decode: aiohttp answers 400 itself
    and logs an ERROR with a traceback, but they are the sender's mistakes and, from the
    internet, everyday input.
    """

    def __init__(self) -> None:
        super().__init__()
        self._budget = RefusalLogBudget()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite aiohttp's record of a 4xx refusal (within a budget); pass every other."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, web.RequestPayloadError):
            # A body aiohttp drained after an early answer was broken (bad chunk framing, say).
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            note = self._budget.admit(exc.code)
            if note is None:
                return False
            problem = " ".join(str(exc.message).splitlines()[:1])[:200]
            record.msg = f"rejected {exc.code} at the HTTP level: %s%s"
            record.args = (problem, note)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


#: Installed once on aiohttp's server logger by every receiver app.
sender_errors = SenderErrors()
