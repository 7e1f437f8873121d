"""schemathesis against the console's OpenAPI document: no generated input gets a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from gatekeeper.store import MemoryStore
from tests.webkit import Console, bearer

# One console for the module: schemathesis reads the schema when the tests are collected.
console = Console(MemoryStore())
schema = schemathesis.openapi.from_asgi("/openapi.json", console.app).exclude(
    path="/api/v1/events"  # an endless stream; tested in test_web_api.py
)
AUTH = bearer("tok-admin")  # read + decide + admin, decides as alice


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_input_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
