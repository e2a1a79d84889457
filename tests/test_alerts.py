"""The shipped alert rules and dashboard: promtool checks and unit tests, and only real metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from receiver.app import create_app, vendor_intakes
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.stack import running_worker, stack_settings
from ticketwire.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "ticketwire.json"
#: Where .ci/run unpacks Debian's promtool when it is not installed system-wide.
CI_PROMTOOL = ROOT / ".ci" / "prometheus-deb" / "root" / "usr" / "bin" / "promtool"
_NAME = re.compile(r"\bticketwire_[a-z_]+\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def promtool() -> str:
    found = shutil.which("promtool") or (str(CI_PROMTOOL) if CI_PROMTOOL.exists() else None)
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus, or see .ci/run); "
            "the metric-name tests below still check the rules"
        )
    return found


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=13, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def exported(
    redis: Redis,
    redis_url: str,
    keys: Keys,
    sim: InboxOpsSimulator,
    tmp_path: Path,
    aiohttp_client: object,
) -> set[str]:
    """Every sample name a real /metrics offers, scraped from a receiver beside a worker."""
    rules = tmp_path / "rules"
    rules.mkdir()
    settings = stack_settings(redis_url, keys, sim, rules)
    async with running_worker(settings):
        client: TestClient = await aiohttp_client(  # type: ignore[operator]
            create_app(settings, redis, vendor_intakes(settings))
        )
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("ticketwire_"):
            names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
    return names


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in doc["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_the_alerts_cover_what_operators_ask() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "TicketwireLagging",
        "TicketwireDeadLettersGrowing",
        "TicketwireBudgetPaused",
        "TicketwireHelpdesk5xx",
        "TicketwireIntakeUnavailable",
        "TicketwireWorkerWithoutPartitions",
    } <= names
    for rule in alert_rules():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


async def test_every_alert_names_only_exported_metrics(exported: set[str]) -> None:
    # The list is real: it holds the names the alerts rest on, and no unexported one.
    assert {"ticketwire_queue_lag_seconds", "ticketwire_worker_partitions"} <= exported
    assert "ticketwire_deliveries" not in exported
    for rule in alert_rules():
        used = set(_NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']} uses {sorted(used - exported)}"


async def test_every_dashboard_panel_names_only_exported_metrics(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for title, expr in exprs:
        used = set(_NAME.findall(expr))
        assert used, title
        assert used <= exported, f"panel {title!r} uses {sorted(used - exported)}"
    # Every metric ticketwire exports is on the dashboard somewhere.
    shown = {name for _, expr in exprs for name in _NAME.findall(expr)}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported}
    missing = {f for f in families if not any(s.startswith(f) for s in shown)}
    assert not missing


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_fire_each_alert() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in alert_rules()}
    out = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
