"""`python -m tests.faults.simulate VENDOR PORT CONFIG_JSON`: one simulator in its own process,
built with config fields `ticketwire simulate` has no flag for (webhook retry waits in seconds
rather than minutes, so a sender's retry after an outage comes within the run)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from cli.simulate import simulator_of
from ticketwire.logs import setup_logging


def main(argv: list[str]) -> int:
    """Serve until SIGINT/SIGTERM."""
    vendor, port, config = argv[0], int(argv[1]), json.loads(argv[2])
    bundle = simulator_of(vendor)
    for name, value in config.items():
        if isinstance(value, list):
            config[name] = tuple(value)
    cfg = bundle.config(**config)
    setup_logging("WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(bundle.run(cfg, "127.0.0.1", port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
