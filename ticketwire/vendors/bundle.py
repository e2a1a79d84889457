"""`Vendor`: everything one helpdesk contributes to ticketwire, in one value its package exports.

`S` is the vendor's settings type and describes ONE account of the helpdesk (a workspace, team
or organisation); every factory takes that account's settings. Factories import the vendor's
heavier modules when called, so a process pays only for what it uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from secrets import token_hex
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ticketwire.secret import Secret

if TYPE_CHECKING:
    import aiohttp

    from simulator.common.bundle import SimulatorBundle
    from ticketwire.calls import ApiCall
    from ticketwire.config import Role, Settings
    from ticketwire.engine.actions import VendorSpec
    from ticketwire.engine.router import Rule
    from ticketwire.engine.select import VendorSelect
    from ticketwire.envread import Env
    from ticketwire.event import Event
    from ticketwire.ratebudget import Limit
    from ticketwire.vendors import HelpdeskClient, WebhookIntake
    from ticketwire.vocabulary import Vocabulary
    from ticketwire.writeback import BatchSpec

S = TypeVar("S")
#: Which ticket fields a call sets (the loop guard's echo expansion).
WrittenFields = Callable[["ApiCall"], dict[str, Any]]
#: A ticket as the vendor's list API returns it → (ticket as rules read it, its common view).
ListedView = Callable[[Mapping[str, Any]], tuple[dict[str, Any], dict[str, Any]]]
#: The settings field holding an account's webhook secrets.
WEBHOOK_SECRETS = "webhook_secrets"
#: The headers the helpdesk sends with a delivery: (account, body, secret) → headers, made now.
Signer = Callable[[Any, bytes, str], dict[str, str]]


@dataclass(frozen=True)
class Echo:
    """How the loop guard recognises the vendor's own writes coming back as webhooks."""

    written_fields: WrittenFields
    #: Ticket fields every write changes, which a change never counts.
    bookkeeping: frozenset[str]


class Account(Protocol):
    """Settings of one account that build what the account needs: a bundle's defaults."""

    #: The most ticket ids one bulk call carries, where the account sets it (see `packaged`).
    bulk_max: int

    def need_api(self) -> None:
        """Raise `ConfigError` naming what a worker needs to call this API."""

    def intake(self) -> WebhookIntake | None:
        """The webhook verifier/parser, or None when the webhooks are not configured."""

    def client(self, session: aiohttp.ClientSession, timeout: float) -> HelpdeskClient | None:
        """The API client, or None when the API is not configured."""

    def budget(self) -> tuple[str, tuple[Limit, ...]] | None:
        """The API's budget scope and limits, or None when the API is not configured."""

    def tenant(self) -> str | None:
        """The tenant id of scheduled events when the settings name it, else None."""


def _own(method: str) -> Callable[..., Any]:
    """A bundle default: the account settings' own `method` (see `Account`)."""

    def call(account: Any, *args: Any) -> Any:
        return getattr(account, method)(*args)

    return call


_OWN_NEED_API = _own("need_api")
_OWN_INTAKE = _own("intake")
_OWN_CLIENT = _own("client")
_OWN_BUDGET = _own("budget")
_OWN_TENANT = _own("tenant")


def _webhook_secrets(account: Any) -> tuple[Secret, ...]:
    """`webhook_secrets` of a vendor whose settings hold them as `webhook_secrets`."""
    secrets: tuple[Secret, ...] = account.webhook_secrets
    return secrets


def _api_configured(account: Any) -> bool:
    """`calls_api` of a vendor whose settings say so as `api_configured`."""
    return bool(account.api_configured)


def _nothing_required(account: Any, role: Role) -> None:
    """`require` of a vendor whose settings are checked as they are read."""


def _unsigned(account: Any, body: bytes, secret: str) -> dict[str, str]:
    """`sign` of a vendor whose deliveries carry no signature."""
    return {}


def _signing_as(account: Any, mode: str, header: str | None) -> Any:
    """`signing_as` of a vendor whose settings say how they sign as `webhook_mode`/`_header`."""
    if not any(f.name == "webhook_mode" for f in dataclasses.fields(account)):
        return account
    return dataclasses.replace(account, webhook_mode=mode, webhook_header=header)


#: Why captured signatures fail on another receiver, for a helpdesk that signs every delivery.
STALE_CAPTURES = (
    "the captured signatures are not valid for this receiver (another environment's secret, or "
    "a cStar timestamp past its tolerance)"
)


