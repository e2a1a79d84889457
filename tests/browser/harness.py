"""A real stack for the console's browser tests: simulator, receiver and worker processes,
Redis, and headless Chromium from Debian's packages driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.test_processes import SECRET, env_for
from ticketwire.keys import Keys
from workers.pause import known_rules

if TYPE_CHECKING:
    from playwright.async_api import Page

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is not installed: pip install -e '.[dev]'"
)

#: Debian's package; Playwright cannot download its own browser here.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-console-token-0123456789"
RULE = "tag-urgent"
RULE_YAML = """
name: tag-urgent
vendor: inboxops
events: [ticket.updated]
if: {{field: priority, equals: urgent}}
then:
  - add_tags: ["{tag}"]
"""


def chromium_missing() -> str:
    """Why the browser tests cannot run here, or "" when they can."""
    if not Path(CHROMIUM).exists():
        return "Chromium not found: apt-get install -y chromium (see .ci/run)"
    return ""


def screenshot_dir() -> Path | None:
    """Where to save each page's screenshot (TICKETWIRE_SCREENSHOTS), or None."""
    raw = os.environ.get("TICKETWIRE_SCREENSHOTS", "")
    if not raw:
        return None
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Stack:
    """The running pieces a browser test works against."""

    base: str
    sim: InboxOpsSimulator
    redis: Redis
    keys: Keys
    web: Proc
    worker: Proc
    tag: str

    def ticket_key(self, ticket_id: str) -> str:
        """The ticket key the traces use."""
        return f"inboxops:{self.sim.workspace_id}:{ticket_id}"

    def tags_of(self, ticket_id: str) -> set[str]:
        """The tag ids the simulator has on a ticket."""
        return {t["id"] for t in self.sim.ticket(ticket_id, ["tags"])["tags"]}


async def _ready(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def running_stack(
    redis: Redis, redis_url: str, keys: Keys, tmp_path: Path, *, worker: bool = True
) -> AsyncIterator[Stack]:
    """Simulator, a receiver process with the console on, and a worker process (unless not)."""
    sim = InboxOpsSimulator(SimulatorConfig(seed=12, rate_limit_per_minute=None))
    await sim.start()
    procs: list[Proc] = []
    try:
        tag = sim.create_tag("urgent")["id"]
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "tag.yml").write_text(RULE_YAML.format(tag=tag))
        port = free_port()
        env = {
            **env_for(redis_url, keys, sim, rules, port),
            "TICKETWIRE_CONSOLE_TOKEN": TOKEN,
            "TICKETWIRE_BACKOFF": "50ms",
            "TICKETWIRE_MAX_ATTEMPTS": "2",
        }
        web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
        procs.append(web)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, f"{base}/readyz"), message="receiver ready")
        work = web
        if worker:
            work = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
            procs.append(work)
            await work.wait_output("runs rules")
            await wait_for(lambda: known_rules(redis, keys), message="the worker records its rules")
        sim.add_endpoint(f"{base}/webhooks/inboxops", SECRET)
        yield Stack(base, sim, redis, keys, web, work, tag)
    finally:
        for p in reversed(procs):
            await p.stop(signal.SIGTERM)
        await sim.stop()


@contextlib.asynccontextmanager
async def browser_page(base: str) -> AsyncIterator[Page]:
    """A fresh headless Chromium page (its own cookies) on the console's origin."""
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Paint holding keeps the previous page on screen during a same-site navigation,
            # which would count in the next page's first paint; one renderer process for the
            # test's pages, so a process start does not either.
            args=["--disable-features=PaintHolding", "--disable-site-isolation-trials"],
        )
        try:
            context = await browser.new_context(
                base_url=base, viewport={"width": 1360, "height": 860}
            )
            page = await context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            await browser.close()


async def log_in(page: Page, token: str = TOKEN) -> None:
    """Log in through the form, as a person would."""
    await page.goto("/console/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def shoot(page: Page, name: str) -> None:
    """Save a full-page screenshot when TICKETWIRE_SCREENSHOTS names a directory."""
    where = screenshot_dir()
    if where is not None:
        await page.screenshot(path=str(where / f"{name}.png"), full_page=True)
