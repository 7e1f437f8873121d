"""Channels: where people see held calls and decide them.

``ConsoleChannel`` asks in the terminal; Slack, the web console and webhooks
come as their own channels.
"""

from ._base import AsyncChannel, Channel
from .console import ConsoleChannel
from .webhook import WebhookChannel

__all__ = ["AsyncChannel", "Channel", "ConsoleChannel", "WebhookChannel"]
