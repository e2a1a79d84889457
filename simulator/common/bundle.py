"""`SimulatorBundle`: what the CLI needs of one helpdesk's simulator, in one value its package exports.

`ticketwire simulate`, `up` and `fire` reach a simulator only through this bundle (linked from the
helpdesk's `Vendor`), so they name no helpdesk in code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketwire.errors import ConfigError
from ticketwire.secret import Secret

#: (event as the helpdesk names it, event id, tenant id, time, ticket) → the delivery's document.
Envelope = Callable[[str, str, str, datetime, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Example:
    """The change the banner of `ticketwire up` suggests on a simulator, and what a rule then does."""

    does: str
    change: dict[str, Any]
    #: A ticket the rule has not acted on yet.
    fits: Callable[[dict[str, Any]], bool]
    #: Make a ticket on the simulator: (simulator, subject, priority) → the ticket.
    create: Callable[[Any, str, str], dict[str, Any]]
    #: The ticket field the simulator's `/_sim/tickets/{…}` routes take.
    key: str = "id"


def own_api(sim: Any) -> dict[str, Any]:
    """`api` of a simulator whose URL and API key are all an account needs to use it."""
    return {"api_url": sim.url, "api_key": Secret(sim.api_key)}


def _nothing(sim: Any) -> None:
    """`connected` of a simulator with nothing to do once its webhooks have a route."""


@dataclass(frozen=True)
class SimulatorBundle:
    """One helpdesk's simulator: how to build, run, seed and address it, and what it sends."""

    #: The simulator class, built from a config.
    simulator: type[Any]
    #: Its config class; takes `seed=` and `event_seed=`.
    config: Callable[..., Any]
    #: Serve one until cancelled: (config, host, port, *, webhook_url, webhook_secret, seed_tickets).
    run: Callable[..., Coroutine[Any, Any, None]]
    #: `ticketwire simulate` serves it on 8081 plus this, so the simulators run side by side.
    port_offset: int
    #: The config with `--rate-limit` as given: (seed, text) → config; raise `ConfigError`.
    limited: Callable[[int, str], Any]
    #: The document of one delivery, as `ticketwire fire` sends it.
    envelope: Envelope
    #: The key of the tenant id in the simulator's `GET /_sim`, and what the helpdesk calls it.
    tenant_key: str
    tenant_word: str
    example: Example
    #: The settings fields that make an account use the running simulator as its API.
    api: Callable[[Any], dict[str, Any]] = own_api
    #: Fields of the configured default account the simulated one keeps (e.g. a tolerance).
    kept: tuple[str, ...] = ()
    #: Called once the simulator's webhooks have a route (e.g. to fire what fell due meanwhile).
    connected: Callable[[Any], None] = _nothing
    #: Whether the default account names an API of its own, so no simulator is needed; None: the
    #: vendor's `calls_api`.
    real_api: Callable[[Any], bool] | None = None


def per_minute(rate_limit: str) -> int | None:
    """`--rate-limit` as requests per minute, 0 for none."""
    try:
        count = int(rate_limit)
    except ValueError:
        raise ConfigError("--rate-limit", "requests per minute (0 = off)", rate_limit) from None
    if count < 0:
        raise ConfigError("--rate-limit", "requests per minute (0 = off)", rate_limit)
    return count or None