def no_notes(rules: Iterable[Rule]) -> list[str]:
    """`rule_notes` of a vendor with nothing to say about its rules."""
    return []


@dataclass(frozen=True)
class Vendor(Generic[S]):
    """One helpdesk: its name, settings, intake, client, vocabulary and rule support."""

    name: str
    #: How people write the helpdesk's name, e.g. `InboxOps`.
    title: str
    #: The settings of one account; constructed with no arguments, the defaults.
    settings: type[S]
    #: Read one account's settings from the environment; raise `ConfigError` naming a variable.
    read: Callable[[Env], S]
    #: What to put in the webhook secrets' variable (for a receiver without any).
    webhook_hint: str
    #: The pure parser workers use on stored bodies.
    parser: Callable[[], Callable[[bytes], Event]]
    #: The vendor's action vocabulary and planner (its `VendorSpec`), built on first lookup.
    actions: Callable[[], VendorSpec]
    #: How write-backs combine into bulk calls, with the configured sizes.
    batching: Callable[[S], BatchSpec]
    #: The loop guard's view of the vendor's writes.
    echo: Callable[[], Echo]
    #: The `select:` keys of scheduled rules (the list API's filters).
    select: Callable[[], VendorSelect]
    #: A listed ticket as rules read it, and its common view.
    listed: Callable[[], ListedView]
    #: The neutral view of a ticket dict as webhooks carry it (what changed in `common.*`).
    common_view: Callable[[], Callable[[Mapping[str, Any]], dict[str, Any]]]
    #: Status and priority values against the neutral vocabulary.
    vocabulary: Vocabulary
    #: Raise `ConfigError` naming what a worker needs to call this API (when none is configured).
    need_api: Callable[[S], None] = _OWN_NEED_API
    #: The webhook verifier/parser, or None when the account's webhooks are not configured.
    intake: Callable[[S], WebhookIntake | None] = _OWN_INTAKE
    #: The API client (settings, session, timeout in seconds), or None when not configured.
    client: Callable[[S, aiohttp.ClientSession, float], HelpdeskClient | None] = _OWN_CLIENT
    #: The API's budget scope (vendor and account) and limits, or None when not configured.
    budget: Callable[[S], tuple[str, tuple[Limit, ...]] | None] = _OWN_BUDGET
    #: The tenant id of scheduled events when the settings name it, else None (found later).
    tenant: Callable[[S], str | None] = _OWN_TENANT
    #: The account's webhook secrets; none: the receiver does not accept its webhooks.
    webhook_secrets: Callable[[S], tuple[Secret, ...]] = _webhook_secrets
    #: Whether the account's API is configured well enough for a worker to call it.
    calls_api: Callable[[S], bool] = _api_configured
    #: Raise `ConfigError` when the settings cannot work together for `role`.
    require: Callable[[S, Role], None] = _nothing_required
    #: Lines `ticketwire check` prints about the vendor's rules (e.g. what a reminder will do).
    rule_notes: Callable[[Iterable[Rule]], list[str]] = no_notes
    #: Variable holding the webhook secrets; by default the one of `webhook_secrets`.
    webhook_variable: str = ""
    #: How a delivery is signed for the account (built on first use): `replay` and `fire` use it.
    sign: Callable[[], Signer] = lambda: _unsigned
    #: The account signing in another mode (and header) where the helpdesk has several (`replay`).
    signing_as: Callable[[S, str, str | None], S] = _signing_as
    #: Canonical event names → the helpdesk's own, where they differ (built on first use).
    event_names: Callable[[], Mapping[str, str]] = dict
    #: Ticket fields a canonical event implies unless given (a close may be a closed status).
    event_fields: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: The ticket field saying when it was last updated (the order key of its events).
    updated_field: str = "updated_at"
    #: The form of an event id: `{uuid}` a UUID, `{hex}` 24 hex digits (e.g. `evt_{hex}`).
    event_id_form: str = "{uuid}"
    #: Why a receiver refuses captured deliveries replayed as they are (a 401).
    replay_refused: str = STALE_CAPTURES
    #: How long after an event the helpdesk may still retry its delivery (None: not known).
    retry_horizon_s: float | None = None
    #: The helpdesk's simulator (`ticketwire simulate`, `up`, `fire`), or None when it has none.
    simulator: Callable[[], SimulatorBundle] | None = None

    def __post_init__(self) -> None:
        if not self.webhook_variable:
            object.__setattr__(self, "webhook_variable", self.variable_of(WEBHOOK_SECRETS))

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables `read` takes, one a settings field; an accounts file names each by
        `field_of`."""
        return tuple(self.variable_of(f.name) for f in _fields(self.settings))

    @property
    def secret_variables(self) -> frozenset[str]:
        """Those holding secrets, which an accounts file may only take from the environment."""
        hints = typing.get_type_hints(self.settings)
        return frozenset(
            self.variable_of(f.name) for f in _fields(self.settings) if _holds_secret(hints[f.name])
        )

    def variable_of(self, field: str) -> str:
        """The variable of settings `field`: `<NAME>_<FIELD>`, or `<NAME>_<its variable>`."""
        named = {f.name: f.metadata.get(VARIABLE, f.name) for f in _fields(self.settings)}
        return f"{self.name}_{named.get(field, field)}".upper()

    def of(self, settings: Settings, account: str = "default") -> S:
        """This vendor's settings of `account` out of `Settings` (typed); `KeyError` if unknown."""
        value = settings.accounts(self.name)[account]
        if not isinstance(value, self.settings):
            raise TypeError(f"settings of {self.name} are a {type(value).__name__}")
        return value

    def accounts(self, settings: Settings) -> dict[str, S]:
        """Every account's settings of this vendor, `default` first (typed)."""
        return {name: self.of(settings, name) for name in settings.accounts(self.name)}

    def field_of(self, variable: str) -> str:
        """The accounts file's name for `variable`, e.g. `api_key` for `INBOXOPS_API_KEY`."""
        return variable.removeprefix(f"{self.name.upper()}_").lower()

    def own_event(self, event: str) -> str:
        """`event` as the helpdesk names it (Thena names `ticket.updated` `ticket:updated`)."""
        return self.event_names().get(event, event)

    def new_event_id(self) -> str:
        """A fresh event id in the helpdesk's own form."""
        return self.event_id_form.format(uuid=uuid.uuid4(), hex=token_hex(12))

    def secrets(self, account: S) -> list[Secret]:
        """Every secret in the account's settings, to keep out of logs."""
        out: list[Secret] = []
        for f in dataclasses.fields(account):  # type: ignore[arg-type]
            value = getattr(account, f.name)
            values = value if isinstance(value, tuple) else (value,)
            out.extend(v for v in values if isinstance(v, Secret))
        return out


