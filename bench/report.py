"""Turn raw runs into the one table (ours beside the baseline, ratio, target, met?) and the JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

Run = dict[str, Any]
PACKAGES = ("aiohttp", "redis", "hiredis", "arq", "pydantic", "pydantic-core", "uvloop")


@dataclass
class Row:
    """One line of the table; values are every run's figure (median and range are shown)."""

    scenario: str
    metric: str
    ours: list[float]
    baseline: list[float]
    fmt: str = ",.0f"
    target: str = ""
    met: bool | None = None
    note: str = ""
    #: Divide by this instead of the baseline's median (a row with no baseline of its own).
    against: float | None = None

    @property
    def ratio(self) -> float | None:
        """Median ours / median baseline (or / `against`)."""
        if not self.ours or not (self.baseline or self.against):
            return None
        base = self.against if self.against is not None else statistics.median(self.baseline)
        return statistics.median(self.ours) / base if base else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready row with medians."""
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "ours": self.ours,
            "baseline": self.baseline,
            "ours_median": statistics.median(self.ours) if self.ours else None,
            "baseline_median": statistics.median(self.baseline) if self.baseline else None,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


def cell(values: Sequence[float], fmt: str) -> str:
    """`median` for one run, `median (min–max)` for several, `—` for none."""
    if not values:
        return "—"
    med = format(statistics.median(values), fmt)
    if len(values) == 1:
        return med
    return f"{med} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _of(runs: Sequence[Run], stack: str, field: str) -> list[float]:
    return [float(r[field]) for r in runs if r.get("stack") == stack and r.get(field) is not None]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _intake_rows(runs: Sequence[Run], label: str) -> list[Row]:
    """Scenario 1's rows (also 1c's): accepted/s against the target, CPU per delivery."""
    if not runs:
        return []
    row = Row(
        label,
        "accepted deliveries/s",
        _of(runs, "ours", "accepted_per_s"),
        _of(runs, "baseline", "accepted_per_s"),
        target="ours ≥ 3× baseline",
    )
    row.met = None if row.ratio is None else row.ratio >= 3.0
    return [
        row,
        Row(
            label,
            "receiver CPU µs per delivery",
            _of(runs, "ours", "receiver_cpu_us"),
            _of(runs, "baseline", "receiver_cpu_us"),
        ),
        Row(
            label,
            "Redis CPU µs per delivery",
            _of(runs, "ours", "redis_cpu_us"),
            _of(runs, "baseline", "redis_cpu_us"),
            fmt=",.1f",
        ),
    ]


def _ratelimit_rows(runs: Sequence[Run]) -> list[Row]:
    """Scenario 6's rows: calls, 429s, tickets tagged, drain time and drain over the floor."""
    if not runs:
        return []
    first = runs[0]
    n = int(first["tickets"])
    floor = float(first["floor_s"])
    per_min, bulk_max = int(first["per_min"]), int(first["bulk_max"])
    bulk = math.ceil(n / bulk_max)
    workers = int(first.get("workers", 1))
    label = (
        f"6 write-back under {per_min}/min ({n:,} tickets, 1 delivery each at "
        f"{first['offered_per_s']:,.0f}/s{f', {workers} workers' if workers > 1 else ''})"
    )
    calls = Row(
        label,
        "API calls the helpdesk received (429s included)",
        _of(runs, "ours", "calls"),
        _of(runs, "baseline", "calls"),
        target=f"ours ≤ 1.05 × ⌈N/{bulk_max}⌉ = {1.05 * bulk:,.0f}",
    )
    calls.met = None if not calls.ours else max(calls.ours) <= 1.05 * bulk
    tagged = Row(
        label,
        "tickets carrying the tag at the end",
        _of(runs, "ours", "tagged_end"),
        _of(runs, "baseline", "tagged_end"),
        target=f"ours: all {n:,}",
    )
    tagged.met = None if not tagged.ours else min(tagged.ours) >= n
    drain = Row(
        label,
        "drain s, first delivery sent → every ticket tagged",
        _of(runs, "ours", "drain_s"),
        _of(runs, "baseline", "drain_s"),
        fmt=",.1f",
    )
    over = Row(
        label,
        f"drain / floor (floor {floor:,.1f} s)",
        _of(runs, "ours", "drain_over_floor"),
        _of(runs, "baseline", "drain_over_floor"),
        fmt=",.2f",
        target="ours ≤ 1.1",
    )
    ours_over = [r.get("drain_over_floor") for r in runs if r["stack"] == "ours"]
    over.met = (
        None
        if not ours_over
        else all(v is not None and v <= 1.1 for v in ours_over)
        and all(r["finished"] for r in runs if r["stack"] == "ours")
    )
    notes = []
    ours = [r for r in runs if r["stack"] == "ours" and r["finished"]]
    lagging = [r for r in ours if (r.get("all_processed_s") or 0) > 1.1 * floor]
    if lagging:
        took = cell([float(r["all_processed_s"]) for r in lagging], ",.1f")
        offer = max(float(r["offer_s"]) for r in lagging)
        notes.append(
            f"ours had every event through its rules only {took} s after the first delivery "
            f"(offering took {offer:.1f} s): the worker's processing, not the rate limit, "
            "set the pace"
        )
    over_budget = [r for r in ours if int(r["calls"]) > per_min]
    if over_budget:
        notes.append(
            f"ours sent {', '.join(str(int(r['calls'])) for r in over_budget)} calls: "
            f"those past the {per_min}th had to wait for the helpdesk's next minute"
        )
    unfinished = [r for r in runs if not r["finished"]]
    if unfinished:
        who = sorted({r["stack"] for r in unfinished})
        done = ", ".join(
            f"{name} {cell([float(r['tagged_by_bound']) for r in unfinished if r['stack'] == name], ',.0f')}"
            for name in who
        )
        bound = max(float(r["bound_s"]) for r in unfinished)
        projected = (
            f"PROJECTED for {' and '.join(who)}: not every ticket tagged within {bound:.0f} s "
            f"(tagged by then: {done}); drain = N / tickets tagged per second so far"
        )
        if "baseline" in who:
            own = (n - 1) // per_min * 60
            projected += (
                f"; one call per ticket under {per_min}/min cannot finish before {own:,} s "
                "(its own floor)"
            )
        notes.insert(0, projected)
        drain.metric += " (PROJECTED where not finished)"
    drain.note = "; ".join(notes)
    return [
        calls,
        Row(
            label,
            "of which answered 429 (rate limited)",
            _of(runs, "ours", "limited"),
            _of(runs, "baseline", "limited"),
        ),
        Row(
            label,
            "successful calls needed to tag every ticket",
            _of(runs, "ours", "calls_needed"),
            _of(runs, "baseline", "calls_needed"),
            note="baseline: one call per delivery, so N (scaled from the tickets it tagged)",
        ),
        tagged,
        drain,
        over,
    ]


