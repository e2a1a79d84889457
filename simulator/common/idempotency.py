"""Fingerprints of requests, to tell an idempotent replay from another request under its key."""

from __future__ import annotations

import hashlib
import json


def fingerprint(value: object) -> str:
    """The SHA-256 of `value`'s canonical JSON (sorted keys, compact): equal values, equal prints."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
