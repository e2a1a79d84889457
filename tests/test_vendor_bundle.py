"""Vendor bundles: each built-in one is complete, and one more vendor is picked up everywhere."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.app import vendor_intakes
from tests.extra_vendor import extra_vendor
from tests.test_loopguard import event
from ticketwire.config import Settings
from ticketwire.engine.actions import (
    ActionSpec,
    Plan,
    VendorSpec,
    registered_vendors,
    vendor_spec,
)
from ticketwire.engine.changes import field_changes
from ticketwire.engine.ruleset import load_rule_set
from ticketwire.engine.select import SelectKey, VendorSelect, select_keys, vendor_select
from ticketwire.envread import Env
from ticketwire.errors import ConfigError, RuleConfigError
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors import registry
from ticketwire.vendors.bundle import Echo, Vendor, no_notes
from ticketwire.vendors.registry import BUILTIN, VENDORS, Registry
from ticketwire.vocabulary import (
    NEUTRAL_PRIORITIES,
    NEUTRAL_STATUSES,
    Vocabulary,
    neutral_status,
    vendor_status,
)
from ticketwire.writeback import BatchSpec
from workers.loopguard import echo_of

ALL_ENV = {
    "INBOXOPS_WEBHOOK_SECRETS": "whsec_io",
    "INBOXOPS_API_URL": "https://app.inboxops.app",
    "INBOXOPS_API_KEY": "ixk_live_1",
    "CSTAR_WEBHOOK_SECRETS": "whsec_cs",
    "CSTAR_TEAM_ID": "team-1",
    "CSTAR_API_KEY": "sk_test_1",
    "THENA_WEBHOOK_SECRETS": "tok",
    "THENA_API_KEY": "th_key",
    "THENA_ORG_ID": "org-1",
}


@pytest.mark.parametrize("vendor", BUILTIN, ids=lambda v: v.name)
def test_each_builtin_bundle_is_complete(vendor: Vendor[Any]) -> None:
    for f in dataclasses.fields(vendor):
        assert getattr(vendor, f.name) not in (None, ""), f.name
    assert vendor.read(Env({})) == vendor.settings()
    configured = vendor.read(Env(ALL_ENV))
    assert isinstance(configured, vendor.settings)
    assert vendor.webhook_secrets(configured) and vendor.calls_api(configured)
    assert vendor.secrets(configured)
    vendor.require(configured, "worker")
    vendor.need_api(configured)
    with pytest.raises(ConfigError):
        vendor.need_api(vendor.settings())
    assert vendor.intake(vendor.settings()) is None
    intake = vendor.intake(configured)
    assert intake is not None and intake.vendor == vendor.name
    assert isinstance(vendor.batching(configured), BatchSpec)
    assert vendor.budget(vendor.settings()) is None
    scope = vendor.budget(configured)
    assert scope is not None and scope[0].startswith(f"{vendor.name}:")
    assert isinstance(vendor.echo(), Echo)
    assert vendor.select().vendor == vendor.name
    assert callable(vendor.parser()) and callable(vendor.listed())
    assert callable(vendor.common_view())
    assert vendor_spec(vendor.name).vendor == vendor.name
    assert vendor.rule_notes([]) == []


async def test_builtin_clients_are_built_from_their_settings() -> None:
    settings = Settings.from_env(ALL_ENV, role="check")
    async with aiohttp.ClientSession() as session:
        for vendor in BUILTIN:
            assert vendor.client(vendor.settings(), session, 1.0) is None
            client = vendor.client(settings.vendor(vendor.name), session, 1.0)
            assert client is not None and client.vendor == vendor.name


def test_builtin_names_are_unique_and_listed_once() -> None:
    assert VENDORS == ("inboxops", "cstar", "thena")
    assert len(set(VENDORS)) == len(VENDORS)
    with pytest.raises(ValueError, match="unique"):
        Registry((*BUILTIN, BUILTIN[0]))


@pytest.mark.parametrize("vendor", BUILTIN, ids=lambda v: v.name)
def test_vocabulary_round_trips(vendor: Vendor[Any]) -> None:
    words = vendor.vocabulary
    assert set(words.status_to) == set(NEUTRAL_STATUSES)
    assert set(words.priority_to) == set(NEUTRAL_PRIORITIES)
    for own in words.status_to.values():
        back = words.status_from[own.lower()]
        assert words.status_to[back] == own
    for neutral, own in words.priority_to.items():
        assert words.priority_from[own.lower()] == neutral
    assert set(words.status_from.values()) <= set(NEUTRAL_STATUSES)
    assert set(words.priority_from.values()) <= set(NEUTRAL_PRIORITIES)


# ---- one more vendor ----


@dataclass(frozen=True)
class AcmeSettings:
    """One Acme desk."""

    webhook_secrets: tuple[Secret, ...] = ()
    api_key: Secret | None = None


def read_acme(env: Env) -> AcmeSettings:
    key = env.text("ACME_API_KEY")
    return AcmeSettings(env.secrets("ACME_WEBHOOK_SECRETS"), Secret(key) if key else None)


class AcmeIntake:
    vendor = "acme"
    replay_headers: tuple[str, ...] = ()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Every body is signed."""

    def parse(self, body: bytes) -> Event:
        raise NotImplementedError

    def inspect(self, body: bytes) -> Routing:
        raise NotImplementedError


