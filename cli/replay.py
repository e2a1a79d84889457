"""`ticketwire replay`: send captured deliveries to a receiver again, byte for byte."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from cli.capture import read_captures
from ticketwire.vendors.cstar import webhook as cstar
from ticketwire.vendors.inboxops import webhook as inboxops
from ticketwire.vendors.thena import webhook as thena

#: Headers a replay never copies: the connection's own, recomputed by the client.
_HOP = {"content-length", "host", "transfer-encoding", "connection"}


def resign(vendor: str, body: bytes, secret: str, thena_mode: str = "token") -> dict[str, str]:
    """The authentication headers `vendor` would send for `body` with `secret`, made now."""
    if vendor == "cstar":
        # A fresh timestamp: the receiver checks it against its tolerance window.
        return {cstar.SIGNATURE_HEADER: cstar.sign(body, secret, int(time.time()))}
    if vendor == "thena":
        if thena_mode == "hmac":
            return {thena.SIGNATURE_HEADER: thena.sign(body, secret)}
        # Token mode: captures never keep the token, so a replay always supplies it.
        return {thena.TOKEN_HEADER: f"Bearer {secret}"}
    return {inboxops.SIGNATURE_HEADER: inboxops.sign(body, secret)}


async def _replay(
    files: list[Path], url: str, secret: str | None, timeout_s: float, thena_mode: str = "token"
) -> int:
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
                    headers.update(
                        resign(record.get("vendor") or "inboxops", body, secret, thena_mode)
                    )
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


def run_replay(files: list[Path], url: str, secret: str | None, thena_mode: str = "token") -> int:
    """POST each captured body with its stored headers (or re-signed with `secret`) to `url`."""
    return asyncio.run(_replay(files, url, secret, 10.0, thena_mode))
