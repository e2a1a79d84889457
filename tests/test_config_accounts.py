"""The accounts file: several accounts per helpdesk, in TOML or YAML, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit
from ticketwire.vendors.registry import bundle

TOML = """
[inboxops.brand-a]
webhook_secrets = {env = "BRAND_A_SECRET"}
api_url = "https://a.inboxops.app"
api_key = {env = "BRAND_A_KEY"}
rate_limit = "50/min"
bulk_max = 20

[inboxops.brand-b]
webhook_secrets = [{env = "BRAND_B_OLD"}, {env = "BRAND_B_NEW"}]
api_url = "https://b.inboxops.app"
api_key = {env = "BRAND_B_KEY"}

[cstar.eu]
api_key = {env = "EU_CSTAR_KEY"}
team_id = "team-eu"
signature_tolerance = "60s"
"""

YAML = """
inboxops:
  brand-a:
    webhook_secrets: {env: BRAND_A_SECRET}
    api_url: https://a.inboxops.app
    api_key: {env: BRAND_A_KEY}
    rate_limit: 50/min
    bulk_max: 20
  brand-b:
    webhook_secrets: [{env: BRAND_B_OLD}, {env: BRAND_B_NEW}]
    api_url: https://b.inboxops.app
    api_key: {env: BRAND_B_KEY}
cstar:
  eu:
    api_key: {env: EU_CSTAR_KEY}
    team_id: team-eu
    signature_tolerance: 60s