@dataclass
class AcmeClient:
    vendor: str = "acme"
    budget: None = None


def parse_acme(body: bytes) -> Event:
    raise NotImplementedError


def acme_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return dict(item), {"status": neutral_status("acme", item.get("state"))}


def acme_select() -> VendorSelect:
    return VendorSelect("acme", select_keys(SelectKey("state", "enum", values=("up", "down"))))


ACME = Vendor(
    name="acme",
    title="Acme",
    settings=AcmeSettings,
    read=read_acme,
    webhook_variable="ACME_WEBHOOK_SECRETS",
    webhook_hint="Acme's webhook secret",
    webhook_secrets=lambda a: a.webhook_secrets,
    calls_api=lambda a: a.api_key is not None,
    require=lambda a, role: None,
    need_api=lambda a: None,
    intake=lambda a: AcmeIntake() if a.webhook_secrets else None,
    client=lambda a, session, timeout: AcmeClient() if a.api_key else None,
    parser=lambda: parse_acme,
    actions=lambda: VendorSpec("acme", {}, lambda event, decisions: Plan()),
    batching=lambda a: BatchSpec(lambda c: None, lambda c: None, lambda c, ids: c),
    budget=lambda a: ("acme:desk", ()) if a.api_key else None,
    echo=lambda: Echo(lambda call: {}, frozenset({"touched"})),
    select=acme_select,
    listed=lambda: acme_view,
    common_view=lambda: lambda ticket: {"status": neutral_status("acme", ticket.get("state"))},
    vocabulary=Vocabulary(
        status_to={
            s: "up" if s in ("new", "open", "in_progress") else "down" for s in NEUTRAL_STATUSES
        },
        status_from={"up": "open", "down": "closed"},
        priority_to={p: p for p in NEUTRAL_PRIORITIES},
        priority_from={p: p for p in NEUTRAL_PRIORITIES},
    ),
    tenant=lambda a: "desk-1",
    rule_notes=no_notes,
)


@pytest.fixture
def with_acme() -> Iterator[Registry]:
    """The built-in vendors plus Acme, active for one test; nothing of Acme is kept after it."""
    with extra_vendor(ACME) as extended:
        yield extended


