"""Test your rules: a harness running ticketwire against the bundled helpdesk simulators.

With pytest, the `ticketwire` fixture (the plugin in `ticketwire.testing.plugin`, enabled by
installing ticketwire) gives a started `Harness`; see the README's "Testing your rules".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticketwire.testing.harness import Harness, RulesError

__all__ = ["Harness", "RulesError"]


def __getattr__(name: str) -> Any:
    # Imported on first use: pytest loads the plugin beside this package in every test run,
    # and a run that never asks for the harness must not pay for its imports.
    if name in __all__:
        from ticketwire.testing import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
