"""The CLI's progress bar: what it draws, how often, when it is wanted, and how it ends."""

from __future__ import annotations

import io

import pytest

from gatekeeper._progress import Tally
from gatekeeper.cli._progress import Bar, progress_bar, wanted


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_at_most_ten_times_a_second_and_the_last_count_at_the_end() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = Bar(stream, "verifying", clock=clock)
    clock.now += 1.0
    bar(100, 1000)  # the first report is drawn at once
    clock.now += 0.05
    bar(200, 1000)  # too soon: kept
    clock.now += 0.06
    bar(300, 1000)  # 0.11 s after the last drawing: drawn
    clock.now += 0.02
    bar(350, 1000)  # kept, then drawn by close
    bar.close()
    frames = stream.getvalue().split("\r")
    drawn = [f.strip() for f in frames if f.strip()]
    assert drawn == [
        "verifying [##------------------] 100/1,000 events  10%  100/s",
        "verifying [######--------------] 300/1,000 events  30%  270/s",
        "verifying [#######-------------] 350/1,000 events  35%  310/s",
    ]
    assert stream.getvalue().endswith("\r" + " " * len(drawn[-1]) + "\r")  # cleared


def test_without_a_total_it_shows_the_count_and_rate() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = Bar(stream, "replaying", clock=clock)
    clock.now += 2
    assert bar.line(12_345, None, clock.now) == "replaying 12,345 events  6,172/s"
    assert "100%" in bar.line(120, 100, clock.now)  # events sealed meanwhile: never past 100%


def test_a_bar_that_never_drew_writes_nothing() -> None:
    stream = io.StringIO()
    Bar(stream, "exporting").close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("env", "flag", "tty", "expected"),
    [
        ({}, False, True, True),
        ({}, False, False, False),
        ({}, True, True, False),
        ({"NO_PROGRESS": "1"}, False, True, False),
        ({"NO_PROGRESS": ""}, False, True, True),
        ({"TERM": "dumb"}, False, True, False),
    ],
)
def test_wanted_on_a_terminal_unless_turned_off(
    env: dict[str, str], flag: bool, tty: bool, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = Terminal() if tty else io.StringIO()
    assert wanted(stream, no_progress=flag) is expected


def test_the_bar_is_cleared_when_the_work_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    stream = Terminal()

    def verify() -> None:
        with progress_bar(stream, "verifying") as bar:
            assert bar is not None
            tally = Tally(bar, 10, every=1)
            for _ in tally.over(range(3)):
                pass
            raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError, match="went away"):
        verify()
    assert stream.getvalue().endswith(" \r")
    assert "3/10 events" in stream.getvalue()


def test_tally_reports_every_n_and_at_the_end() -> None:
    seen: list[tuple[int, int | None]] = []
    tally = Tally(lambda d, t: seen.append((d, t)), None, every=2)
    assert list(tally.over("abcde")) == list("abcde")
    tally.end()
    assert seen == [(2, None), (4, None), (5, None)]
