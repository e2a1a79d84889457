"""`ticketwire replay`: send captured deliveries to a receiver again, byte for byte."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from cli.capture import read_captures
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

#: Headers a replay never copies: the connection's own, recomputed by the client.
_HOP = {"content-length", "host", "transfer-encoding", "connection"}


async def _replay(files: list[Path], url: str, secret: str | None, timeout_s: float) -> int:
    failures = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        for path in files:
            for record in read_captures(path):
                body = record["body"].encode("utf-8")
                headers = {
                    k: v for k, v in record.get("headers", {}).items() if k.lower() not in _HOP
                }
                headers.setdefault("Content-Type", "application/json")
                if secret:
                    # Another environment's receiver: re-sign with its secret.
                    headers[SIGNATURE_HEADER] = sign(body, secret)
                target = url
                if record.get("vendor") and url.rstrip("/").endswith("/webhooks"):
                    target = f"{url.rstrip('/')}/{record['vendor']}"
                try:
                    async with http.post(target, data=body, headers=headers) as resp:
                        answer = (await resp.text())[:200]
                        print(f"{record.get('event_id')}: {resp.status} {answer}")
                        failures += resp.status >= 300
                except aiohttp.ClientError as exc:
                    print(f"{record.get('event_id')}: failed: {exc}", file=sys.stderr)
                    failures += 1
    return 1 if failures else 0


def run_replay(files: list[Path], url: str, secret: str | None, timeout: float = 10.0) -> int:
    """POST each captured body with its stored headers (or re-signed with `secret`) to `url`."""
    return asyncio.run(_replay(files, url, secret, timeout))