"""

SECRETS = {
    "BRAND_A_SECRET": "whsec_a",
    "BRAND_A_KEY": "ixk_a",
    "BRAND_B_OLD": "whsec_b_old",
    "BRAND_B_NEW": "whsec_b_new",
    "BRAND_B_KEY": "ixk_b",
    "EU_CSTAR_KEY": "sk_test_eu",
}
BASE = {
    "REDIS_URL": "redis://localhost:6379/0",
    "INBOXOPS_WEBHOOK_SECRETS": "whsec_default",
    "INBOXOPS_API_URL": "https://app.inboxops.app",
    "INBOXOPS_API_KEY": "ixk_default",
}


def _settings(tmp_path: Path, name: str, text: str, **env: str) -> Settings:
    path = tmp_path / name
    path.write_text(text)
    environ = {**BASE, **SECRETS, "TICKETWIRE_ACCOUNTS": str(path), **env}
    return Settings.from_env(environ, role="worker")


def _error(tmp_path: Path, name: str, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, name, text, **env)
    return str(caught.value)


@pytest.mark.parametrize(("name", "text"), [("a.toml", TOML), ("a.yaml", YAML), ("a.yml", YAML)])
def test_accounts_are_read_from_toml_and_yaml(tmp_path, name, text):
    s = _settings(tmp_path, name, text)
    inboxops = bundle("inboxops").accounts(s)
    assert list(inboxops) == ["default", "brand-a", "brand-b"]
    a, b = inboxops["brand-a"], inboxops["brand-b"]
    assert [x.reveal() for x in a.webhook_secrets] == ["whsec_a"]
    assert a.api_url == "https://a.inboxops.app" and a.api_key.reveal() == "ixk_a"
    assert a.rate_limits == (Limit("all", 50, 60.0),) and a.bulk_max == 20
    assert [x.reveal() for x in b.webhook_secrets] == ["whsec_b_old", "whsec_b_new"]
    assert b.bulk_max == 100
    eu = bundle("cstar").of(s, "eu")
    assert (eu.team_id, eu.signature_tolerance_s) == ("team-eu", 60.0)
    # The single-account variables are still the default account.
    assert s.vendor("inboxops").api_key.reveal() == "ixk_default"
    assert bundle("inboxops").of(s) is s.vendor("inboxops")


def test_without_the_file_each_vendor_has_its_default_account_only():
    s = Settings.from_env(BASE, role="worker")
    assert list(s.accounts("inboxops")) == ["default"]
    assert list(s.accounts("thena")) == ["default"]


def test_a_file_may_define_default_when_the_variables_are_unset(tmp_path):
    text = '[inboxops.default]\napi_url = "https://d.inboxops.app"\napi_key = {env = "K"}\n'
    path = tmp_path / "a.toml"
    path.write_text(text)
    env = {"REDIS_URL": BASE["REDIS_URL"], "K": "ixk_d", "TICKETWIRE_ACCOUNTS": str(path)}
    s = Settings.from_env(env, role="worker")
    assert s.vendor("inboxops").api_url == "https://d.inboxops.app"
    assert list(s.accounts("inboxops")) == ["default"]


def test_a_vendor_receives_when_only_a_named_account_has_secrets(tmp_path):
    text = '[cstar.eu]\nwebhook_secrets = {env = "S"}\n'
    path = tmp_path / "a.yaml"
    path.write_text("cstar:\n  eu:\n    webhook_secrets: {env: S}\n")
    env = {"REDIS_URL": BASE["REDIS_URL"], "S": "whsec_eu", "TICKETWIRE_ACCOUNTS": str(path)}
    assert Settings.from_env(env, role="web").vendors_receiving() == ("cstar",)
    assert text  # the same account in TOML is read by the test above


@pytest.mark.parametrize(
    ("name", "text", "env", "says"),
    [
        ("a.json", "{}", {}, "*.toml, *.yaml or *.yml"),
        ("a.toml", "[inboxops\n", {}, "valid TOML"),
        ("a.yaml", "inboxops: [\n", {}, "valid YAML"),
        ("a.yaml", "- 1\n", {}, "a table of helpdesks"),
        ("a.toml", "inboxops = 1\n", {}, "inboxops: a table of accounts"),
        ("a.toml", "[inboxops.Brand_A]\n", {}, "account names of 1 to 32 lowercase"),
        ("a.toml", f"[inboxops.{'a' * 33}]\n", {}, "account names of 1 to 32"),
        ("a.toml", "[inboxops]\nbrand = 1\n", {}, "inboxops.brand: a table of the account's"),
        ("a.toml", "[inboxops.a]\nbulk_max = true\n", {}, "bulk_max"),
        ("a.toml", "[zendesk.a]\n", {}, "zendesk: expected a helpdesk name: inboxops"),
        (
            "a.toml",
            "[inboxops.a]\nkey = 1\n",
            {},
            "inboxops.a.key: expected a field of a InboxOps account: webhook_secrets",
        ),
        (
            "a.toml",
            '[inboxops.a]\napi_key = "ixk_plain"\n',
            {},
            "inboxops.a.api_key: expected a reference to the environment",
        ),
        (
            "a.toml",
            '[inboxops.a]\napi_key = {env = "NOT_SET"}\n',
            {},
            "inboxops.a.api_key: expected the environment variable NOT_SET",
        ),
        (
            "a.toml",
            '[inboxops.a]\napi_key = {env = "K"}\n',
            {"K": "sk_wrong"},
            "inboxops.a.api_key (from K): expected an InboxOps API key starting with 'ixk_'",
        ),
        (
            "a.toml",
            '[inboxops.a]\nbulk_max = "lots"\n',
            {},
            "inboxops.a.bulk_max: expected an integer",
        ),
        (
            "a.toml",
            '[inboxops.a]\nrate_limit = "fast"\n',
            {},
            "inboxops.a.rate_limit: expected rate",
        ),
        ("a.toml", '[cstar.eu]\napi_key = {env = "K"}\n', {"K": "sk_x"}, "cstar.eu.team_id"),
        ("a.toml", '[thena.x]\nauth = "magic"\n', {}, "thena.x.auth: expected one of"),
        ("a.toml", "[inboxops.default]\n", {}, "inboxops.default: expected no `default` account"),
    ],
)
def test_every_bad_file_is_a_config_error_saying_where_and_what(tmp_path, name, text, env, says):
    message = _error(tmp_path, name, text, **env)
    assert says in message
    assert str(tmp_path) in message
    assert "Traceback" not in message


def test_a_missing_file_is_named(tmp_path):
    env = {**BASE, "TICKETWIRE_ACCOUNTS": str(tmp_path / "none.toml")}
    with pytest.raises(
        ConfigError, match=r"TICKETWIRE_ACCOUNTS \(.*none.toml\): expected a readable"
    ):
        Settings.from_env(env, role="worker")


def test_a_referenced_secret_is_never_echoed(tmp_path):
    message = _error(
        tmp_path, "a.toml", '[inboxops.a]\napi_key = {env = "K"}\n', K="very-secret-value"
    )
    assert "very-secret-value" not in message


def test_every_account_s_secrets_are_kept_out_of_logs(tmp_path):
    from ticketwire.logs import secret_values

    values = secret_values(_settings(tmp_path, "a.toml", TOML))
    assert {"whsec_default", "ixk_default", "whsec_a", "ixk_a", "whsec_b_new", "sk_test_eu"} <= set(
        values
    )
