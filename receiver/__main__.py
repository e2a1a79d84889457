"""`python -m receiver`: the Procfile's `web` process."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from receiver.app import create_app, vendor_intakes
from receiver.serve import serve
from ticketwire.config import Settings, log_format_of
from ticketwire.errors import ConfigError
from ticketwire.logs import configure_logging, exit_misconfigured
from ticketwire.redisconn import connect


def main() -> None:
    """Read settings from the environment and serve until stopped."""
    try:
        settings = Settings.from_env(os.environ, role="web")
    except ConfigError as exc:
        exit_misconfigured(
            f"ticketwire web: configuration error: {exc}", log_format_of(os.environ, strict=False)
        )
    configure_logging(settings)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    assert settings.redis_url is not None  # guaranteed by role="web"
    redis = connect(settings.redis_url, sentinel_password=settings.sentinel_password)
    app = create_app(settings, redis, vendor_intakes(settings))

    async def close_redis(app: web.Application) -> None:
        await redis.aclose()

    app.on_cleanup.append(close_redis)
    try:
        asyncio.run(serve(app, settings))
    except ConfigError as exc:
        # Found at start, against the server itself: TICKETWIRE_DURABILITY it cannot give.
        exit_misconfigured(f"ticketwire web: configuration error: {exc}", settings.log_format)


if __name__ == "__main__":
    main()
