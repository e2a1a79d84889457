"""Fault injection: scripted API answers for matching requests, and the webhook fault knobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from simulator.common import faults

API_PREFIX = "/api/v1"


@dataclass
class ScriptedFailure(faults.ScriptedFailure):
    """A scripted answer whose glob may be written relative to /api/v1."""

    api_prefix: ClassVar[str] = API_PREFIX


@dataclass
class Faults(faults.Faults):
    """All fault state of one simulator; choices come from a seeded generator."""

    rule: ClassVar[type[faults.ScriptedFailure]] = ScriptedFailure
