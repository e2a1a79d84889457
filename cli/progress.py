"""Progress of long runs (`replay`, `capture`): a bar on a terminal, a tally always."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Never, TextIO

from tqdm import tqdm


def progress_bar(total: int | None, what: str, *, stream: TextIO | None = None) -> tqdm[Never]:
    """A bar with rate and ETA on stderr, shown only when stderr is a terminal."""
    out = stream or sys.stderr
    return tqdm(
        total=total,
        unit=f" {what}",
        file=out,
        # Scripts and CI logs get the summary line only, never carriage-return noise.
        disable=not out.isatty(),
        dynamic_ncols=True,
        leave=False,
    )


@dataclass
class Tally:
    """What happened to each delivery sent."""

    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    ignored: int = 0
    failed: int = 0

    def summary(self) -> str:
        """One line: `sent N, accepted N, duplicate N, failed N` (ignored when any)."""
        ignored = f", ignored {self.ignored}" if self.ignored else ""
        return (
            f"sent {self.sent}, accepted {self.accepted}, duplicate {self.duplicate}"
            f"{ignored}, failed {self.failed}"
        )
