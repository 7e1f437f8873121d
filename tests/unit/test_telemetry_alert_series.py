"""The example alerts can fire on the first event (review of #15).

``GatekeeperAbandonedRequests`` is ``increase(gatekeeper_abandoned_total{status=
"outcome_unknown"}[1h]) > 0`` and ``GatekeeperStoreErrors`` is ``rate(
gatekeeper_store_errors_total[5m]) > 0``. Prometheus's increase()/rate() need
two samples of a series: a labelled child that first appears already at 1
shows no increase, so the first outcome_unknown (or the first store error
class) after a process starts never fires its alert. The series the rules
read must be exported at 0 from the start.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gatekeeper import Telemetry


def test_the_series_the_alert_rules_read_exist_at_zero_before_any_event() -> None:
    registry = CollectorRegistry()
    Telemetry(metrics=True, registry=registry)
    text = generate_latest(registry).decode()
    assert 'gatekeeper_abandoned_total{status="outcome_unknown"} 0.0' in text
    assert 'gatekeeper_abandoned_total{status="abandoned"} 0.0' in text
    assert 'gatekeeper_store_errors_total{error="StoreUnavailable"} 0.0' in text
    assert 'gatekeeper_store_errors_total{error="StoreError"} 0.0' in text
