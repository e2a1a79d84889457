"""`ticketwire` entry point: parse arguments and hand off to one small module per verb."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every verb."""
    parser = argparse.ArgumentParser(
        prog="ticketwire",
        description="Automation engine for helpdesk ticket webhooks.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    up = verbs.add_parser(
        "up",
        help="run the whole service locally (embedded Valkey and simulator when not configured)",
    )
    up.add_argument("--simulator-port", type=int, default=8081, help="default: 8081")
    up.add_argument("--seed-tickets", type=int, default=3, help="tickets to create (default 3)")

    check = verbs.add_parser("check", help="validate a rules directory and list event → rules")
    check.add_argument(
        "dir", nargs="?", type=Path, help="rules directory (default: $TICKETWIRE_RULES or rules/)"
    )

    sim = verbs.add_parser("simulate", help="run a helpdesk simulator on its own")
    sim.add_argument("vendor", choices=["inboxops"])
    sim.add_argument("--port", type=int, default=8081)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--webhook-url", help="deliver webhooks to this URL")
    sim.add_argument("--webhook-secret", help="sign deliveries with this secret")
    sim.add_argument("--seed", type=int, default=1, help="seed for ids and fault choices")
    sim.add_argument("--seed-tickets", type=int, default=3)
    sim.add_argument(
        "--rate-limit", type=int, default=100, help="requests per minute per workspace (0 = off)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `ticketwire` command line."""
    args = build_parser().parse_args(argv)
    if args.verb == "up":
        from cli.up import run_up

        sys.exit(run_up(simulator_port=args.simulator_port, seed_tickets=args.seed_tickets))
    if args.verb == "check":
        from cli.check import run_check

        sys.exit(run_check(args.dir))
    if args.verb == "simulate":
        from cli.simulate import run_simulate

        sys.exit(
            run_simulate(
                host=args.host,
                port=args.port,
                webhook_url=args.webhook_url,
                webhook_secret=args.webhook_secret,
                seed=args.seed,
                seed_tickets=args.seed_tickets,
                rate_limit=args.rate_limit,
            )
        )


if __name__ == "__main__":
    main()
