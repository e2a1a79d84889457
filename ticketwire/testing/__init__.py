"""Test your rules: a harness running ticketwire against the bundled helpdesk simulators.

With pytest, the `ticketwire` fixture (the plugin in `ticketwire.testing.plugin`, enabled by
installing ticketwire) gives a started `Harness`; see the README's "Testing your rules".
"""

from ticketwire.testing.harness import Harness, RulesError

__all__ = ["Harness", "RulesError"]
