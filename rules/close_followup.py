"""Follow up on resolved tickets: a reminder three days later, optionally closing the ticket."""

from datetime import timedelta

from ticketwire import Context, Event, Router

router = Router()

#: How long a resolved ticket may stay quiet before someone looks at it again.
QUIET_PERIOD = timedelta(days=3)
#: Set to your "Closed" custom status id (GET /api/v1/ticket_statuses) to have the reminder close
#: the ticket by itself; None only reminds.
CLOSED_STATUS_ID: str | None = None


def resolved_without_reminder(event: Event) -> bool:
    """A resolved ticket with no reminder yet (a reminder someone set is left alone)."""
    return event.ticket.get("status") == "resolved" and not event.ticket.get("remind_at")


@router.on("ticket.status_changed", when=resolved_without_reminder, vendor="inboxops")
async def schedule_follow_up(ctx: Context) -> None:
    """Remind after the quiet period, relative to when the ticket was resolved."""
    ctx.remind_at(QUIET_PERIOD)
    if CLOSED_STATUS_ID:
        ctx.update(remind_transition_status_id=CLOSED_STATUS_ID)
