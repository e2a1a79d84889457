"""Before an uncertain write-back goes again: read its tickets, keep only what is still missing.

A call is uncertain when a send of it began and its outcome is unknown (`Pending.uncertain`).
A client that can read back what a call does (`still_to_send`: each bundled helpdesk's) is
asked, per uncertain ticket the call covers, what of that ticket's part is left; a client
without it (a plug-in helpdesk that cannot read a ticket back) sends the call as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ticketwire.calls import ApiCall
from ticketwire.writeback import BatchSpec, Outgoing, Pending, single


class ReadsBack(Protocol):
    """A client that can tell what of one ticket's call the ticket does not show yet."""

    async def still_to_send(self, call: ApiCall) -> ApiCall | None:
        """Read the ticket; the part of `call` still to send, or None when it is all there."""
        ...


@dataclass
class Resend:
    """What an uncertain outgoing call comes to once its tickets were read."""

    #: What goes now (None: nothing); its uncertain tickets were just read.
    send: Outgoing | None
    #: Tickets whose part the helpdesk already shows: settled without a send.
    done: list[str] = field(default_factory=list)
    #: Tickets whose part is only partly there: their own call with what is left.
    rest: dict[str, ApiCall] = field(default_factory=dict)


def uncertain(o: Outgoing, heads: Mapping[str, Pending]) -> bool:
    """True when one of the tickets the call covers has an uncertain head call."""
    return any(heads[key].uncertain for key in o.covers)


async def resend(
    o: Outgoing, heads: Mapping[str, Pending], client: object, spec: BatchSpec | None
) -> Resend:
    """Read each uncertain ticket `o` covers and plan what still goes (one read per ticket).

    A bulk call keeps the tickets that still need the whole change; a ticket that needs only
    part of it leaves the bulk call with its own call (sent in the next round); a ticket that
    needs nothing is done.
    """
    check = getattr(client, "still_to_send", None)
    if check is None:
        return Resend(o)
    bulk = len(o.covers) > 1
    own = {
        key: single(o.call, heads[key].call.ticket_id, spec) if bulk else o.call
        for key in o.covers
        if heads[key].uncertain
    }
    answers = await asyncio.gather(*(check(call) for call in own.values()))
    out = Resend(None)
    for (key, call), left in zip(own.items(), answers, strict=True):
        if left is None:
            out.done.append(key)
        elif left != call:
            out.rest[key] = left
    if not bulk:
        key = o.covers[0]
        if key not in out.done:
            out.send = Outgoing(out.rest.get(key, o.call), o.covers)
        return out
    keep = [k for k in o.covers if k not in out.done and k not in out.rest]
    if keep and spec is not None:
        ids = [heads[k].call.ticket_id for k in keep]
        call = o.call if len(keep) == len(o.covers) else spec.with_ids(o.call, ids)
        out.send = Outgoing(call, tuple(keep))
    return out
