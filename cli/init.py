"""`ticketwire init [DIR]`: start a project of your own from the shipped template.

The template (`cli/templates/`, package data) holds the example rules (the repository's
`rules/`, linked in), a test for each, a `Procfile`, a `.env.example` listing every variable
and a short README. Existing files are kept; an existing non-empty `rules/` stops it, so the
examples never join rules already in use.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

#: Template names stored without their leading dot (a `.gitignore` would apply to the package).
RENAMED = {"gitignore": ".gitignore"}
#: Build and test leftovers that may sit beside the template files in a source checkout.
SKIPPED = {"__pycache__", ".pytest_cache"}


def template() -> Traversable:
    """The project template shipped with the package."""
    return files("cli") / "templates"


def plan_files(root: Traversable) -> list[tuple[str, Traversable]]:
    """(relative path in the new project, template file), in a stable order."""
    out: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in SKIPPED or child.name.endswith(".pyc"):
                continue
            name = RENAMED.get(child.name, child.name) if not prefix else child.name
            if child.is_dir():
                walk(child, f"{prefix}{name}/")
            else:
                out.append((f"{prefix}{name}", child))

    walk(root, "")
    return out


def no_rules_dir(rules_dir: Path) -> str:
    """What a command that needs rules says when there are none: start a project with init."""
    return (
        f"no rules directory {rules_dir}/ here ({Path.cwd()}). Run `ticketwire init` to start a "
        "project with example rules, or point TICKETWIRE_RULES at your rules."
    )


def run_init(directory: Path) -> int:
    """Write the project template into `directory`; return the exit status."""
    rules = directory / "rules"
    if rules.exists() and not (rules.is_dir() and not any(rules.iterdir())):
        print(
            f"ticketwire init: {rules}/ already has files; init starts a new project and would "
            "add its example rules to yours. Choose an empty directory: ticketwire init DIR",
            file=sys.stderr,
        )
        return 1
    written: list[str] = []
    kept: list[str] = []
    for rel, source in plan_files(template()):
        target = directory / rel
        if target.exists():
            kept.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        written.append(rel)
    n_rules = sum(
        1 for r in written if r.startswith("rules/") and r.endswith((".yml", ".yaml", ".py"))
    )
    n_tests = sum(1 for r in written if r.startswith("tests/test_"))
    where = "." if directory == Path(".") else str(directory)
    print(f"Started a ticketwire project in {where}:")
    print(f"  rules/         {n_rules} example rules (the reference: rules/README.md)")
    print(f"  tests/         a test for each ({n_tests}; run them with pytest)")
    print("  Procfile       web and worker, for a deployment")
    print("  .env.example   every setting, with its default")
    print("  README.md, .gitignore")
    if kept:
        print(f"Kept your own: {', '.join(kept)}")
    print("\nNext:")
    if where != ".":
        print(f"  cd {where}")
    print("  ticketwire check     # which rule runs on which event")
    print("  ticketwire up        # run it all locally, with helpdesk simulators")
    return 0
