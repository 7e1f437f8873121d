"""Running one ``bench/adapter_*.py`` on its own: its rows, printed with their ratio."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Rows = list[tuple[str, float, float]]


def main(measure: Callable[[bool], Rows], description: str) -> None:
    """Parse ``--quick``, run ``measure`` and print each row with its overhead and ratio."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke test")
    options = parser.parse_args()
    for label, bare, gated in measure(options.quick):
        print(
            f"{label}: unwrapped {bare * 1e6:,.1f} µs, gated {gated * 1e6:,.1f} µs, "
            f"overhead {(gated - bare) * 1e6:,.1f} µs, ratio {gated / bare:.2f}×"
        )
