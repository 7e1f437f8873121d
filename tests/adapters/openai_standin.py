"""A local stand-in for the OpenAI API that the real ``openai`` clients talk to.

No test can reach OpenAI, so :class:`OpenAIStandIn` plays it on 127.0.0.1:
``OpenAI(base_url=standin.base_url, api_key="test")`` (or ``AsyncOpenAI``) posts to it, it
answers ``POST /v1/chat/completions`` and ``POST /v1/responses`` with the replies a test
scripted, in order, and records every request body, so a test can read what the model was sent
next (the tool results, a denial).

The module also builds the JSON the API returns: :func:`chat_completion` with
:func:`chat_tool_call` entries, and :func:`response` with :func:`function_call`,
:func:`message_item` and :func:`reasoning_item` output items.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "CHAT_PATH",
    "RESPONSES_PATH",
    "OpenAIStandIn",
    "chat_completion",
    "chat_tool_call",
    "function_call",
    "message_item",
    "reasoning_item",
    "response",
]

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
_ids = itertools.count(1)


class OpenAIStandIn:
    """Scripted Chat Completions and Responses endpoints, recording what they were sent.

    Example::

        with OpenAIStandIn() as api, OpenAI(base_url=api.base_url, api_key="test") as client:
            api.script_chat(chat_completion("hello"))
            client.chat.completions.create(model="m", messages=[...])
            api.bodies(CHAT_PATH)   # [the request body, as JSON]
    """

    def __init__(self) -> None:
        self._replies: dict[str, deque[dict[str, Any]]] = {
            CHAT_PATH: deque(),
            RESPONSES_PATH: deque(),
        }
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._http is not None, "the stand-in is not running"
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def script_chat(self, *completions: dict[str, Any]) -> None:
        """Answer the next Chat Completions requests with these, one each, in order."""
        with self._lock:
            self._replies[CHAT_PATH].extend(completions)

    def script_responses(self, *responses: dict[str, Any]) -> None:
        """Answer the next Responses requests with these, one each, in order."""
        with self._lock:
            self._replies[RESPONSES_PATH].extend(responses)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies of the requests made to ``path``, oldest first."""
        with self._lock:
            return [body for p, body in self.requests if p == path]

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((path, body))
            replies = self._replies.get(path)
            if replies is None:
                return 404, _error(f"the stand-in does not serve {path}")
            if not replies:
                return 500, _error(f"no scripted reply left for {path}")
            return 200, replies.popleft()

    def start(self) -> OpenAIStandIn:
        self._http = _HTTPServer(self)
        http = self._http
        self._thread = threading.Thread(
            # a short poll: stop() waits for the loop to notice the shutdown
            target=lambda: http.serve_forever(poll_interval=0.02),
            name="openai-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            assert self._thread is not None
            self._thread.join()
            self._http = self._thread = None

    def __enter__(self) -> OpenAIStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    """One thread a request, all joined when the server closes."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, standin: OpenAIStandIn) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    """Reads a JSON body, asks the stand-in for the answer and writes it.

    HTTP/1.0 (the default) closes the connection after each answer, so no keep-alive
    connection is left open when the server stops.
    """

    server: _HTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            status, answer = 400, _error("the request body is not JSON")
        else:
            path = self.path.split("?", 1)[0]
            status, answer = self.server.standin._answer(path, body)
        data = json.dumps(answer).encode()
        self.send_response(HTTPStatus(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: the stand-in records requests, and stderr noise helps no test."""


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


# -- Chat Completions ------------------------------------------------------------------------
def chat_tool_call(name: str, arguments: str | dict[str, Any], call_id: str = "") -> dict[str, Any]:
    """One entry of an assistant message's ``tool_calls`` (``arguments`` as JSON text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": call_id or f"call_{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


def chat_completion(
    content: str | None = None, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` whose one choice is an assistant message."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": "gpt-standin",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


# -- Responses --------------------------------------------------------------------------------
def function_call(name: str, arguments: str | dict[str, Any], call_id: str = "") -> dict[str, Any]:
    """A ``function_call`` output item (``arguments`` as JSON text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    n = next(_ids)
    return {
        "type": "function_call",
        "id": f"fc_{n}",
        "call_id": call_id or f"call_{n}",
        "name": name,
        "arguments": text,
        "status": "completed",
    }


def message_item(text: str) -> dict[str, Any]:
    """An assistant ``message`` output item with one ``output_text`` part."""
    return {
        "type": "message",
        "id": f"msg_{next(_ids)}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def reasoning_item(*summary: str) -> dict[str, Any]:
    """A ``reasoning`` output item with these summary texts."""
    return {
        "type": "reasoning",
        "id": f"rs_{next(_ids)}",
        "summary": [{"type": "summary_text", "text": text} for text in summary],
    }


def response(*output: dict[str, Any]) -> dict[str, Any]:
    """A completed ``response`` with these output items."""
    return {
        "id": f"resp_{next(_ids)}",
        "object": "response",
        "created_at": 1_767_225_600,
        "status": "completed",
        "model": "gpt-standin",
        "output": list(output),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
    }