def _trace_cost_row(scenario: str, runs: Sequence[Run]) -> list[Row]:
    """Ours' worker CPU per event with traces on (ours column) against traces off (baseline)."""
    on, off = _of(runs, "ours", "worker_cpu_us"), _of(runs, "ours-traces-off", "worker_cpu_us")
    if not (on and off):
        return []
    row = Row(
        scenario,
        "worker CPU µs per event, traces on / off (off in the baseline column)",
        on,
        off,
        target="traces on ≤ 1.10 × off",
    )
    ratio = row.ratio
    row.met = ratio is not None and ratio <= 1.10
    return [row]


def _durability_rows(runs: Sequence[Run]) -> list[Row]:
    """Scenario 1d: ours in fsync durability mode (ours column) against none (baseline column)."""
    fsync, none = "ours-fsync", "ours"

    def load(stack: str, field: str) -> list[float]:
        return [float(r["load"][field]) for r in runs if r["stack"] == stack]

    label = "1d intake, fsync / none (AOF everysec)"
    note = "none in the baseline column; both on a Redis with appendonly yes, appendfsync everysec"
    rows = [
        Row(
            label,
            "accepted/s",
            _of(runs, fsync, "accepted_per_s"),
            _of(runs, none, "accepted_per_s"),
            note=note,
        ),
        Row(label, "p50 ms flat out", load(fsync, "p50_ms"), load(none, "p50_ms"), fmt=",.1f"),
        Row(label, "p99 ms flat out", load(fsync, "p99_ms"), load(none, "p99_ms"), fmt=",.1f"),
        Row(
            label,
            "receiver CPU µs per delivery",
            _of(runs, fsync, "receiver_cpu_us"),
            _of(runs, none, "receiver_cpu_us"),
        ),
    ]
    return [r for r in rows if r.ours and r.baseline]


