"""`ticketwire check [DIR]`: load every rule, print errors or the event → rules table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ticketwire.engine import check_rules, render_table


def run_check(directory: Path | None) -> int:
    """Validate `directory`; return 0 when every rule loads, 1 otherwise."""
    path = directory or Path(os.environ.get("TICKETWIRE_RULES") or "rules")
    router, errors = check_rules(path)
    if errors or router is None:
        print(f"{len(errors)} error(s) in {path}:", file=sys.stderr)
        for err in errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    print(render_table(router))
    print(f"\n{len(router.rules)} rule(s) in {path}: OK")
    return 0
