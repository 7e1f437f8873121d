"""The command line: every command the docs show parses, and global options go anywhere."""

from __future__ import annotations

import argparse

import pytest

from gatekeeper.cli import _parser
from tests.docskit import Shown, shown_commands

SHOWN = shown_commands()


def test_the_docs_show_commands_to_check() -> None:
    """Guard against the extraction silently finding nothing."""
    files = {s.file for s in SHOWN}
    assert {"cli.md", "console.md", "quickstart.md"} <= files
    assert len(SHOWN) >= 30


@pytest.mark.parametrize("shown", SHOWN, ids=[f"{s.file}:{s.line}" for s in SHOWN])
def test_every_command_in_the_docs_parses(shown: Shown) -> None:
    """Each `$ gatekeeper ...` line of the docs is accepted as written (else argparse exits)."""
    _parser().parse_args(list(shown.argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--config", "g.yaml"],
        ["--config", "g.yaml", "serve"],
        ["serve", "-c", "g.yaml", "--port", "9000"],
        ["audit", "tail", "-c", "g.yaml"],
        ["audit", "--config", "g.yaml", "tail"],
        ["policy", "explain", "p.yaml", "refund", "--config", "g.yaml"],
        ["-c", "other.yaml", "pending", "--config", "g.yaml"],  # the later one wins
    ],
)
def test_config_goes_before_or_after_the_command(argv: list[str]) -> None:
    assert _parser().parse_args(argv).config == "g.yaml"


def test_without_config_it_is_none() -> None:
    assert _parser().parse_args(["pending"]).config is None
    assert _parser().parse_args(["audit", "tail"]).config is None


def test_version_goes_after_the_command_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["pending", "--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("gatekeeper ")


def test_unknown_options_are_still_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["pending", "--nope"])
    assert exited.value.code == 2
    assert isinstance(_parser(), argparse.ArgumentParser)
