"""An adapter imported without its framework says which extra installs it.

``import gatekeeper_openai`` without the OpenAI Agents SDK used to end in a
bare ``No module named 'agents'``; each adapter's ``__init__`` imports its
modules inside :func:`needs_extra` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["needs_extra"]

DISTRIBUTION = "hitl-gatekeeper"


@contextmanager
def needs_extra(
    adapter: str, extra: str, framework: str, modules: tuple[str, ...]
) -> Iterator[None]:
    """Turn a missing ``modules`` import into an ImportError naming ``pip install "...[extra]"``.

    Other import errors (a missing module of gatekeeper's own, a framework
    too old to have a name) pass through unchanged.

    Example::

        with needs_extra("gatekeeper_openai", "openai", "the OpenAI Agents SDK", ("agents",)):
            from ._agents import gate_tool
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.split(".")[0] not in modules:
            raise
        raise ModuleNotFoundError(
            f"{adapter} needs {framework}, which is not installed (no module named "
            f'{missing!r}): pip install "{DISTRIBUTION}[{extra}]"',
            name=missing,
        ) from exc
