"""What an allowed call costs through each framework adapter, against the same framework unwrapped.

    .venv/bin/python bench/adapters.py               # the full run (about a minute)
    .venv/bin/python bench/adapters.py --quick       # a smoke test
    .venv/bin/python bench/adapters.py --write-docs  # also update docs/performance.md

Each ``bench/adapter_*.py`` measures, in the same run and the same way, the
framework calling the tool unwrapped and the framework calling the gated tool
(MemoryStore, a policy that allows the call). The ratio is gated / unwrapped;
the overhead is their difference.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-adapters:start -->", "<!-- bench-adapters:end -->"
MODULES = [
    ("LangChain", "adapter_langchain"),
    ("OpenAI Agents SDK", "adapter_openai_agents"),
    ("OpenAI function calling", "adapter_openai_calling"),
    ("Pydantic AI", "adapter_pydantic_ai"),
]


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.1f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"


def run(quick: bool) -> list[str]:
    """The results as Markdown lines."""
    sys.path.insert(0, str(Path(__file__).parent))
    from importlib.metadata import version

    lines = [
        f"`bench/adapters.py` — gatekeeper {version('hitl-gatekeeper')}, Python "
        f"{platform.python_version()}, {platform.machine()}",
        "",
        "| framework | path | unwrapped | through gatekeeper | overhead | ratio |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("gatekeeper", label, bare, gated) for label, bare, gated in _core(quick)]
    for framework, module_name in MODULES:
        module = importlib.import_module(module_name)
        rows += [(framework, label, bare, gated) for label, bare, gated in module.measure(quick)]
    for framework, label, bare, gated in rows:
        lines.append(
            f"| {framework} | {label} | {_us(bare)} | {_us(gated)} | "
            f"{_us(gated - bare)} | {gated / bare:.2f}× |"
        )
    lines += [
        "",
        "- medians of repeated batches; the same invocation path for both columns "
        "(e.g. `tool.invoke(args)`), an allowed call on MemoryStore; see each "
        "`bench/adapter_*.py` for what exactly is timed.",
        "- the first row is the gate alone, called the way every adapter calls it: most of "
        "each adapter's overhead is this cost; the rest is the adapter's own argument "
        "checks and conversions.",
    ]
    return lines


def _core(quick: bool) -> list[tuple[str, float, float]]:
    """The gate alone, the same way the adapters use it: ``gate.tool(name, func)(args)``."""
    import statistics
    import time

    from gatekeeper import Gatekeeper, MemoryStore, Policy

    gate = Gatekeeper(policy=Policy.from_yaml("version: 1\ndefault: allow\n"), store=MemoryStore())

    def lookup(**args: object) -> object:
        return args["key"]

    tool = gate.tool("lookup", lookup)
    args = {"key": "A-1"}
    n, repeats = (2_000, 5) if quick else (20_000, 15)

    def per_call(fn: object) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        return (time.perf_counter() - start) / n

    bare, gated = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine
        bare.append(per_call(lambda: lookup(**args)))
        gated.append(per_call(lambda: tool(args)))
    gate.close()
    return [
        (
            "`gate.tool(...)(args)` vs `func(**args)`",
            statistics.median(bare),
            statistics.median(gated),
        )
    ]


def write_docs(lines: list[str]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = "\n".join([START, *lines, END])
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{DOCS} has no {START} ... {END} markers")
    DOCS.write_text(pattern.sub(lambda _m: block, text), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke test")
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    options = parser.parse_args()
    lines = run(options.quick)
    print("\n".join(lines))
    if options.write_docs:
        write_docs(lines)


if __name__ == "__main__":
    main()
