"""Run one outbox flusher in a process of its own, for the crash test: it sends the queued InboxOps
write-backs as a worker does, until it is killed (the API key comes from INBOXOPS_API_KEY)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import aiohttp
from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.batching import spec
from ticketwire.vendors.inboxops.client import InboxOpsClient
from workers.outbox import Outbox, OutboxPolicy


async def run(args: argparse.Namespace) -> None:
    """Flush until killed."""
    redis: Redis = Redis.from_url(args.url)
    async with aiohttp.ClientSession() as session:
        client = InboxOpsClient(
            session, args.api_url, api_key=Secret(os.environ["INBOXOPS_API_KEY"])
        )
        box = Outbox(
            redis,
            Keys(prefix=args.prefix),
            {"inboxops": client},
            owner=args.worker,
            specs={"inboxops": spec()},
            policy=OutboxPolicy(lease_s=args.lease, window_s=0.05, poll_s=0.02),
        )
        box.start()
        print("flusher started", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    """Parse the arguments and flush."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--lease", type=float, default=2.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
