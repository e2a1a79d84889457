"""Property-based tests of rule files: any file, however wrong, gets messages naming the file and
what is wrong (`RuleConfigError`, `ticketwire check`'s list and exit 1), never a traceback.

Budgets: see tests/fuzzing.py (`TICKETWIRE_FUZZ_EXAMPLES` for a long run).
"""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cli.check import run_check
from tests.fuzzing import examples, tried
from tests.procs import BIN, ROOT
from tests.test_webhook_parsers_hostile import paths
from ticketwire.engine.loader import check_rules
from ticketwire.engine.operators import OPERATORS
from ticketwire.engine.yamlrules import RULE_KEYS, compile_yaml, parse_yaml
from ticketwire.errors import RuleConfigError

FILE = "rules/fuzz.yml"
#: The shipped YAML rules: generated files start from real ones, so damage reaches deep checks.
SEEDS: list[Any] = [
    parse_yaml(p.read_text())[0].plain() for p in sorted((ROOT / "rules").glob("*.yml"))
]

DURATIONS = st.sampled_from(
    ["30m", "-2d", "+48h", "1d12h", "0s", "-0m", "+1w", "1x", "48", "99999999999999d"]
    + ["9" * 5_000 + "m", "+" + "1" * 30 + "s", "2026-13-45", "2026-01-01T00:00:00Z", "@daily"]
    + ["*/15 * * * *", "61 25 * * *", "0 9 * * mon-fry", "* * * * * *"]
)
WORDS = st.sampled_from(
    [*RULE_KEYS, *OPERATORS, "rules", "field", "update", "set_priority", "add_note", "tags"]
    + ["inboxops", "cstar", "thena", "ticket.created", "ticket.nope", "priority", "status"]
    + ["(", "[a-", "a{99999999999}", "(?P<x", "\\", "{{", "{{ticket.", "{{ 1/0 }}", "{% for %}"]
)
TEXT = st.text(max_size=16) | WORDS | DURATIONS
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.dates().map(date.isoformat)
    | st.datetimes().map(datetime.isoformat)
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)
#: YAML text no dump of plain values writes: tags, aliases, odd characters, deep or huge shapes.
SNIPPETS = st.sampled_from(
    [
        "!!python/object/apply:os.system [echo]",
        "!!binary AAAA",
        "!!set {a, b}",
        "!!timestamp 2001-12-14",
        "!!float .nan",
        "!!bool maybe",
        "!!timestamp 2001-13-99",
        "!!null x",
        "!!int 0x" + "f" * 40,
        "&a [1, 2]",
        "*nowhere",
        "&x [*x]",
        "[" * 5_000 + "]" * 5_000,
        "{a: " * 2_000 + "1" + "}" * 2_000,
        "\t- tab",
        "\x00",
        "\ud800",
        "\x1b[31m",
        "\ufeff",
        "? [complex, key]\n: v",
        "<<: {name: merged}",
        "<<: *nowhere",
        "%YAML 1.1\n---",
        "--- |\n  block",
        "'unclosed",
        '"\\xzz"',
        ": :",
    ]
)
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)
)


