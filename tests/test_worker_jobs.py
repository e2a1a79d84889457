"""arq jobs of the worker: arq accepts the worker even when no rule is scheduled."""

from __future__ import annotations

from arq import Worker

from ticketwire.config import Settings
from ticketwire.engine import Context, Router
from workers.app import ping, worker_options


async def test_a_worker_without_scheduled_rules_still_has_a_job_for_arq():
    plain = Router()

    @plain.on("ticket.created", vendor="inboxops")
    async def on_created(ctx: Context) -> None:
        pass

    options = worker_options(Settings(redis_url="redis://localhost:6379/0"), plain)
    assert options["cron_jobs"] == []
    worker = Worker(**options, handle_signals=False)
    assert list(worker.functions) == ["ping"]
    assert await ping({}) == "pong"