#: Settings field metadata naming its variable when not after the field, e.g. `rate_limit`.
VARIABLE = "variable"


def variable(name: str) -> dict[str, str]:
    """Field metadata: the field is read from `<NAME>_<name>`, not from its own name."""
    return {VARIABLE: name}


def _fields(settings: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(settings) if dataclasses.is_dataclass(settings) else ()


def _holds_secret(hint: Any) -> bool:
    """Whether a field's type is `Secret` or holds one (optional, in a tuple)."""
    return hint is Secret or any(_holds_secret(arg) for arg in typing.get_args(hint))


def packaged(package: str, *, parser: str = "parse", sized: bool = True) -> dict[str, Any]:
    """The parts of the vendor package `package` (its name the vendor's) found by module name.

    `vocabulary.VOCABULARY`, `webhook.parse` (or `parser`), `webhook.common_view` and
    `webhook.signed_headers`,
    `actions.SPEC`, `batching.spec` (given the account's `bulk_max` when `sized`), `echo.ECHO`,
    and `listing.SELECT` and `listing.view`.
    """
    vocabulary: Vocabulary = importlib.import_module(f"{package}.vocabulary").VOCABULARY

    def batching(account: Any) -> BatchSpec:
        spec = importlib.import_module(f"{package}.batching").spec
        built: BatchSpec = spec(account.bulk_max) if sized else spec()
        return built

    return {
        "name": package.rpartition(".")[2],
        "vocabulary": vocabulary,
        "parser": lazy(f"{package}.webhook", parser),
        "actions": lazy(f"{package}.actions", "SPEC"),
        "batching": batching,
        "echo": lazy(f"{package}.echo", "ECHO"),
        "select": lazy(f"{package}.listing", "SELECT"),
        "listed": lazy(f"{package}.listing", "view"),
        "common_view": lazy(f"{package}.webhook", "common_view"),
        "sign": lazy(f"{package}.webhook", "signed_headers"),
    }


def lazy(module: str, name: str) -> Callable[[], Any]:
    """A factory returning `module.name`, importing the module only when first called."""

    def load() -> Any:
        return getattr(importlib.import_module(module), name)

    return load


def key_digest(key: Secret) -> str:
    """A short digest of an API key, standing in for an account only the key identifies."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()[:12]
