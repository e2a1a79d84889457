"""Follow up on resolved tickets: park them as waiting with a reminder three days later.

InboxOps keeps a reminder only on a waiting ticket, so the resolved ticket moves to waiting. When
the reminder falls due InboxOps moves it on: to your closed status if `CLOSED_STATUS_ID` is set,
else to the waiting status's reminder target (Open by default), for someone to check in.
"""

from datetime import timedelta

from ticketwire import Context, Event, Router

router = Router()

#: How long a resolved ticket may stay quiet before someone looks at it again.
QUIET_PERIOD = timedelta(days=3)
#: Set to your "Closed" custom status id (GET /api/v1/ticket_statuses) to have the reminder close
#: the ticket by itself; None brings it back to the open queue.
CLOSED_STATUS_ID: str | None = None


def resolved_without_reminder(event: Event) -> bool:
    """A resolved ticket with no reminder yet (a reminder someone set is left alone)."""
    return event.ticket.get("status") == "resolved" and not event.ticket.get("remind_at")


@router.on("ticket.status_changed", when=resolved_without_reminder, vendor="inboxops")
async def schedule_follow_up(ctx: Context) -> None:
    """Wait for the quiet period, relative to when the ticket was resolved."""
    ctx.set_status("waiting")
    ctx.remind_at(QUIET_PERIOD)
    if CLOSED_STATUS_ID:
        ctx.update(remind_transition_status_id=CLOSED_STATUS_ID)