@st.composite
def rule_documents(draw: st.DrawFn) -> Any:
    """A shipped rule file with up to four values replaced, removed or added, or any value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)
    doc: Any = draw(st.sampled_from(SEEDS))
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from([p for p in paths(doc) if p] or [()]))
        if not path:
            doc = draw(VALUES)
            continue
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            node[path[-1]] = draw(VALUES)
        elif action == "delete":
            del node[path[-1]]
        elif isinstance(node, dict):
            node[draw(TEXT)] = draw(VALUES)
    return doc


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    """The text of a rule file: a damaged rule dumped as YAML, maybe with raw YAML spliced in."""
    text = yaml.safe_dump(draw(rule_documents()), allow_unicode=draw(st.booleans()))
    # An alias bomb takes a second to refuse (100,000 values expanded): rarely, then.
    kinds = ["none"] * 20 + ["snippet"] * 6 + ["line"] * 6 + ["cut"] * 6 + ["junk"] * 6
    damage = draw(st.sampled_from([*kinds, "bomb"]))
    lines = text.splitlines(keepends=True)
    if damage == "snippet":
        at = draw(st.integers(0, len(lines)))
        indent = " " * draw(st.sampled_from([0, 2, 4]))
        key = draw(st.sampled_from(["", "then: ", "if: ", "cooldown: ", "x: "]))
        lines.insert(at, f"{indent}{key}{draw(SNIPPETS)}\n")
    elif damage == "line" and lines:
        # A line written twice: a duplicate key, or a list item twice.
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
    elif damage == "cut":
        return text[: draw(st.integers(0, len(text)))]
    elif damage == "bomb":
        lines.insert(0, BOMB)
    elif damage == "junk":
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.binary(max_size=20)).decode("latin-1") + "\n")
    return "".join(lines)


def assert_reported(errors: list[RuleConfigError], file: str) -> None:
    """Every error is a message that names the file, one line each when rendered."""
    for error in errors:
        assert isinstance(error, RuleConfigError)
        assert error.file == file, error
        assert str(error).startswith(file) and error.message, error


@examples(200, 0.15)
@given(text=rule_texts())
def test_any_rule_text_compiles_or_is_reported(text: str) -> None:
    tried("rules[compile_yaml]")
    rules, errors = compile_yaml(text, file=FILE)
    assert not (rules and errors) or all(r.source.startswith(FILE) for r in rules)
    assert_reported(errors, FILE)


FILE_BYTES = (
    rule_texts().map(lambda t: t.encode("utf-8", "surrogatepass"))
    | rule_texts().map(lambda t: t.encode("utf-16", "surrogatepass"))
    | rule_texts().map(lambda t: t.encode("latin-1", "replace"))
    | st.binary(max_size=300)
)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-rules")


@examples(60, 0.04)
@given(data=FILE_BYTES, suffix=st.sampled_from([".yml", ".yaml", ".py"]))
def test_any_rule_file_loads_or_is_reported(rules_dir: Path, data: bytes, suffix: str) -> None:
    for old in rules_dir.iterdir():
        old.unlink()
    path = rules_dir / f"fuzz{suffix}"
    path.write_bytes(data)
    tried("rules[check_rules]")
    router, errors = check_rules(path)
    assert (router is None) == bool(errors)
    assert_reported(errors, str(path))
    # `ticketwire check` on the directory: exit 1 with the file and the reason, or 0.
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_check(rules_dir)
    assert code == (1 if errors else 0)
    if errors:
        assert f"error(s) in {rules_dir}" in err.getvalue()
        assert str(path) in err.getvalue()


# --- what the properties found: each reported, not raised ----------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("[" * 5_000 + "]" * 5_000, "nests too deeply", id="deep-flow-list"),
        pytest.param("{a: " * 3_000 + "1" + "}" * 3_000, "nests too deeply", id="deep-flow-map"),
        pytest.param(
            "".join("  " * i + "-\n" for i in range(3_000)), "nests too deeply", id="deep-block"
        ),
        pytest.param(BOMB, "more than 100000 values", id="alias-bomb"),
        pytest.param(
            "then: !!timestamp 2001-12-14\n  x\n", "as !!timestamp", id="tagged-timestamp"
        ),
        pytest.param("then: !!bool maybe\n", "as !!bool", id="tagged-bool"),
        pytest.param("name: a\x00b\n", "U+0000 is not allowed", id="nul"),
        pytest.param("name: x\nevents: \ud800\n", "U+D800 is not allowed", id="lone-surrogate"),
        pytest.param(
            "name: x\nevents: [ticket.created]\ncooldown: 99999999999999999999d\n"
            "then: [{set_priority: high}]\n",
            "longer than 36500 days",
            id="cooldown-overflow",
        ),
        pytest.param(
            "name: x\nevents: [ticket.created]\ncooldown: " + "9" * 5_000 + "m\n"
            "then: [{set_priority: high}]\n",
            "longer than 36500 days",
            id="cooldown-5000-digits",
        ),
        pytest.param(
            "name: x\nevery: 99999999999999w\nthen: [{set_priority: high}]\n",
            "longer than 36500 days",
            id="every-overflow",
        ),
        pytest.param(
            "name: x\nevery: " + "9" * 5_000 + "m\nthen: [{set_priority: high}]\n",
            "longer than 36500 days",
            id="every-5000-digits",
        ),
    ],
)
def test_files_that_raised_are_reported(text: str, says: str) -> None:
    rules, errors = compile_yaml(text, file=FILE)
    assert not rules and any(says in str(e) for e in errors), errors
    assert_reported(errors, FILE)


def test_the_longest_durations_still_load() -> None:
    text = (
        "name: x\nevents: [ticket.created]\ncooldown: 36500d\n"
        "if: {field: updated_at, before: -36500d}\nthen: [{set_priority: high}]\n"
    )
    rules, errors = compile_yaml(text, file=FILE)
    assert errors == [] and len(rules) == 1


CLI_FILES = {
    "deep.yml": b"[" * 5_000 + b"]" * 5_000,
    "bomb.yml": BOMB.encode(),
    "nul.yml": b"name: a\x00b\n",
    "utf16.yml": "name: x\n".encode("utf-16"),
    "binary.yaml": bytes(range(256)),
    "cooldown.yml": b"name: x\nevents: [ticket.created]\ncooldown: 99999999999999999999d\n"
    b"then: [{set_priority: high}]\n",
    "junk.py": b"\x00\xff(" * 50,
}


def test_ticketwire_check_reports_every_bad_file_without_a_traceback(tmp_path: Path) -> None:
    for name, data in CLI_FILES.items():
        (tmp_path / name).write_bytes(data)
    done = subprocess.run(
        [str(BIN / "ticketwire"), "check", str(tmp_path)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    for name in CLI_FILES:
        assert str(tmp_path / name) in done.stderr, (name, done.stderr)
    tried("rules[ticketwire check]", len(CLI_FILES))
