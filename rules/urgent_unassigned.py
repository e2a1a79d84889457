"""Route urgent tickets nobody owns: assign them to the on-call agent, and tag them if configured."""

from ticketwire import Context, Router

router = Router()

#: Agent who picks up urgent tickets nobody owns. Replace with your on-call agent's id.
ON_CALL_AGENT_ID = "6f1c2b7e-0d4a-4c1e-9a55-3b8e2f7d9c10"
#: Tags to add as well, by id (see GET /api/v1/tags), e.g. your "urgent" tag. Empty: no tagging.
URGENT_TAG_IDS: list[str] = []

#: Written as a condition mapping (the YAML syntax), so a skipped ticket logs which part failed.
URGENT_AND_UNOWNED = {
    "all": [
        {"field": "priority", "equals": "urgent"},
        {"field": "assignee_id", "exists": False},
    ]
}


@router.on("ticket.created", "ticket.updated", when=URGENT_AND_UNOWNED, vendor="inboxops")
async def route_urgent(ctx: Context) -> None:
    """Assign first: once assigned, the write-back's own webhook no longer matches."""
    ctx.assign(ON_CALL_AGENT_ID)
    if URGENT_TAG_IDS:
        ctx.add_tags(URGENT_TAG_IDS)
    ctx.log.info("urgent ticket %s routed to on-call", ctx.ticket.get("ticket_number"))
