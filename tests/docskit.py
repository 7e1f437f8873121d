"""The command lines the docs show, and a way to compare what they print with what the docs say.

A shown command is a ``$ gatekeeper ...`` line (or ``$ printf ... | gatekeeper
...``) in a ```console block of README.md or docs/*.md; its output is the
lines after it, up to the next ``$`` line or the end of the block.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONSOLE = re.compile(r"^```console[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
ULID = r"[0-9a-hjkmnp-tv-z]{26}"


@dataclass(frozen=True)
class Shown:
    """One ``$ gatekeeper ...`` line of the docs and the output printed under it."""

    file: str
    line: int
    command: str
    argv: tuple[str, ...]  # what follows `gatekeeper`
    stdin: str | None  # what a `printf ... |` in front of it writes
    output: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: $ {self.command}"


def shown_commands(file: Path | None = None) -> list[Shown]:
    """Every gatekeeper command line shown in ```console blocks, in the order of the docs."""
    found: list[Shown] = []
    for path in [file] if file else FILES:
        text = path.read_text(encoding="utf-8")
        for block in CONSOLE.finditer(text):
            first_line = text.count("\n", 0, block.start(1)) + 1
            lines = block.group(1).splitlines()
            i = 0
            while i < len(lines):
                if not lines[i].startswith("$ "):
                    i += 1
                    continue
                command, start = lines[i][2:], i
                while command.endswith("\\"):  # a command continued on the next line
                    i += 1
                    command = command[:-1] + lines[i].strip()
                i += 1
                output = []
                while i < len(lines) and not lines[i].startswith("$ "):
                    output.append(lines[i])
                    i += 1
                parsed = _gatekeeper_argv(command)
                if parsed is not None:
                    argv, stdin = parsed
                    found.append(
                        Shown(
                            path.name, first_line + start, command, argv, stdin, "\n".join(output)
                        )
                    )
    return found


def _gatekeeper_argv(command: str) -> tuple[tuple[str, ...], str | None] | None:
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    words = list(lexer)
    stdin = None
    if "|" in words:
        bar = words.index("|")
        source, words = words[:bar], words[bar + 1 :]
        if source[:1] != ["printf"]:
            return None
        stdin = source[2] if source[1:2] == ["%s"] else source[1]
    if words[:1] != ["gatekeeper"]:
        return None
    return tuple(words[1:]), stdin


class Matcher:
    """Compares printed output with the docs, modulo the request ids, times and hashes of a run.

    ``ids`` maps each request id the docs show to the id the run made, so the
    docs' ids can be put into commands (:meth:`argv`) and must be the ones
    printed where the docs show them.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # docs' id -> this run's id

    def argv(self, argv: tuple[str, ...]) -> list[str]:
        """The command with the docs' ids (or starts of them) replaced by this run's."""
        out = []
        for word in argv:
            real = next(
                (r for s, r in self.ids.items() if len(word) >= 8 and s.startswith(word)), None
            )
            out.append(real[: len(word)] if real else word)
        return out

    def normal(self, text: str, *, docs: bool) -> str:
        for n, (shown, real) in enumerate(self.ids.items()):
            text = text.replace(shown if docs else real, f"<request {n}>")
        replacements = [
            (r"\b[0-9a-f]{64}\b", "<sha256>"),
            (r'"id": "[0-9a-f]{20}"', '"id": "<event id>"'),
            (rf"\b{ULID}\b", "<id>"),
            (r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?", "<time>"),
            (r"\b\d\d:\d\d:\d\d\b", "<time>"),
            (r"\b\d+m\d\ds\b", "<left>"),
            (r"head [0-9a-f]{16}\b", "head <hash>"),
            (r'\\"at\\":\d{13}', '\\"at\\":<ms>'),
            (r"entry \d+-\d+", "entry <stream id>"),
            (r"redis://127\.0\.0\.1:\d+/0", "redis://localhost:6379/0"),
            (r"\blocalhost:\d+", "localhost:6379"),
        ]
        for pattern, placeholder in replacements:
            text = re.sub(pattern, placeholder, text)
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.strip().splitlines()]
        return "\n".join(lines)

    def check(self, shown: Shown, printed: str) -> None:
        """Assert that ``printed`` is what the docs show under ``shown`` (``...`` is anything)."""
        want = self.normal(shown.output, docs=True)
        got = self.normal(printed, docs=False)
        pattern = ".*?".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, got, re.DOTALL), (
            f"{shown}\n--- the docs show:\n{want}\n--- it printed:\n{got}"
        )