def build_rows(runs: dict[str, list[Run]]) -> list[Row]:
    """Every row of the table from the runs that were made."""
    rows: list[Row] = []
    s1 = runs.get("1", [])
    if "0" in runs:
        cal = runs["0"]
        offered = [float(c["flat"]["answered_per_s"]) for c in cal]
        fastest = max(
            (_median(_of(s1, s, "accepted_per_s")) or 0.0 for s in ("ours", "baseline")),
            default=0.0,
        )
        row = Row(
            "0 calibration",
            "generator req/s to a trivial 202 server",
            offered,
            [],
            target="≥ 1.5× the faster receiver's accepted/s (ratio is against it)",
            against=fastest or None,
        )
        row.met = None if row.ratio is None else row.ratio >= 1.5
        rows.append(row)
        rate = cal[0]["rate"]
        rows.append(
            Row(
                "0 calibration",
                f"generator p99 ms at {rate:,}/s, trivial server",
                [float(c["paced"]["p99_ms"]) for c in cal],
                [],
                fmt=",.2f",
                note="the generator's own latency floor",
            )
        )
    for key, label in (("1", "1 intake flat out"), ("1c", "1c cStar intake flat out")):
        rows.extend(_intake_rows(runs.get(key, []), label))
    rows.extend(_durability_rows(runs.get("1d", [])))
    s2 = runs.get("2", [])
    if s2:
        rate = s2[0]["offered_per_s"]
        rows.append(
            Row(
                "2 intake latency",
                f"p50 ms at {rate:,}/s offered",
                _of(s2, "ours", "p50_ms"),
                _of(s2, "baseline", "p50_ms"),
                fmt=",.2f",
            )
        )
        ours_p99 = _of(s2, "ours", "p99_ms")
        rows.append(
            Row(
                "2 intake latency",
                f"p99 ms at {rate:,}/s offered",
                ours_p99,
                _of(s2, "baseline", "p99_ms"),
                fmt=",.2f",
                target="ours ≤ 10 ms",
                met=None if not ours_p99 else statistics.median(ours_p99) <= 10.0,
            )
        )
        rows.append(
            Row(
                "2 intake latency",
                "achieved deliveries/s",
                _of(s2, "ours", "achieved_per_s"),
                _of(s2, "baseline", "achieved_per_s"),
            )
        )
    for key, label in (
        ("3", "3 whole box"),
        ("3b", "3b whole box, burst"),
        ("3p", "3p whole box, paced"),
    ):
        s3 = runs.get(key, [])
        if not s3:
            continue
        tickets = int(s3[0].get("tickets", 0))
        offered_rate = s3[0].get("offered_per_s")
        scenario = f"{label} ({tickets:,} tickets)"
        if offered_rate:
            scenario = f"{label} at {offered_rate:,.0f}/s ({tickets:,} tickets)"
        rows.append(
            Row(
                scenario,
                "accepted deliveries/s",
                _of(s3, "ours", "accepted_per_s"),
                _of(s3, "baseline", "accepted_per_s"),
            )
        )
        row = Row(
            scenario,
            "events processed/s",
            _of(s3, "ours", "processed_per_s"),
            _of(s3, "baseline", "processed_per_s"),
        )
        if key == "3":
            row.target = "ours ≥ 10× baseline"
            row.met = None if row.ratio is None else row.ratio >= 10.0
        rows.append(row)
        growth = Row(
            scenario,
            "backlog growth/s (accepted − processed)",
            _of(s3, "ours", "backlog_growth_per_s"),
            _of(s3, "baseline", "backlog_growth_per_s"),
            fmt="+,.0f",
        )
        accepted = _median(_of(s3, "ours", "accepted_per_s")) or 0.0
        if key in ("3", "3p") and growth.ours:
            growth.target = "ours not growing (≤ 2 % of accepted/s)"
            growth.met = statistics.median(growth.ours) <= max(0.02 * accepted, 10.0)
        rows.append(growth)
        rows.append(
            Row(
                scenario,
                "write-backs/s (PATCH accepted by the helpdesk)",
                _of(s3, "ours", "writebacks_per_s"),
                _of(s3, "baseline", "writebacks_per_s"),
            )
        )
        rows.append(
            Row(
                scenario,
                "worker CPU µs per processed event",
                _of(s3, "ours", "worker_cpu_us"),
                _of(s3, "baseline", "worker_cpu_us"),
            )
        )
        rows.extend(_trace_cost_row(scenario, s3))
    s4 = runs.get("4", [])
    if s4:
        n = int(s4[0]["events"])
        unfinished = [r for r in s4 if not r["finished"]]
        note = ""
        if unfinished:
            who = sorted({r["stack"] for r in unfinished})
            bound = max(r["wall_s"] for r in unfinished)
            note = f"{' and '.join(who)} did not finish within {bound:.0f}s (rate over the window)"
        ours_done = [r["finished"] for r in s4 if r["stack"] == "ours"]
        rows.append(
            Row(
                f"4 backlog drain ({n:,} events)",
                "events/s until empty (cold worker)",
                _of(s4, "ours", "events_per_s"),
                _of(s4, "baseline", "events_per_s"),
                target="ours drains the whole backlog",
                met=bool(ours_done) and all(ours_done),
                note=note,
            )
        )
        rows.append(
            Row(
                f"4 backlog drain ({n:,} events)",
                "seconds from worker start to empty (or to the bound)",
                _of(s4, "ours", "wall_s"),
                _of(s4, "baseline", "wall_s"),
                fmt=",.1f",
            )
        )
        rows.append(
            Row(
                f"4 backlog drain ({n:,} events)",
                "worker CPU µs per event (after start-up)",
                _of(s4, "ours", "worker_cpu_us"),
                _of(s4, "baseline", "worker_cpu_us"),
            )
        )
        rows.extend(_trace_cost_row(f"4 backlog drain ({n:,} events)", s4))
        rows.append(
            Row(
                f"4 backlog drain ({n:,} events)",
                "Redis commands per event (worker side)",
                _of(s4, "ours", "redis_calls"),
                _of(s4, "baseline", "redis_calls"),
                fmt=",.2f",
            )
        )
    s5 = runs.get("5", [])
    if s5:
        n = int(s5[0]["events"])
        scenario = f"5 memory ({n:,} events)"
        rows.append(
            Row(
                scenario,
                "Redis bytes per event kept after processing",
                _of(s5, "ours", "bytes_per_event"),
                _of(s5, "baseline", "bytes_per_event"),
                note="ours: stream entry (replay) + dedupe key; baseline: arq result",
            )
        )

        def in_keys(stack: str) -> list[float]:
            return [
                sum(f["bytes"] for f in r["key_families"].values()) / r["events"]
                for r in s5
                if r["stack"] == stack
            ]

        rows.append(
            Row(
                scenario,
                "of which in keys (MEMORY USAGE), bytes per event",
                in_keys("ours"),
                in_keys("baseline"),
            )
        )
        copies = _of(s5, "ours", "result_copies_per_event")
        rows.append(
            Row(
                scenario,
                "per-event result copies kept",
                copies,
                _of(s5, "baseline", "result_copies_per_event"),
                fmt=",.2f",
                target="ours: none",
                met=None if not copies else max(copies) == 0,
            )
        )
    s3 = runs.get("3", [])
    if s3:
        mb = 1024 * 1024
        for field, what in (("worker_rss_start", "start"), ("worker_rss_end", "end")):
            rows.append(
                Row(
                    "5 memory (scenario 3 window)",
                    f"worker RSS MB at the {what}",
                    [v / mb for v in _of(s3, "ours", field)],
                    [v / mb for v in _of(s3, "baseline", field)],
                    fmt=",.1f",
                )
            )

        def change(stack: str) -> list[float]:
            return [
                (r["worker_rss_end"] / r["worker_rss_start"] - 1) * 100
                for r in s3
                if r["stack"] == stack and r["worker_rss_start"]
            ]

        ours_change = change("ours")
        rows.append(
            Row(
                "5 memory (scenario 3 window)",
                "worker RSS change over the window, %",
                ours_change,
                change("baseline"),
                fmt="+,.1f",
                target="ours within ±10 %",
                met=None if not ours_change else max(abs(c) for c in ours_change) <= 10.0,
            )
        )
    rows.extend(_ratelimit_rows(runs.get("6", [])))
    rows.extend(_isolation_rows(runs.get("7", [])))
    rows.extend(_flood_rows(runs.get("8", [])))
    return rows


