"""The Grafana dashboard and the alert rules in docs/ name only metrics gatekeeper exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from gatekeeper import MemoryStore, Telemetry
from gatekeeper._telemetry import METRIC_NAMES
from gatekeeper._telemetry_queue import QueueCollector

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\bgatekeeper_[a-z_]+\b")


def exported() -> tuple[set[str], set[str]]:
    """(metric family names, every series name) of a registry gatekeeper's metrics are in."""
    registry = CollectorRegistry()
    Telemetry(metrics=True, registry=registry)
    registry.register(QueueCollector(MemoryStore()))
    families: set[str] = set()
    series: set[str] = set()
    for family in registry.collect():
        families.add(family.name)  # a counter's without `_total`
        series.add(family.name)
        if family.type == "counter":
            series.add(f"{family.name}_total")
        if family.type == "histogram":
            series |= {f"{family.name}_{part}" for part in ("bucket", "count", "sum")}
    return families, series


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DOCS / "grafana" / "gatekeeper.json").read_text(encoding="utf-8"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DOCS / "prometheus" / "gatekeeper-alerts.yml").read_text("utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_dashboard_parses_and_names_only_exported_metrics() -> None:
    _, series = exported()
    exprs = dashboard_exprs()
    assert len(exprs) >= 12
    named = {name for expr in exprs for name in NAME.findall(expr)}
    assert named <= series, named - series
    # Every metric gatekeeper exports has a panel.
    assert {n.removesuffix("_total") for n in named} >= {
        n for n in METRIC_NAMES if n != "gatekeeper_approval_latency_seconds"
    }


def test_the_alert_rules_parse_and_name_only_exported_metrics() -> None:
    _, series = exported()
    exprs = alert_exprs()
    named = {name for expr in exprs for name in NAME.findall(expr)}
    assert named <= series, named - series
    # The three the issue asks for: a queue that waits, tampering, a growing sealer backlog.
    assert {
        "gatekeeper_oldest_pending_age_seconds",
        "gatekeeper_tampering_refusals_total",
        "gatekeeper_audit_sealer_backlog",
    } <= named


def test_the_list_of_metric_names_is_what_the_registry_holds() -> None:
    families, _ = exported()
    assert families == set(METRIC_NAMES)


def test_the_docs_list_every_metric() -> None:
    text = (DOCS / "observability.md").read_text(encoding="utf-8")
    for name in METRIC_NAMES:
        assert f"`{name}" in text, name
