"""A trivial HTTP server (read the body, answer 202) to show how much the load generator can offer.

python -m bench.trivial --port 8002
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    """Read the body and answer 202, nothing else."""
    await request.read()
    return web.Response(status=202)


def main() -> None:
    """Serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
