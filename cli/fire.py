"""`ticketwire fire`: build one signed delivery of a helpdesk and send it to a receiver.

The body is the helpdesk's own envelope (the bundled simulators' envelope functions), with a
fresh event id each time, and the ticket made of `id`, an update time of now, the fields of an
optional JSON file, then each `--set`. It is signed with the account's configured webhook secret
(`*_WEBHOOK_SECRETS`, or a named account's `webhook_secrets` in the accounts file), else with the
local `ticketwire up`'s, and sent to `--to`, else to that `up`'s receiver, on the account's route.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from cli.localup import LocalUp, find_local_up
from cli.replay import outcome, webhook_url
from simulator.common.clock import iso
from simulator.common.webhooks import compact
from ticketwire.accountkey import DEFAULT, account_key
from ticketwire.config import Settings
from ticketwire.errors import ConfigError, MalformedEvent
from ticketwire.vendors.registry import active, bundle, names, parser

if TYPE_CHECKING:
    from simulator.common.bundle import SimulatorBundle


class FireError(Exception):
    """A delivery that cannot be built or sent as asked; the message says what to do."""


def parse_set(item: str) -> tuple[list[str], Any]:
    """`field=value` → (path, value); the value is JSON when it parses, else the text."""
    name, sep, raw = item.partition("=")
    if not sep or not name.strip():
        raise FireError(f"--set {item!r}: expected field=value, e.g. priority=urgent")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip().split("."), value


def apply_sets(ticket: dict[str, Any], items: Sequence[str]) -> dict[str, Any]:
    """`ticket` with each `--set` applied in order; `a.b=1` sets `b` inside the object `a`."""
    out = copy.deepcopy(ticket)
    for item in items:
        path, value = parse_set(item)
        holder = out
        for part in path[:-1]:
            inner = holder.get(part)
            if not isinstance(inner, dict):
                inner = holder[part] = {}
            holder = inner
        holder[path[-1]] = value
    return out


def _simulator(vendor: str) -> SimulatorBundle:
    """The simulator bundle whose envelopes `fire` sends for `vendor`."""
    sim = bundle(vendor).simulator if vendor in names() else None
    if sim is None:
        known = [v.name for v in active().vendors if v.simulator is not None]
        raise FireError(f"unknown helpdesk {vendor!r}; one of {', '.join(known)}")
    return sim()


def build_body(
    vendor: str,
    event: str,
    ticket: dict[str, Any],
    *,
    tenant: str,
    event_id: str,
    now: datetime,
) -> bytes:
    """The delivery body `vendor` would send for `event` on `ticket` (which has its `id`)."""
    envelope = _simulator(vendor).envelope
    doc = envelope(bundle(vendor).own_event(event), event_id, tenant, now, ticket)
    body = compact(doc)
    try:
        parser(vendor)(body)
    except MalformedEvent as exc:
        raise FireError(f"the delivery would be refused: {exc}") from None
    return body


def ticket_from(
    vendor: str, ticket_id: str | None, base: dict[str, Any], sets: Sequence[str], now: datetime
) -> dict[str, Any]:
    """The ticket to send: `id`, updated now, then `base` (a JSON file's fields), then `sets`."""
    ticket: dict[str, Any] = {"id": ticket_id, bundle(vendor).updated_field: iso(now)}
    ticket.update(base)
    if ticket_id is not None:
        ticket["id"] = ticket_id
    ticket = apply_sets(ticket, sets)
    if not ticket.get("id"):
        raise FireError("give the ticket: --ticket ID (or an `id` in the JSON file)")
    ticket["id"] = str(ticket["id"])
    return ticket


def read_fields(path: Path) -> dict[str, Any]:
    """A JSON file of ticket fields (e.g. the ticket as the helpdesk's API shows it)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FireError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise FireError(f"{path}: expected a JSON object of ticket fields")
    return doc


@dataclass(frozen=True)
class Signer:
    """The secret to sign with and where it came from (for the message, never the secret)."""

    secret: str
    source: str
    #: The account's settings, which say how the helpdesk signs (e.g. Thena's mode and header).
    account: Any = None


def choose_signer(
    vendor: str, settings: Settings, up: LocalUp | None, given: str | None, account: str = DEFAULT
) -> Signer:
    """`--secret`, else the account's configured secret, else the local `up`'s."""
    v = bundle(vendor)
    configured_account = settings.accounts(vendor).get(account)
    if given:
        return Signer(given, "--secret", configured_account)
    configured = v.webhook_secrets(configured_account) if configured_account else ()
    if configured:
        where = (
            v.webhook_variable
            if account == DEFAULT
            else f"{vendor}.{account}.webhook_secrets of TICKETWIRE_ACCOUNTS"
        )
        return Signer(configured[0].reveal(), where, configured_account)
    local = _local_secrets(up, vendor, account)
    if local:
        named = "" if account == DEFAULT else f" account {account}"
        return Signer(local, f"the local `ticketwire up`'s {vendor}{named} secret")
    if account != DEFAULT:
        raise FireError(
            f"no webhook secret of {vendor} account {account}: give its webhook_secrets in "
            "TICKETWIRE_ACCOUNTS, pass --secret, or start `ticketwire up` here with that file"
        )
    raise FireError(
        f"no {vendor} webhook secret: set {v.webhook_variable}, pass --secret, or "
        "start `ticketwire up` here"
    )


def _local_secrets(up: LocalUp | None, vendor: str, account: str) -> str | None:
    if up is None:
        return None
    if account == DEFAULT:
        return up.webhook_secrets.get(vendor)
    return up.account_secrets.get(account_key(vendor, account))


def known_accounts(vendor: str, settings: Settings, up: LocalUp | None) -> list[str]:
    """The accounts of `vendor` this command can send to: configured, or the local `up`'s."""
    names = dict.fromkeys(settings.accounts(vendor))
    for key in up.account_secrets if up else ():
        owner, _, name = key.partition("@")
        if owner == vendor:
            names[name] = None
    return list(names)


def account_url(url: str, vendor: str, account: str) -> str:
    """The webhook URL of `account`: `<base>/<vendor>/<account>` for a named one."""
    url = webhook_url(url, vendor)
    if account != DEFAULT and url.rstrip("/").endswith(f"/webhooks/{vendor}"):
        return f"{url.rstrip('/')}/{account}"
    return url


async def simulator_tenant(
    vendor: str, up: LocalUp | None, timeout_s: float, account: str = DEFAULT
) -> str | None:
    """The tenant id of the local `up`'s simulator of the account, so fired tickets are its own."""
    if up is None:
        return None
    if account == DEFAULT:
        sim = up.simulators.get(vendor)
    else:
        sim = up.account_simulators.get(account_key(vendor, account))
    if not sim:
        return None
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{sim}/_sim") as r:
            info = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if isinstance(info, dict) and isinstance(info.get("data"), dict):
        info = info["data"]
    value = info.get(_simulator(vendor).tenant_key) if isinstance(info, dict) else None
    return str(value) if value else None


async def send(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """POST the delivery; the receiver's status and answer."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


@dataclass(frozen=True)
class FireRequest:
    """What `ticketwire fire` was asked for."""

    vendor: str
    event: str
    ticket_id: str | None = None
    sets: tuple[str, ...] = ()
    file: Path | None = None
    to: str | None = None
    tenant: str | None = None
    secret: str | None = None
    account: str = DEFAULT


async def fire(
    req: FireRequest, settings: Settings, up: LocalUp | None, timeout_s: float = 10.0
) -> int:
    """Build, sign and send one delivery; print the receiver's answer; 0 on a 2xx."""
    now = datetime.now(UTC)
    v = bundle(req.vendor)
    base = read_fields(req.file) if req.file else {}
    ticket = ticket_from(req.vendor, req.ticket_id, base, req.sets, now)
    for name, value in v.event_fields.get(req.event, {}).items():
        ticket.setdefault(name, value)
    known = known_accounts(req.vendor, settings, up)
    if req.account not in known:
        raise FireError(
            f"--account {req.account}: no such {req.vendor} account; known: {', '.join(known)}"
            " (named accounts come from the file TICKETWIRE_ACCOUNTS names, or the local "
            "`ticketwire up`'s)"
        )
    signer = choose_signer(req.vendor, settings, up, req.secret, req.account)
    if req.to is None and up is None:
        raise FireError("give --to URL (a receiver's /webhooks), or start `ticketwire up` here")
    url = account_url(req.to or (up.receiver_url if up else ""), req.vendor, req.account)
    accounts = settings.accounts(req.vendor)
    configured = v.tenant(accounts[req.account]) if req.account in accounts else None
    tenant = (
        req.tenant or await simulator_tenant(req.vendor, up, timeout_s, req.account) or configured
    )
    if not tenant:
        raise FireError(f"give the {_simulator(req.vendor).tenant_word} id: --tenant ID")
    event_id = v.new_event_id()
    body = build_body(req.vendor, req.event, ticket, tenant=tenant, event_id=event_id, now=now)
    headers = {"Content-Type": "application/json", "User-Agent": "ticketwire-fire"}
    headers.update(v.sign()(signer.account or v.settings(), body, signer.secret))
    named = "" if req.account == DEFAULT else f" account={req.account}"
    print(
        f"fire {req.vendor}{named} {req.event} event={event_id} ticket={ticket['id']} → {url} "
        f"(signed with {signer.source})",
        file=sys.stderr,
    )
    try:
        status, answer = await send(url, body, headers, timeout_s)
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(
            f"ticketwire fire: no answer from {url}: {exc or type(exc).__name__}", file=sys.stderr
        )
        return 1
    print(f"{status} {answer}")
    if outcome(status, answer) == "failed":
        if status == 401:
            print(
                f"the receiver refused the signature: is {signer.source} the secret it expects "
                f"({v.webhook_variable} there)? Pass --secret with its secret.",
                file=sys.stderr,
            )
        return 1
    return 0


def run_fire(req: FireRequest) -> int:
    """`ticketwire fire`: exit 0 on a 2xx, 1 on any other answer, 2 when it cannot be built."""
    try:
        settings = Settings.from_env(os.environ, role="check")
    except ConfigError as exc:
        print(f"ticketwire fire: configuration error: {exc}", file=sys.stderr)
        return 2
    up = find_local_up(settings.data_dir)
    try:
        return asyncio.run(fire(req, settings, up))
    except FireError as exc:
        print(f"ticketwire fire: {exc}", file=sys.stderr)
        return 2
