"""The event → rules table `ticketwire check` prints."""

from __future__ import annotations

from ticketwire.engine.router import EVENT_TYPES, Router

_HEADER = ("EVENT", "RULE", "VENDOR", "SOURCE")


def table_rows(router: Router) -> list[tuple[str, str, str, str]]:
    """Rows of (event type, rule name, vendor, source); the event is blank on continuation rows."""
    rows: list[tuple[str, str, str, str]] = []
    known = set(EVENT_TYPES)
    extra = sorted({e for rule in router.rules for e in rule.events} - known)
    for event_type in (*EVENT_TYPES, *extra):
        rules = [rule for rule in router.rules if event_type in rule.events]
        if not rules:
            rows.append((event_type, "-", "", ""))
            continue
        for i, rule in enumerate(rules):
            rows.append(
                (event_type if i == 0 else "", rule.name, rule.vendor or "any", rule.source)
            )
    # Time-based rules have no event: their schedule takes the event's column.
    for rule in router.rules:
        if rule.schedule is not None:
            rows.append((rule.schedule.describe(), rule.name, rule.vendor or "any", rule.source))
    return rows


def render_table(router: Router) -> str:
    """Render one block per event type listing its rules in the order they run."""
    rows = table_rows(router)
    widths = [max(len(r[i]) for r in (_HEADER, *rows)) for i in range(len(_HEADER))]

    def line(cells: tuple[str, str, str, str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [
        line(_HEADER),
        line(("-" * widths[0], "-" * widths[1], "-" * widths[2], "-" * widths[3])),
    ]
    out.extend(line(r) for r in rows)
    return "\n".join(out)
