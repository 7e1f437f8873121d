"""Alerts: the people on call hear at once about halts, sequences, limits, denials, novelty
and a queue that waits too long.

:class:`Alerter` follows the sealed audit log and the queue of pending
requests, builds an :class:`Alert` for each thing worth one, throttles them
(one per kind, agent and rule per window, the rest counted and summed up) and
hands them to its targets: :class:`WebhookAlerts` (signed JSON) and
:class:`~gatekeeper.channels.slack.SlackAlerts` (a Slack channel), or any
object with a ``name`` and a ``send(alert)`` (:class:`AlertTarget`).

``gatekeeper serve`` runs one when the config has an ``alerts:`` section;
``gatekeeper alerts`` runs one without the console. See docs/alerts.md.

Example::

    alerter = Alerter(gate.store, [WebhookAlerts(url, secret=secret)],
                      console_url="https://gatekeeper.example.com")
    alerter.check()   # reads what is new, sends what is due
"""

from ._alert import KINDS, Alert, AlertKind
from ._alerter import Alerter
from ._outbox import AlertTarget
from ._webhook import WebhookAlerts

__all__ = ["KINDS", "Alert", "AlertKind", "AlertTarget", "Alerter", "WebhookAlerts"]
