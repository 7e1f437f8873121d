"""Slack: Block Kit approval messages, interactivity over Socket Mode or HTTP.

``SlackChannel`` posts a message for each held call and keeps it true;
``SlackService`` is what ``gatekeeper serve`` runs for Slack: button clicks
and modal submissions (Socket Mode, or the web app's ``/slack/interactions``),
message upkeep from the store's change feed, expiry and reminders;
``SlackAlerts`` posts alerts (see :mod:`gatekeeper.alerts`) to a channel. See
docs/slack.md for the app manifest and the set-up.
"""

from ._alerts import SlackAlerts, alert_message
from ._blocks import fits_in_slack, request_message
from ._channel import SlackChannel
from ._interactions import SlackInteractions
from ._service import SlackService

__all__ = [
    "SlackAlerts",
    "SlackChannel",
    "SlackInteractions",
    "SlackService",
    "alert_message",
    "fits_in_slack",
    "request_message",
]
