"""Textbook webhook receiver: verify the HMAC, validate with pydantic, `enqueue_job`, answer 202.

REDIS_URL=redis://... PORT=8001 INBOXOPS_WEBHOOK_SECRET=... [CSTAR_WEBHOOK_SECRET=...] \
    python -m bench.baseline.receiver
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time

from aiohttp import web
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from pydantic import ValidationError

from bench.baseline.models import CStarEnvelope, Envelope

SIGNATURE_HEADER = "X-InboxOps-Signature"
CSTAR_SIGNATURE_HEADER = "X-Signature"
#: cStar's docs: refuse deliveries whose `t` is more than five minutes off.
CSTAR_TOLERANCE_S = 300
pool_key = web.AppKey("pool", ArqRedis)


def cstar_signature_ok(header: str, body: bytes, key: bytes) -> bool:
    """Check `t=<unix seconds>,v1=<hex>` against the body, as cStar's docs show."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > CSTAR_TOLERANCE_S:
        return False
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def create_app(redis_url: str, secret: str, cstar_secret: str | None = None) -> web.Application:
    """The app: `POST /webhooks/inboxops`, and `POST /webhooks/cstar` given its secret."""
    app = web.Application()
    key = secret.encode()
    cstar_key = (cstar_secret or "").encode()

    async def connect(app: web.Application) -> None:
        app[pool_key] = await create_pool(RedisSettings.from_dsn(redis_url))

    async def disconnect(app: web.Application) -> None:
        await app[pool_key].aclose()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            event = Envelope.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await request.app[pool_key].enqueue_job("process", event)
        return web.Response(status=202)

    async def cstar_webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if not cstar_signature_ok(request.headers.get(CSTAR_SIGNATURE_HEADER, ""), body, cstar_key):
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            event = CStarEnvelope.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await request.app[pool_key].enqueue_job("process", event)
        return web.Response(status=202)

    app.on_startup.append(connect)
    app.on_cleanup.append(disconnect)
    app.router.add_post("/webhooks/inboxops", webhook)
    if cstar_secret:
        app.router.add_post("/webhooks/cstar", cstar_webhook)
    return app


def main() -> None:
    """Serve until stopped."""
    logging.basicConfig(level=logging.WARNING)
    app = create_app(
        os.environ["REDIS_URL"],
        os.environ["INBOXOPS_WEBHOOK_SECRET"],
        os.environ.get("CSTAR_WEBHOOK_SECRET"),
    )
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")), print=None)


if __name__ == "__main__":
    main()
