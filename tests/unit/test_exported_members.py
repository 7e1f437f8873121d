"""gatekeeper's public surface is exactly its sorted __all__."""

from __future__ import annotations

import types

import gatekeeper


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(gatekeeper).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert gatekeeper.__all__ == sorted(gatekeeper.__all__)
    assert public | {"__version__"} == set(gatekeeper.__all__)


def test_every_exported_name_is_documented() -> None:
    for name in gatekeeper.__all__:
        if name == "__version__":
            continue
        assert getattr(gatekeeper, name).__doc__, f"{name} has no docstring"
