"""The gateway's stdio wire, read by the event loop: whole lines, and a line too long to keep."""

from __future__ import annotations

import asyncio

from gatekeeper_mcp._serve import _Lines


async def _read_all(data: bytes, limit: int) -> list[str]:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return [line async for line in _Lines(reader)]


def test_lines_are_read_whole_and_a_too_long_one_is_dropped_not_fatal() -> None:
    data = b'{"a": 1}\n' + b"x" * 300 + b"\n" + b'{"b": "\xc3\xa9"}\n' + b"tail"
    lines = asyncio.run(_read_all(data, limit=64))
    # The long line comes through as a message that does not parse (the SDK reports it),
    # and the lines after it are read as before.
    assert lines == ['{"a": 1}\n', "{", '{"b": "é"}\n', "tail"]


def test_a_too_long_line_cut_off_by_the_end_of_the_wire_is_dropped() -> None:
    assert asyncio.run(_read_all(b'{"a": 1}\n' + b"y" * 300, limit=64)) == ['{"a": 1}\n', "{"]
    assert asyncio.run(_read_all(b"", limit=64)) == []
