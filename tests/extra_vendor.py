"""One more vendor beside the built-in ones, for a block; nothing of it is kept after."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ticketwire.engine import actions, changes, select
from ticketwire.vendors import registry
from ticketwire.vendors.bundle import Vendor
from ticketwire.vendors.registry import BUILTIN, Registry
from ticketwire.vocabulary import _CACHE as VOCABULARY_CACHE
from workers import loopguard


@contextmanager
def extra_vendor(vendor: Vendor[Any]) -> Iterator[Registry]:
    """The built-in vendors plus `vendor` as the active registry until the block ends."""
    try:
        with registry.installed(Registry((*BUILTIN, vendor))) as extended:
            yield extended
    finally:
        # Imported again, the actions module registers the vendor's actions again.
        sys.modules.pop(vendor.actions, None)
        for cache in (
            actions._REGISTRY,
            select._SELECTS,
            changes._COMMON_VIEWS,
            loopguard._ECHOES,
            VOCABULARY_CACHE,
        ):
            cache.pop(vendor.name, None)