def _flood_rows(runs: Sequence[Run]) -> list[Row]:
    """Scenario 8: good deliveries beside a flat-out flood of forged signatures."""
    if not runs:
        return []
    rate = float(runs[0]["good_offered_per_s"])
    label = "8 refusal flood"
    return [
        Row(label, "forged deliveries refused per s", *_both(runs, "forged_refused_per_s")),
        Row(
            label,
            f"good deliveries stored per s ({rate:,.0f}/s offered)",
            *_both(runs, "good_per_s"),
        ),
        Row(label, "good p50 ms during the flood", *_both(runs, "good_p50_ms"), fmt=",.2f"),
        Row(label, "good p99 ms during the flood", *_both(runs, "good_p99_ms"), fmt=",.2f"),
        Row(label, "receiver log lines during the run", *_both(runs, "log_lines")),
    ]


def _both(runs: Sequence[Run], field: str) -> tuple[list[float], list[float]]:
    return _of(runs, "ours", field), _of(runs, "baseline", field)


def _isolation_rows(runs: Sequence[Run]) -> list[Row]:
    """Scenario 7: B's latency during A's burst, lanes (ours) against one shared lane (baseline)."""
    if not runs:
        return []
    burst = int(runs[0]["burst"])
    label = "7 burst isolation"
    p99 = Row(
        label,
        f"B's p99 received → handled during A's {burst:,}-event burst, ms (shared lane in the "
        "baseline column)",
        _of(runs, "ours", "b_p99_ms"),
        _of(runs, "ours-shared-lane", "b_p99_ms"),
        target="ours ≤ 2,000 ms",
    )
    p99.met = bool(p99.ours) and max(p99.ours) <= 2000
    return [
        Row(
            label,
            "B's p50 received → handled during the burst, ms (shared lane in the baseline column)",
            _of(runs, "ours", "b_p50_ms"),
            _of(runs, "ours-shared-lane", "b_p50_ms"),
        ),
        p99,
        Row(
            label,
            f"A's {burst:,} events handled in, s (shared lane: B's too)",
            _of(runs, "ours", "burst_drain_s"),
            _of(runs, "ours-shared-lane", "burst_drain_s"),
            fmt=",.1f",
        ),
        Row(
            label,
            "worker CPU µs per event (A's and B's) until A's burst was handled",
            _of(runs, "ours", "worker_cpu_us"),
            _of(runs, "ours-shared-lane", "worker_cpu_us"),
        ),
    ]


def render(rows: Sequence[Row]) -> str:
    """The table as text, one row per metric."""
    header = ("scenario", "metric", "ours", "baseline", "ours/base", "target", "met?")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        ratio = row.ratio
        lines.append(
            (
                row.scenario,
                row.metric,
                cell(row.ours, row.fmt),
                cell(row.baseline, row.fmt),
                "—" if ratio is None else f"{ratio:,.2f}×",
                row.target or "—",
                {True: "yes", False: "NO", None: "—"}[row.met],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  {row.scenario}: {row.note}" for row in rows if row.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [float(x) for x in os.getloadavg()]


def machine_facts(redis_server: str, load_generator: str) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _mem_total(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "redis_server": redis_server,
        "load_generator": load_generator,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write the results file (creating its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
