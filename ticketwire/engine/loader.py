"""Load a rules directory: `*.yml`/`*.yaml` compiled, `*.py` imported by path, all in one Router."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path

from ticketwire.engine.nodes import located
from ticketwire.engine.router import Router, Rule, split_source
from ticketwire.engine.yamlrules import compile_yaml
from ticketwire.errors import RuleConfigError

RULE_SUFFIXES = (".yml", ".yaml", ".py")


def rule_files(root: Path) -> list[Path]:
    """Rule files of a directory in file-name order; names starting with `_` or `.` are skipped."""
    return sorted(
        (
            p
            for p in root.iterdir()
            if p.is_file() and p.suffix in RULE_SUFFIXES and not p.name.startswith(("_", "."))
        ),
        key=lambda p: p.name,
    )


def check_rules(path: str | os.PathLike[str]) -> tuple[Router | None, list[RuleConfigError]]:
    """Load every rule under `path` (a directory or one file), gathering every error.

    Returns `(router, [])` when all is well, `(None, errors)` otherwise.
    """
    root = Path(path)
    if not root.exists():
        error = RuleConfigError(
            "no such rules directory; create it, or point to the directory that holds "
            "your *.yml and *.py rule files",
            file=str(root),
        )
        return None, [error]
    files = [root] if root.is_file() else rule_files(root)
    router = Router()
    errors: list[RuleConfigError] = []
    for file in files:
        rules, file_errors = load_file(file)
        errors.extend(file_errors)
        for rule in rules:
            try:
                router.add(rule)
            except RuleConfigError as exc:
                errors.append(exc)
    return (None, errors) if errors else (router, [])


def load_rules(path: str | os.PathLike[str]) -> Router:
    """Load every rule under `path` into one Router; raise the first `RuleConfigError`."""
    router, errors = check_rules(path)
    if errors:
        raise errors[0]
    assert router is not None
    return router


def load_file(path: Path) -> tuple[list[Rule], list[RuleConfigError]]:
    """Load the rules of one file, returning them with every error found."""
    display = str(path)
    if path.suffix not in RULE_SUFFIXES:
        accepted = [f"*{s}" for s in RULE_SUFFIXES]
        return [], [RuleConfigError("not a rule file", file=display, accepted=accepted)]
    if path.suffix == ".py":
        try:
            return import_rules(path).rules, []
        except RuleConfigError as exc:
            return [], [_relabel_error(exc, path)]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleConfigError(f"cannot read the file: {exc}", file=display)]
    return compile_yaml(text, file=display)


def _relabel(file: str | None, path: Path) -> str | None:
    # Python records the absolute path of imported code; show the path as the user gave it.
    if file is not None and Path(file).resolve() == path.resolve():
        return str(path)
    return file


def _relabel_error(exc: RuleConfigError, path: Path) -> RuleConfigError:
    exc = located(exc, file=str(path), rule=None)
    return RuleConfigError(
        exc.message,
        file=_relabel(exc.file, path),
        line=exc.line,
        rule=exc.rule,
        accepted=exc.accepted,
    )


def _module_name(path: Path) -> str:
    # Private and unique per file, so two directories with a `vip.py` never collide.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"_ticketwire_rules_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"


def import_rules(path: Path) -> Router:
    """Import a Python rule file by path and return its module-level `router`."""
    display = str(path)
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuleConfigError("cannot import this file as Python", file=display)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except RuleConfigError:
        sys.modules.pop(name, None)
        raise
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise RuleConfigError(f"syntax error: {exc.msg}", file=display, line=exc.lineno) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if Path(frame.f_code.co_filename).resolve() == path.resolve():
                line = lineno
        raise RuleConfigError(
            f"importing the file failed: {type(exc).__name__}: {exc}", file=display, line=line
        ) from exc
    router = getattr(module, "router", None)
    if router is None:
        raise RuleConfigError(
            "defines no module-level `router`; add `router = Router()` "
            "(from ticketwire import Router) and register rules with @router.on(...)",
            file=display,
        )
    if not isinstance(router, Router):
        raise RuleConfigError(
            f"`router` is a {type(router).__name__}, expected a ticketwire.Router", file=display
        )
    relabelled = Router()
    for rule in router.rules:
        file, line = split_source(rule.source)
        source = f"{_relabel(file, path)}:{line}" if line is not None else rule.source
        relabelled.add(dataclasses.replace(rule, source=source))
    return relabelled
