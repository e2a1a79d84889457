"""`python -m tests.faults [--full] [--scenario NAME ...] [--out FILE]`: run the fault scenarios
against the real processes and print one table (and write it as JSON with `--out`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from tests.faults.measure import Outcome
from tests.faults.scenarios import SCENARIOS, SIZES

COLUMNS = (
    "scenario",
    "sent",
    "processed",
    "lost",
    "duplicated",
    "worst recovery / drained",
    "fault seen",
    "result",
)


def row(out: Outcome) -> tuple[str, ...]:
    """One table row."""
    first = "—" if out.recovery_s is None else f"{out.recovery_s:.1f} s"
    drained = "—" if out.drained_s is None else f"{out.drained_s:.1f} s"
    recovery = f"{first} / {drained}"
    if out.passed:
        result = "ok"
    else:
        result = "FAIL: " + (out.error.splitlines()[0] if out.error else _why(out))
    return (
        out.scenario,
        str(out.sent),
        str(out.processed),
        str(out.lost),
        str(out.duplicated),
        recovery,
        str(out.fault_hits),
        result[:110],
    )


def _why(out: Outcome) -> str:
    parts = []
    if out.lost:
        parts.append(f"{out.lost} lost")
    if out.duplicated:
        parts.append(f"{out.duplicated} duplicated")
    if out.wrong_tickets:
        parts.append(f"{len(out.wrong_tickets)} tickets wrong")
    if out.dead_letters:
        parts.append(f"{out.dead_letters} dead letters")
    return ", ".join(parts)


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table of `outcomes`."""
    rows = [COLUMNS, *(row(o) for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def details(outcomes: list[Outcome]) -> str:
    """What each scenario's recovery measures, and what else was found."""
    out = []
    for o in outcomes:
        out.append(
            f"{o.scenario}: {o.seconds:.0f} s; accepted {o.accepted}; busiest minute "
            f"{o.busiest} requests (limit {o.limit or 'none'}); recovery: "
            f"{o.recovery or 'no fault end to measure from'}"
        )
        for note in [*o.wrong_tickets[:5], *o.notes[:12]]:
            out.append("    " + note.replace("\n", "\n    ")[:1500])
    return "\n".join(out)


async def run_all(names: list[str], size: str) -> list[Outcome]:
    """Run the scenarios one after another."""
    outcomes = []
    for name in names:
        print(f"running {name} ({size}) …", file=sys.stderr, flush=True)
        out = await SCENARIOS[name](SIZES[size])
        print(f"  {' | '.join(row(out))}  ({out.seconds:.0f} s)", file=sys.stderr, flush=True)
        outcomes.append(out)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Run, print the table; exit 1 when a scenario not pending elsewhere failed."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument(
        "--full", action="store_true", help="full sizes (about 30 minutes on 2 CPUs)"
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--out", type=Path, help="write the outcomes as JSON here")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    size = "full" if args.full else "short"
    began = time.monotonic()
    outcomes = asyncio.run(run_all(names, size))
    print(table(outcomes))
    print()
    print(details(outcomes))
    print(f"\n{len(outcomes)} scenarios ({size}) in {time.monotonic() - began:.0f} s")
    if args.out:
        args.out.write_text(json.dumps([o.to_json() for o in outcomes], indent=2) + "\n")
    failed = [o for o in outcomes if not o.passed]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