async def test_one_more_vendor_is_picked_up_everywhere(with_acme: Registry) -> None:
    env = {**ALL_ENV, "ACME_WEBHOOK_SECRETS": "a1", "ACME_API_KEY": "k"}
    settings = Settings.from_env({"REDIS_URL": "redis://localhost", **env}, role="web")
    assert isinstance(settings.vendor("acme"), AcmeSettings)
    assert settings.vendors_receiving() == ("inboxops", "cstar", "thena", "acme")
    assert [i.vendor for i in vendor_intakes(settings)] == ["inboxops", "cstar", "thena", "acme"]
    async with aiohttp.ClientSession() as session:
        assert set(registry.clients(settings, session)) == {"inboxops", "cstar", "thena", "acme"}
    assert registry.budget_scopes(settings)["acme"] == ("acme:desk", ())
    assert registry.batch_specs(settings)["acme"].max_ids == 100
    assert registry.parser("acme") is parse_acme
    assert "acme" in registered_vendors() and vendor_spec("acme").vendor == "acme"
    assert list(vendor_select("acme").keys) == ["state"]
    assert vendor_status("acme", "waiting") == "down" and neutral_status("acme", "UP") == "open"
    echo = echo_of("acme")
    assert echo is not None and echo.bookkeeping == {"touched"}


def test_messages_name_the_registry_vendors(with_acme: Registry, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yml").write_text(
        json.dumps([{"name": "unpinned", "every": "1h", "then": [{"set_status": "closed"}]}])
    )
    loaded = load_rule_set(rules)
    assert not loaded.ok
    assert "needs vendor: (inboxops, cstar, thena or acme)" in str(loaded.errors[0])
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"REDIS_URL": "redis://localhost"}, role="web")
    assert "CSTAR_WEBHOOK_SECRETS / THENA_WEBHOOK_SECRETS / ACME_WEBHOOK_SECRETS" in str(
        raised.value
    )


def test_without_the_extra_registry_acme_is_unknown() -> None:
    assert "acme" not in registry.names()
    with pytest.raises(KeyError, match="unknown vendor 'acme'"):
        registry.parser("acme")
    assert echo_of("acme") is None


def acme_event() -> Event:
    """An Acme delivery that says what changed."""
    changes = {"state": {"from": "up", "to": "down"}}
    return event(state="down").model_copy(update={"vendor": "acme", "changes": changes})


def acme_lookups() -> dict[str, Any]:
    """What every per-vendor lookup says of `acme` now (an exception's type when it refuses)."""

    def seen(lookup: Callable[[], Any]) -> Any:
        try:
            return lookup()
        except (KeyError, RuleConfigError) as exc:
            return type(exc).__name__

    return {
        "registered": "acme" in registered_vendors(),
        "actions": seen(lambda: list(vendor_spec("acme").actions)),
        "select": seen(lambda: list(vendor_select("acme").keys)),
        "echo": echo.bookkeeping if (echo := echo_of("acme")) else None,
        "vocabulary": seen(lambda: vendor_status("acme", "waiting")),
        "changes": sorted(field_changes(acme_event()) or {}),
    }


def test_nothing_of_a_vendor_is_left_once_its_registry_block_ends() -> None:
    before = acme_lookups()
    assert before == {
        "registered": False,
        "actions": "RuleConfigError",
        "select": "RuleConfigError",
        "echo": None,
        "vocabulary": "KeyError",
        "changes": ["state"],
    }
    with extra_vendor(ACME):
        assert acme_lookups() == {
            "registered": True,
            "actions": [],
            "select": ["state"],
            "echo": {"touched"},
            "vocabulary": "down",
            "changes": ["common.status", "state"],
        }
    assert acme_lookups() == before
    # Another vendor of the same name is looked up afresh, not served what the first one left.
    other = dataclasses.replace(
        ACME,
        actions=lambda: VendorSpec("acme", {"close": CLOSE}, lambda event, decisions: Plan()),
        select=lambda: VendorSelect("acme", select_keys(SelectKey("queue", "text"))),
        echo=lambda: Echo(lambda call: {}, frozenset({"stamp"})),
        vocabulary=dataclasses.replace(ACME.vocabulary, status_to={"waiting": "parked"}),
        common_view=lambda: lambda ticket: {},
    )
    with extra_vendor(other):
        assert acme_lookups() == {
            "registered": True,
            "actions": ["close"],
            "select": ["queue"],
            "echo": {"stamp"},
            "vocabulary": "parked",
            "changes": ["state"],
        }
    assert acme_lookups() == before


CLOSE = ActionSpec("close", "close the ticket", lambda value: ("close", {}))
