"""`python -m bench [--quick] [--out PATH] [--scenario N ...]`: run the benchmarks, print one table.

Scenarios: 0 calibration of the load generator, 1 intake flat out (1c: the same with cStar
deliveries), 2 intake latency at a paced rate, 3 whole box flat out (3b: the same on few
tickets), 4 backlog drain, 5 memory, 6 write-back under the helpdesk's 100/min rate limit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.helpdesk import start_helpdesk
from bench.load import LoadGen, pick_tool, tool_version
from bench.payload import WRITEBACK_EVERY, Bodies
from bench.procs import ROOT, BenchError, Procs
from bench.redisserver import server_binary, server_version
from bench.report import build_rows, loadavg, machine_facts, render, write_json
from bench.scenarios import FULL, OPT_IN, QUICK, SCENARIOS, Bench, plan_json
from bench.stacks import STACKS, TRACES_OFF

SECRET = "whsec_bench_0123456789abcdef"
TICKETS = 5_000
RULES = Path("bench/rules")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, once each (< 3 min)")
    parser.add_argument(
        "--out", type=Path, help="results JSON (default bench/results/bench-<UTC time>.json)"
    )
    parser.add_argument(
        "--scenario",
        nargs="+",
        choices=sorted(SCENARIOS),
        help="run only these scenarios (default: all but 1d, the durability cost)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes each stack runs in scenario 6 (default 1)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="runs of each scenario (default: 1 with --quick, else 3); stacks alternate order",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "aiohttp"),
        default="auto",
        help="load generator (auto: wrk if on PATH, else the aiohttp one)",
    )
    return parser.parse_args(argv)


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP take the same path as Ctrl-C: unwind, stopping every child on the way.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios; print the table; write the JSON; return the exit status."""
    args = parse_args(argv)
    started = time.monotonic()
    plan = QUICK if args.quick else FULL
    if args.workers < 1:
        print("bench: --workers must be at least 1", file=sys.stderr)
        return 2
    plan = dataclasses.replace(plan, ratelimit_workers=args.workers)
    if args.reps is not None:
        if args.reps < 1:
            print("bench: --reps must be at least 1", file=sys.stderr)
            return 2
        plan = dataclasses.replace(plan, reps=args.reps)
    selected = args.scenario or sorted(set(SCENARIOS) - OPT_IN)
    stamp = datetime.now(UTC)
    out = args.out or ROOT / "bench" / "results" / f"bench-{stamp:%Y%m%dT%H%M%SZ}.json"
    # Ctrl-C must unwind even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    tool = pick_tool(args.loadgen)
    binary = server_binary()
    data: dict[str, Any] = {
        "started": stamp.isoformat(),
        "command": ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "mode": plan.mode,
        "plan": plan_json(plan),
        "scenarios": selected,
        "machine": machine_facts(server_version(binary), tool_version(tool)),
        "loadavg_start": loadavg(),
        "stacks": {s.name: s.description for s in (*STACKS, TRACES_OFF)},
        "counting": {
            "ours": "processed = consumer-group acknowledged entries (XINFO GROUPS "
            "entries-read - pending, summed over partition streams)",
            "baseline": "processed = the counter its arq job INCRs after its work",
            "accepted": "202 answers counted by the load generator",
            "helpdesk_calls": "scenario 6: /api/v1 requests in the simulator's journal "
            "(GET /_sim/journal), 429s included; tagged tickets from GET /_sim/tickets",
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="ticketwire-bench-"))
    bench: Bench | None = None
    failed: BaseException | None = None
    print(
        f"bench: {plan.mode} mode, scenarios {' '.join(selected)}, load generator "
        f"{data['machine']['load_generator']}, {data['machine']['nproc']} CPUs, "
        f"load average {data['loadavg_start'][0]:.2f}",
        file=sys.stderr,
        flush=True,
    )
    try:
        with Procs(workdir / "logs") as procs:
            helpdesk = start_helpdesk(procs, TICKETS)
            bodies = Bodies(helpdesk.workspace, SECRET)
            bench = Bench(
                plan,
                procs,
                LoadGen(tool, procs, workdir),
                workdir,
                redis_binary=binary,
                api_url=helpdesk.url,
                api_key=helpdesk.api_key,
                secret=SECRET,
                rules=RULES,
                bodies=bodies,
            )
            sizes = [len(body) for _, body in bodies.make(1000)]
            data["load"] = {
                "tickets": bodies.tickets,
                "burst_tickets": plan.burst_tickets,
                "writeback_every": WRITEBACK_EVERY,
                "body_bytes_mean": sum(sizes) / len(sizes),
                "body_bytes_range": [min(sizes), max(sizes)],
                "envelope": "{event, event_id, tenant_id, created_at, data: <ticket>}",
            }
            data["scenario_seconds"] = timings = {}
            for scenario in selected:
                began = time.monotonic()
                SCENARIOS[scenario](bench)
                timings[scenario] = round(time.monotonic() - began, 1)
    except (BenchError, KeyboardInterrupt) as exc:
        failed = exc
    except Exception as exc:  # noqa: BLE001 - still report what was measured, then the cause
        traceback.print_exc()
        failed = exc
    data["finished"] = datetime.now(UTC).isoformat()
    data["duration_s"] = time.monotonic() - started
    data["loadavg_end"] = loadavg()
    runs = bench.runs if bench is not None else {}
    rows = build_rows(runs)
    data["runs"] = runs
    data["rows"] = [row.to_json() for row in rows]
    data["warnings"] = bench.warnings if bench is not None else []
    if failed is not None:
        data["error"] = f"{type(failed).__name__}: {failed}"
    write_json(out, data)
    m = data["machine"]
    print(
        f"ticketwire benchmarks, {plan.mode} mode, {data['duration_s']:.0f}s: {m['nproc']} CPUs "
        f"({m['cpu_model']}), Python {m['python']}, {m['redis_server'].split(' sha=')[0]}, "
        f"load generator {m['load_generator']}, load average "
        f"{data['loadavg_start'][0]:.2f} at start, {data['loadavg_end'][0]:.2f} at end\n"
    )
    print(render(rows))
    for warning in data["warnings"]:
        print(f"warning: {warning}")
    print(f"\nraw runs: {out} ({data['duration_s']:.0f}s)")
    if failed is not None:
        print(f"\nbench stopped early: {data['error']}\nprocess logs kept in {workdir / 'logs'}")
        return 130 if isinstance(failed, KeyboardInterrupt) else 1
    with contextlib.suppress(OSError):
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
