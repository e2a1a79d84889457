"""`ticketwire` entry point: parse arguments and hand off to one small module per verb."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

FILTER_HELP = (
    "the letters to take: comma-separated key=value of vendor, kind (event|call), rule, ticket, "
    "reason (a part of it), since and until (2h = two hours ago, or an ISO time), account "
    "(a helpdesk account's name; default for the single-account settings), "
    "e.g. 'kind=call,vendor=inboxops,since=2h'"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every verb."""
    from ticketwire.vendors.registry import active

    # The helpdesks with a simulator: `simulate` runs it, `fire` builds deliveries with it.
    simulated = [v.name for v in active().vendors if v.simulator is not None]
    parser = argparse.ArgumentParser(
        prog="ticketwire",
        description="Automation engine for helpdesk ticket webhooks.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    up = verbs.add_parser(
        "up",
        help="run the whole service locally (embedded Valkey and simulators when not configured)",
        description="Run the receiver, one worker, an embedded Valkey (unless REDIS_URL is set) "
        "and the InboxOps, cStar and Thena simulators (unless a helpdesk API is configured), "
        "with one more for each named account of TICKETWIRE_ACCOUNTS, in one process. Rules "
        "are reloaded when a file in the rules directory changes; Ctrl-C stops everything.",
        epilog="environment: PORT (the receiver's port, default 8000), TICKETWIRE_RULES (rules "
        "directory, default rules/), TICKETWIRE_DATA_DIR (where the embedded Valkey keeps its "
        "data, default .ticketwire), REDIS_URL, and each helpdesk's variables (README, "
        "Configuration).",
    )
    up.add_argument(
        "--simulator-port",
        type=int,
        default=8081,
        help="first simulator port: InboxOps on it, cStar and Thena on the next two, then one "
        "per named account (default 8081)",
    )
    up.add_argument(
        "--seed-tickets",
        type=int,
        default=3,
        help="tickets the simulators start with in a new data directory (default 3)",
    )
    up.add_argument(
        "--reset",
        action="store_true",
        help="start over: remove the data directory's Redis data, simulator tickets, keys and "
        "webhook secrets before starting",
    )

    init = verbs.add_parser(
        "init",
        help="start a project: example rules with a test each, Procfile, .env.example, README",
    )
    init.add_argument(
        "dir", nargs="?", type=Path, default=Path("."), help="where (default: this directory)"
    )

    check = verbs.add_parser("check", help="validate a rules directory and list event → rules")
    check.add_argument(
        "dir", nargs="?", type=Path, help="rules directory (default: $TICKETWIRE_RULES or rules/)"
    )

    sim = verbs.add_parser("simulate", help="run a helpdesk simulator on its own")
    sim.add_argument("vendor", choices=simulated)
    sim.add_argument("--port", type=int, help="default: 8081 inboxops, 8082 cstar, 8083 thena")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--webhook-url", help="deliver webhooks to this URL")
    sim.add_argument("--webhook-secret", help="sign deliveries with this secret")
    sim.add_argument("--seed", type=int, default=1, help="seed for ids and fault choices")
    sim.add_argument("--seed-tickets", type=int, default=3)
    sim.add_argument(
        "--rate-limit",
        help="requests per minute (0 = off; cstar also takes 1000/hour); default: the "
        "helpdesk's documented limit, as `up` uses",
    )
    cap = verbs.add_parser(
        "capture", help="write stored deliveries (raw bodies and headers) to a JSONL file"
    )
    cap.add_argument("-o", "--out", type=Path, help="file to write (default: stdout)")
    cap.add_argument("--limit", type=int, default=1000, help="newest N deliveries (default 1000)")
    cap.add_argument("--since", type=float, help="only the last N seconds")

    dry = verbs.add_parser(
        "dry-run", help="run rules on captured deliveries and print what they would do"
    )
    dry.add_argument("files", nargs="+", type=Path, help="capture files (JSONL) or JSON bodies")
    dry.add_argument(
        "--rules", type=Path, help="rules directory (default: $TICKETWIRE_RULES or rules/)"
    )
    dry.add_argument("--vendor", help="vendor of plain JSON bodies (e.g. inboxops)")

    rep = verbs.add_parser("replay", help="send captured deliveries to a receiver again")
    rep.add_argument("files", nargs="+", type=Path)
    rep.add_argument(
        "--to",
        help="receiver URL, e.g. https://host/webhooks (default: the running `ticketwire up`, "
        "re-signing with its secrets)",
    )
    rep.add_argument(
        "--secret",
        help="re-sign with this webhook secret (another environment); for Thena in token mode, "
        "the token to send",
    )
    rep.add_argument("--thena-mode", choices=["token", "hmac"], default="token")

    fire = verbs.add_parser(
        "fire", help="send one signed delivery of a helpdesk, built from flags or a JSON file"
    )
    fire.add_argument("vendor", choices=simulated)
    fire.add_argument("--ticket", help="ticket id (or an `id` in --file)")
    fire.add_argument(
        "--event", default="ticket.updated", help="event type (default ticket.updated)"
    )
    fire.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a ticket field; VALUE is JSON when it parses, else text; a.b=… nests (repeatable)",
    )
    fire.add_argument(
        "--file", type=Path, help="JSON object of ticket fields, applied before --set"
    )
    fire.add_argument(
        "--to", help="receiver URL (default: the running `ticketwire up`'s /webhooks)"
    )
    fire.add_argument(
        "--tenant",
        help="workspace / team / organisation id (default: the local simulator's, or the "
        "configured CSTAR_TEAM_ID / THENA_ORG_ID)",
    )
    fire.add_argument(
        "--secret",
        help="sign with this secret (default: the configured *_WEBHOOK_SECRETS, else the "
        "running `ticketwire up`'s)",
    )
    fire.add_argument(
        "--account",
        default="default",
        help="send to this account's route, signed with its secret from TICKETWIRE_ACCOUNTS "
        "(or the running `ticketwire up`'s) (default: default)",
    )

    diff = verbs.add_parser(
        "diff", help="how a rules change alters the planned calls on captured deliveries"
    )
    diff.add_argument("files", nargs="+", type=Path, help="capture files (JSONL) or JSON bodies")
    diff.add_argument(
        "--rules",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="give it twice: the old rules directory, then the new one",
    )
    diff.add_argument("--vendor", help="vendor of plain JSON bodies (e.g. inboxops)")
    diff.add_argument("--json", action="store_true", help="print JSON for scripts")

    dlq = verbs.add_parser(
        "dlq", help="list, show, redrive or drop dead letters (work that could not succeed)"
    )
    dlq_verbs = dlq.add_subparsers(dest="dlq_verb", required=True, metavar="ACTION")
    dlq_list = dlq_verbs.add_parser("list", help="newest dead letters first, one line each")
    dlq_list.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    dlq_list.add_argument("--json", action="store_true", help="print JSON for scripts")
    dlq_show = dlq_verbs.add_parser(
        "show", help="everything about one dead letter: attempts, call, event body"
    )
    dlq_show.add_argument("id", help="dead-letter id, as `dlq list` prints it")
    dlq_show.add_argument("--json", action="store_true", help="print JSON for scripts")
    dlq_redrive = dlq_verbs.add_parser(
        "redrive", help="put dead letters back to work; each is removed once requeued"
    )
    which = dlq_redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="dead-letter id, as `dlq list` prints it")
    which.add_argument("--all", action="store_true", help="every dead letter, oldest first")
    which.add_argument("--filter", metavar="FILTER", help=FILTER_HELP)
    dlq_redrive.add_argument(
        "--dry-run",
        action="store_true",
        help="say what a redrive would do with each letter, and change nothing",
    )
    dlq_redrive.add_argument("--json", action="store_true", help="print JSON for scripts")
    dlq_drop = dlq_verbs.add_parser(
        "drop", help="delete one dead letter, or those a filter matches"
    )
    which_drop = dlq_drop.add_mutually_exclusive_group(required=True)
    which_drop.add_argument("id", nargs="?", help="dead-letter id, as `dlq list` prints it")
    which_drop.add_argument("--filter", metavar="FILTER", help=FILTER_HELP)
    dlq_drop.add_argument(
        "--dry-run", action="store_true", help="list the letters it would drop, and drop none"
    )
    dlq_drop.add_argument("--json", action="store_true", help="print JSON for scripts")
    trace = verbs.add_parser(
        "trace",
        help="what one event did (by its event id), or a ticket's timeline across events",
        description="Show the trace of one event, by the helpdesk's event id: its deliveries, "
        "the stale check, changes seen, every rule considered with the values its condition "
        "saw, suppressions, planned and sent calls, retries and dead letters. With --ticket, "
        "show every record of every event of one ticket, in order.",
        epilog="exit status: 0 shown, 1 nothing found (or Redis failed), 2 misconfigured or "
        "misused, 3 ambiguous (name the --vendor, or the full ticket key), 4 no traces are kept "
        "(TICKETWIRE_TRACE_RETENTION=0).",
    )
    trace.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="the helpdesk's event id")
    trace.add_argument("--vendor", help="the event's helpdesk, when its id is known for several")
    trace.add_argument(
        "--account",
        default="default",
        help="the configured account the event was delivered to (default: default)",
    )
    trace.add_argument(
        "--ticket",
        metavar="KEY",
        help="a ticket's timeline: vendor:tenant:ticket as `dlq list` prints it, or "
        "vendor:ticket when only one account has that ticket",
    )
    trace.add_argument(
        "--limit", type=int, help="with --ticket: the newest N records (default: all kept)"
    )
    trace.add_argument("--json", action="store_true", help="print JSON for scripts")
    rules = verbs.add_parser(
        "rules",
        help="which rules are published and which each live worker runs; exit 1 if they differ",
    )
    rules.add_argument("--json", action="store_true", help="print JSON for scripts")
    rules_verbs = rules.add_subparsers(dest="rules_verb", metavar="ACTION")
    for action, text in (
        ("pause", "skip a rule on every worker (reason `paused`) until resumed; no restart"),
        ("resume", "run a paused rule again on every worker"),
    ):
        sub = rules_verbs.add_parser(action, help=text)
        sub.add_argument("name", help="rule name, as `ticketwire check` lists it")
        # SUPPRESS: `rules --json pause X` keeps the --json given before the action.
        sub.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `ticketwire` command line."""
    args = build_parser().parse_args(argv)
    if args.verb == "up":
        from cli.up import run_up

        sys.exit(
            run_up(
                simulator_port=args.simulator_port,
                seed_tickets=args.seed_tickets,
                reset=args.reset,
            )
        )
    if args.verb == "init":
        from cli.init import run_init

        sys.exit(run_init(args.dir))
    if args.verb == "check":
        from cli.check import run_check

        sys.exit(run_check(args.dir))
    if args.verb == "capture":
        from cli.capture import run_capture

        sys.exit(run_capture(args.out, limit=args.limit, since_s=args.since))
    if args.verb == "dry-run":
        from cli.dryrun import run_dry_run
        from ticketwire.config import rules_dir_of

        rules = args.rules or rules_dir_of(os.environ)
        sys.exit(run_dry_run(args.files, rules, args.vendor))
    if args.verb == "replay":
        from cli.replay import run_replay

        sys.exit(run_replay(args.files, args.to, args.secret, args.thena_mode))
    if args.verb == "fire":
        from cli.fire import FireRequest, run_fire

        sys.exit(
            run_fire(
                FireRequest(
                    vendor=args.vendor,
                    event=args.event,
                    ticket_id=args.ticket,
                    sets=tuple(args.sets),
                    file=args.file,
                    to=args.to,
                    tenant=args.tenant,
                    secret=args.secret,
                    account=args.account,
                )
            )
        )
    if args.verb == "diff":
        from cli.diff import run_diff

        if len(args.rules) != 2:
            build_parser().error("diff: give --rules twice: the old directory, then the new one")
        sys.exit(run_diff(args.files, args.rules[0], args.rules[1], args.vendor, args.json))
    if args.verb == "dlq":
        from cli.dlq import run_dlq

        sys.exit(
            run_dlq(
                args.dlq_verb,
                letter_id=getattr(args, "id", None),
                every=getattr(args, "all", False),
                filter_text=getattr(args, "filter", None),
                dry_run=getattr(args, "dry_run", False),
                limit=getattr(args, "limit", 20),
                as_json=args.json,
            )
        )
    if args.verb == "trace":
        from cli.trace import run_trace

        sys.exit(
            run_trace(
                args.event_id,
                vendor=args.vendor,
                account=args.account,
                ticket=args.ticket,
                limit=args.limit,
                as_json=args.json,
            )
        )
    if args.verb == "rules":
        from cli.rules import run_pause, run_rules

        if args.rules_verb:
            sys.exit(run_pause(args.rules_verb, args.name, as_json=args.json))
        sys.exit(run_rules(as_json=args.json))
    if args.verb == "simulate":
        from cli.simulate import run_simulate

        sys.exit(
            run_simulate(
                args.vendor,
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
