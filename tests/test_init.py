"""`ticketwire init`: a project of the user's own, and the package carrying it.

In-process: what `init` writes, that each example rule has a test and those tests pass (and
fail when the rule changes), that `.env.example` lists every variable the configuration reads.
Slow: `pip install .` (not editable) into a fresh venv, then `init`, `check` and `up` in an empty
directory, as a user of a published release would.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.init import plan_files, run_init, template
from tests.procs import ROOT, free_port, free_ports, spawn
from ticketwire.config import Settings

RULE_SUFFIXES = (".yml", ".yaml", ".py")


def shipped_rules() -> list[str]:
    """File stems of the example rules (the repository's rules/)."""
    return sorted(p.stem for p in (ROOT / "rules").iterdir() if p.suffix in RULE_SUFFIXES)


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    where = tmp_path / "helpdesk-rules"
    assert run_init(where) == 0
    out = capsys.readouterr().out
    assert f"Started a ticketwire project in {where}" in out
    assert f"cd {where}" in out and "ticketwire up" in out
    return where


def test_init_writes_rules_a_test_each_procfile_env_example_and_readme(project: Path) -> None:
    for name in ("Procfile", ".env.example", "README.md", ".gitignore", "rules/README.md"):
        assert (project / name).is_file(), name
    assert (project / "Procfile").read_text() == (ROOT / "Procfile").read_text()
    for stem in shipped_rules():
        rule = next(p for p in (project / "rules").iterdir() if p.stem == stem)
        assert rule.read_bytes() == next((ROOT / "rules").glob(f"{stem}.*")).read_bytes()
        assert (project / "tests" / f"test_{stem}.py").is_file(), f"no test for rules/{rule.name}"
    # The data directory `up` keeps secrets in, and .env, stay out of the user's repository.
    ignored = (project / ".gitignore").read_text().split()
    assert ".ticketwire/" in ignored and ".env" in ignored
    assert not list(project.rglob("__pycache__"))


def test_every_template_test_belongs_to_a_shipped_rule() -> None:
    tests = sorted(
        rel.removeprefix("tests/test_").removesuffix(".py")
        for rel, _ in plan_files(template())
        if rel.startswith("tests/test_")
    )
    assert tests == shipped_rules()


def run_pytest(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_generated_tests_pass_and_catch_a_changed_rule(project: Path) -> None:
    done = run_pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b\d+ passed\b", done.stdout)
    assert "failed" not in done.stdout
    # A rule edited to do something else fails its test.
    rule = project / "rules" / "escalate_enterprise.yml"
    rule.write_text(rule.read_text().replace("set_priority: high", "set_priority: urgent"))
    broken = run_pytest(project)
    assert broken.returncode == 1
    assert "test_escalate_enterprise.py::test_an_enterprise_ticket_goes_to_high" in broken.stdout


def test_init_keeps_existing_files_and_never_mixes_examples_into_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    assert run_init(tmp_path) == 0
    assert (tmp_path / "README.md").read_text() == "mine\n"
    assert "Kept your own: README.md" in capsys.readouterr().out
    assert (tmp_path / "rules" / "escalate_enterprise.yml").is_file()

    other = tmp_path / "other"
    (other / "rules").mkdir(parents=True)
    (other / "rules" / "mine.yml").write_text("name: mine\n")
    assert run_init(other) == 1
    err = capsys.readouterr().err
    assert f"{other / 'rules'}/ already has files" in err
    assert sorted(p.name for p in (other / "rules").iterdir()) == ["mine.yml"]


class _Recorder(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False


def variables_read() -> set[str]:
    asked: set[str] = set()
    for role in ("up", "check"):
        env = _Recorder()
        Settings.from_env(env, role=role)
        asked |= env.asked
    return asked


def test_env_example_lists_every_variable_the_configuration_reads() -> None:
    text = (template() / ".env.example").read_text()
    listed = re.findall(r"^([A-Z][A-Z0-9_]*)=$", text, re.MULTILINE)
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    read = variables_read()
    assert len(read) > 30
    assert set(listed) == read
    # The README's configuration table documents the same set.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE))
    assert documented == read


# ------------------------------------------------------------------------- a real install


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with this source tree installed as a release is: `pip install .`."""
    root = tmp_path_factory.mktemp("release")
    # A clean copy of the tree, as a checkout is: pip builds in the source directory, and a
    # build/ left from an earlier build could slip stale files into the wheel.
    source = root / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".ci", "build", "*.egg-info", "__pycache__", ".*_cache", "bench"
        ),
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    done = subprocess.run(
        # Not compiling every dependency to bytecode keeps this around 20 s.
        [str(venv / "bin" / "pip"), "install", "-q", "--no-input", "--no-compile", str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield venv / "bin"


@pytest.mark.slow
async def test_a_release_install_inits_checks_and_runs_up_in_an_empty_directory(
    installed: Path, tmp_path: Path
) -> None:
    where = await spawn(
        [str(installed / "python"), "-c", "import cli.init; print(cli.init.__file__)"],
        {},
        cwd=tmp_path,
    )
    assert await where.finish() == 0
    assert where.output.strip().startswith(str(installed.parent)), where.output

    env = {"TICKETWIRE_DATA_DIR": str(tmp_path / ".ticketwire")}
    init = await spawn([str(installed / "ticketwire"), "init"], env, cwd=tmp_path)
    assert await init.finish() == 0, init.output
    assert "Started a ticketwire project in ." in init.output
    # Everything came from the installed package, dotfiles and the linked rules included.
    for name in (".env.example", ".gitignore", "Procfile", "README.md", "tests/ruletest.py"):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.stem for p in (tmp_path / "rules").glob("*.*") if p.suffix != ".md") == (
        shipped_rules()
    )
    check = await spawn([str(installed / "ticketwire"), "check"], env, cwd=tmp_path)
    assert await check.finish() == 0, check.output
    assert "rule(s) in rules: OK" in check.output

    port, sim_port = free_port(), free_ports(3)
    up = await spawn(
        [str(installed / "ticketwire"), "up", "--simulator-port", str(sim_port)],
        {**env, "PORT": str(port)},
        cwd=tmp_path,
    )
    try:
        await up.wait_output("Ctrl-C stops everything.", timeout=60)
        assert f"data       {tmp_path / '.ticketwire'}" in up.output
        await up.wait_output("stored inboxops event=")
    finally:
        code = await up.stop(signal.SIGINT)
    assert code == 0, up.output
    assert "Traceback" not in up.output
