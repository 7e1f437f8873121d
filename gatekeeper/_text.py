"""Making agent-controlled text safe to show a person.

Tool arguments and reasons are written by a model that may be prompt-injected.
Before a person reads them they are bounded in size and every character that
could hide or rearrange what they see (terminal escape sequences, other
control characters, bidirectional overrides, zero-width characters) is shown
as a visible code such as ``<U+202E>``.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from ._canonical import truncate

__all__ = ["for_terminal", "inline", "pretty_json", "quoted_block", "visible"]

_KEEP = frozenset("\n\t")


def _hidden(ch: str) -> bool:
    if ch in _KEEP:
        return False
    cat = unicodedata.category(ch)
    # Cc: control (ESC, BEL, C1...), Cf: format (bidi overrides, zero-width,
    # BOM...), Zl/Zp: line and paragraph separators that some viewers break on.
    return cat in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def visible(text: str) -> str:
    """``text`` with every invisible or reordering character shown as ``<U+XXXX>``."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"<U+{ord(ch):04X}>" if _hidden(ch) else ch for ch in text)


def for_terminal(text: str, limit: int = 4000) -> str:
    """Agent text made safe and short enough to print in a terminal."""
    return visible(truncate(text, limit))


def pretty_json(value: Any, limit: int = 20_000) -> str:
    """Arguments as indented JSON, exactly as they will run, made visible and bounded."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return for_terminal(text, limit)


def inline(text: str | None, limit: int = 200) -> str:
    """Agent text for a one-line field: newlines and tabs shown as codes too.

    A name or a reason must not be able to start a line of its own and so
    forge a field of what the approver reads.
    """
    if text is None:
        return ""
    shown = visible(truncate(text, limit))
    return shown.replace("\n", "<U+000A>").replace("\t", "<U+0009>")


def quoted_block(text: str, limit: int = 4000, prefix: str = "    | ") -> str:
    """Multi-line agent text, every line marked as quoted so none can pass for ours."""
    return "\n".join(prefix + line for line in for_terminal(text, limit).split("\n"))
