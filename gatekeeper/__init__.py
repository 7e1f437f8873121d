"""gatekeeper: a person between an AI agent and the tool calls that matter."""
from ._version import __version__
