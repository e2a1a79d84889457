"""`ticketwire <command> --help` says what a newcomer needs, including the environment it reads."""

from __future__ import annotations

import pytest

from cli.main import build_parser


def test_up_help_names_port_and_the_rules_reload(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["up", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "PORT (the receiver's port, default 8000)" in text
    assert "TICKETWIRE_RULES" in text and "TICKETWIRE_DATA_DIR" in text
    assert "Rules are reloaded when a file in the rules directory changes" in text
