"""One more vendor beside the built-in ones, for a block; nothing of it is kept after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ticketwire.vendors import registry
from ticketwire.vendors.bundle import Vendor
from ticketwire.vendors.registry import BUILTIN, Registry


@contextmanager
def extra_vendor(vendor: Vendor[Any]) -> Iterator[Registry]:
    """The built-in vendors plus `vendor` as the active registry until the block ends."""
    with registry.installed(Registry((*BUILTIN, vendor))) as extended:
        yield extended
