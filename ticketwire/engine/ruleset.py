"""Rules as one versioned whole: a fingerprint of the rule files, and a checked load of them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ticketwire.engine.loader import check_rules, rule_files
from ticketwire.engine.router import Router
from ticketwire.errors import RuleConfigError

#: Loads retried when the files change while they are read (an editor or a deploy writing).
_LOAD_ATTEMPTS = 3


def rules_fingerprint(path: str | os.PathLike[str]) -> str:
    """A short digest of the rule files' names and contents: equal files, equal fingerprint.

    `-` when the directory does not exist or a file cannot be read.
    """
    root = Path(path)
    try:
        files = [root] if root.is_file() else rule_files(root)
        digest = hashlib.sha256()
        for file in files:
            data = file.read_bytes()
            # Lengths first, so no two different sets of files hash the same bytes.
            name = file.name.encode()
            digest.update(b"%d:%s%d:" % (len(name), name, len(data)))
            digest.update(data)
    except OSError:
        return "-"
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class RuleSet:
    """The rules of a directory as loaded at one moment: the router, or what is wrong."""

    router: Router | None
    errors: tuple[RuleConfigError, ...]
    fingerprint: str

    @property
    def ok(self) -> bool:
        """True when every file loaded without an error."""
        return self.router is not None and not self.errors

    def describe(self) -> str:
        """e.g. `rules 3f9a0c1d2e4b (7 rules)`."""
        n = len(self.router.rules) if self.router is not None else 0
        return f"rules {self.fingerprint} ({n} rule{'s' if n != 1 else ''})"


def load_rule_set(path: str | os.PathLike[str]) -> RuleSet:
    """Check and load the rules under `path`, with the fingerprint of exactly what was loaded."""
    for _ in range(_LOAD_ATTEMPTS):
        before = rules_fingerprint(path)
        router, errors = check_rules(path)
        if rules_fingerprint(path) == before:
            break
    return RuleSet(router if not errors else None, tuple(errors), before)
