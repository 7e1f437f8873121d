"""Label values stay bounded, and the config file turns telemetry on."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from gatekeeper import Gatekeeper, MemoryStore, Policy, Telemetry
from gatekeeper._config import parse_config
from gatekeeper._telemetry import OTHER


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for family in registry.collect() for s in family.samples if s.name == name]


def test_agent_names_past_the_cap_are_counted_as_other_and_known_tools_keep_theirs() -> None:
    registry = CollectorRegistry()
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: allow\n"),
        store=MemoryStore(),
        telemetry=Telemetry(metrics=True, registry=registry, max_label_values=2),
    )
    tools = []
    for n in range(4):  # more tools than the cap: every one is the gate's own
        tools.append(gate.guard(name=f"tool_{n}")(lambda: "ok"))
    for n in range(6):
        with gate.session(agent=f"agent-{n}"):
            for tool in tools:
                tool()
    found = series(registry, "gatekeeper_calls_total")
    assert {s["agent"] for s in found} == {"agent-0", "agent-1", OTHER}
    assert {s["tool"] for s in found} == {f"tool_{n}" for n in range(4)}
    other = [s for s in found if s["agent"] == OTHER]
    assert len(other) == 4  # one series per tool for every agent past the cap
    assert (
        registry.get_sample_value(
            "gatekeeper_calls_total", {"verdict": "allow", "tool": "tool_0", "agent": OTHER}
        )
        == 4
    )
    gate.close()


def test_an_overlong_label_value_is_other() -> None:
    registry = CollectorRegistry()
    gate = Gatekeeper(
        policy=Policy.from_yaml("version: 1\ndefault: allow\n"),
        store=MemoryStore(),
        telemetry=Telemetry(metrics=True, registry=registry),
    )
    tool = gate.guard(name="tool")(lambda: "ok")
    with gate.session(agent="a" * 129):
        tool()
    assert {s["agent"] for s in series(registry, "gatekeeper_calls_total")} == {OTHER}
    gate.close()


def test_the_config_file_turns_telemetry_on() -> None:
    config = parse_config(
        "version: 1\nstore: {url: 'memory://'}\n"
        "telemetry: {traces: true, metrics: true, trace_arguments: true, max_label_values: 7}\n"
    )
    gate = config.build_gate()
    assert gate.telemetry.active
    assert gate.telemetry.tracer is not None
    assert gate.telemetry.registry is REGISTRY  # prometheus_client's default
    assert gate.telemetry.trace_arguments
    gate.close()
    off = parse_config("version: 1\nstore: {url: 'memory://'}\n").build_gate()
    assert not off.telemetry.active
    off.close()


def test_a_misspelt_telemetry_key_is_an_error_naming_it() -> None:
    from gatekeeper import ConfigError

    with pytest.raises(ConfigError, match=r"telemetry\.metrcs"):
        parse_config("version: 1\nstore: {url: 'memory://'}\ntelemetry: {metrcs: true}\n")
