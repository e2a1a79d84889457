"""How old a delivered event may be: replays past the dedupe window are refused (pure).

A delivery is answered as a duplicate while its event id is in the dedupe window. The id is
kept from the first time it was stored, which is no earlier than when the helpdesk says the
event happened, so an event younger than the window is always told apart from a replay of it.
An older one may not be: a captured InboxOps delivery (InboxOps signs no timestamp) would be
stored again as new once its id has left the window. So the receiver refuses events older
than the window, less a margin for a helpdesk clock that runs ahead of ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ticketwire.engine.limits import human_duration

#: How far a helpdesk's clock may run ahead of ours without opening a gap for replays.
CLOCK_MARGIN_S = 300.0


def default_max_age(dedupe_window_s: float) -> float:
    """The oldest event stored by default: the dedupe window less the clock margin."""
    return dedupe_window_s - min(CLOCK_MARGIN_S, dedupe_window_s / 10)


def age_over(created_at: datetime | None, now_s: float, max_age_s: float) -> float | None:
    """The event's age in seconds when it is over `max_age_s` (0: no limit), else None."""
    if created_at is None or not max_age_s:
        return None
    if created_at.tzinfo is None:
        # The parsers read a time without a zone as UTC.
        created_at = created_at.replace(tzinfo=UTC)
    age = now_s - created_at.timestamp()
    return age if age > max_age_s else None


def too_old_reason(age_s: float, max_age_s: float, dedupe_window_s: float) -> str:
    """Why an event of `age_s` is refused, for the sender and the log."""
    return (
        f"the event happened {human_duration(age_s)} ago, longer than the "
        f"{human_duration(max_age_s)} this receiver accepts: its id may have left the "
        f"{human_duration(dedupe_window_s)} dedupe window, so it could not be told apart from "
        "a replay (TICKETWIRE_MAX_EVENT_AGE, TICKETWIRE_DEDUPE_WINDOW)"
    )


def late_retries(horizons: Iterable[tuple[str, float | None]], max_age_s: float) -> list[str]:
    """A warning for each helpdesk whose last retry of an event may come after `max_age_s`."""
    if not max_age_s:
        return []
    return [
        f"{title} retries a delivery for up to {human_duration(horizon)} after the event, "
        f"longer than TICKETWIRE_MAX_EVENT_AGE ({human_duration(max_age_s)}): its latest "
        "retries will be refused; raise TICKETWIRE_DEDUPE_WINDOW to keep them"
        for title, horizon in horizons
        if horizon is not None and horizon > max_age_s
    ]
