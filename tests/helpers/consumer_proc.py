"""Run one consumer in a process of its own, for the crash test: it records what it handles and
hangs for good on one chosen event, so the test can kill it mid-delivery."""

from __future__ import annotations

import argparse
import asyncio
import logging

from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from workers.consumer import Consumer


def handled_key(keys: Keys) -> str:
    """List of `event_id|deliveries|worker` for every delivery a handler started."""
    return f"{keys.prefix}crash:handled"


def hanging_key(keys: Keys) -> str:
    """Set to the event id once the handler is stuck on it."""
    return f"{keys.prefix}crash:hanging"


async def run(args: argparse.Namespace) -> None:
    """Consume until killed."""
    redis: Redis = Redis.from_url(args.url)
    keys = Keys(prefix=args.prefix)

    async def handle(d: StoredDelivery) -> None:
        await redis.rpush(handled_key(keys), f"{d.event_id}|{d.deliveries}|{args.worker}")
        if d.event_id == args.hang_on:
            await redis.set(hanging_key(keys), d.event_id)
            await asyncio.Event().wait()

    consumer = Consumer(
        redis,
        keys,
        handle,
        worker_id=args.worker,
        partitions=args.partitions,
        lease_ttl=args.lease_ttl,
        block_ms=200,
    )
    await consumer.start()
    await asyncio.Event().wait()


def main() -> None:
    """Parse the arguments and consume."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--lease-ttl", type=float, default=1.5)
    parser.add_argument("--hang-on", required=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
