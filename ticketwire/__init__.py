"""ticketwire: verified helpdesk webhooks, ordered workers, rules, safe write-back.

A Python rule file imports what it needs from here:

    from ticketwire import Context, Event, Router

    router = Router()

    @router.on("ticket.created", when=lambda ev: ev.ticket["priority"] == "urgent")
    async def escalate(ctx: Context) -> None:
        ctx.set_priority("high")
"""

from ticketwire.engine.context import Context
from ticketwire.engine.router import Router
from ticketwire.event import Event

__all__ = ["Context", "Event", "Router"]
