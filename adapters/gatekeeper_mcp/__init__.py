"""gatekeeper's MCP gateway: put the gate in front of any MCP server (``gatekeeper mcp serve``).

The gateway is an MCP server to agents (stdio or streamable HTTP) and an MCP
client to the upstream servers the config names; every ``tools/call`` is
classified by the policy, held for a person when it says so, and sent
upstream only as approved. See docs/mcp.md.

Example::

    from gatekeeper import Gatekeeper
    from gatekeeper._config import load_config
    from gatekeeper_mcp import Gateway, serve_stdio

    config = load_config("gatekeeper.yaml")
    gateway = Gateway(config.build_gate(), config.mcp, base_dir=config.base_dir)
    anyio.run(serve_stdio, gateway)
"""

from gatekeeper._extras import needs_extra

with needs_extra(
    "gatekeeper_mcp", "mcp", "the MCP Python SDK", ("mcp", "jsonschema", "starlette", "httpx2")
):
    from ._catalog import Offered, Pins, PinsError
    from ._gateway import Gateway, Identity
    from ._serve import http_app, serve_stdio

__all__ = ["Gateway", "Identity", "Offered", "Pins", "PinsError", "http_app", "serve_stdio"]
