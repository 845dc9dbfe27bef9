"""A real HTTP server speaking the OpenAI chat-completions API from a script (for tests).

Each ``POST /v1/chat/completions`` consumes the next script entry:

- ``{"tool_calls": [{"name": "write_file", "arguments": {...}}]}`` — assistant tool calls
  (ids generated, arguments JSON-encoded unless already a string);
- ``{"content": "text"}`` — a final assistant message;
- ``{"status": 500, "body": {...}}`` — an HTTP error with an optional JSON body;
- ``{"sleep": 5}`` — sleep first (combinable with the other keys; alone it answers "done");
- ``{"raw_tool_calls": [...]}`` — tool calls sent verbatim (malformed-call tests);
- ``{"raw": "not json"}`` — a raw response body (status 200 unless "status" is given);
- ``{"usage": {...}}`` — overrides the usage block;
- a callable ``f(body: dict) -> dict`` returning one of the above.

When the script is exhausted the server answers with a final message "done". ``GET /health``
answers ``health_status``; ``GET /v1/models`` lists one model.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

ScriptEntry = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
DEFAULT_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


class _QuietServer(ThreadingHTTPServer):
    """A client closing its connection (a timeout, keep-alive ended) is not an error
    worth a traceback on stderr, which the CLI tests read as the command's output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class ScriptedOpenAI:
    """Scripted OpenAI-compatible server on 127.0.0.1 (random port); use as a context manager."""

    def __init__(
        self,
        script: Sequence[Any] | None = None,
        *,
        delay: float = 0.0,
        health_status: int = 200,
        model: str = "scripted-model",
    ) -> None:
        self.script: list[ScriptEntry] = list(script or [])
        self.delay = delay
        self.health_status = health_status
        self.model = model
        self.requests: list[dict[str, Any]] = []  # chat requests: {"path", "headers", "json"}
        self.health_checks = 0
        self.in_flight = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/health"

    def start(self) -> ScriptedOpenAI:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes sleeping handlers
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- controls --------------------------------------------------------------------------
    def set_health(self, status: int) -> None:
        self.health_status = status

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def add(self, *entries: Any) -> None:
        with self._lock:
            self.script.extend(entries)

    @property
    def chat_count(self) -> int:
        return len(self.requests)

    # -- behaviour -------------------------------------------------------------------------
    def _next_entry(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self.script.pop(0) if self.script else {"content": "done"}
        return entry(body) if callable(entry) else dict(entry)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _completion(self, entry: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": entry.get("content")}
        finish = "stop"
        if "raw_tool_calls" in entry:
            message["tool_calls"] = entry["raw_tool_calls"]
            finish = "tool_calls"
        elif entry.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": call.get("id") or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call.get("arguments"), str)
                        else json.dumps(call.get("arguments", {})),
                    },
                }
                for call in entry["tool_calls"]
            ]
            finish = "tool_calls"
        elif message["content"] is None:
            message["content"] = "done"
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": entry.get("usage", DEFAULT_USAGE),
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

            def _send(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. its timeout)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/health":
                    server.health_checks += 1
                    ok = 200 <= server.health_status < 300
                    self._send(server.health_status, {"status": "ok" if ok else "unhealthy"})
                elif self.path.rstrip("/") == "/v1/models":
                    model = {"id": server.model, "object": "model", "owned_by": "scripted"}
                    self._send(200, {"object": "list", "data": [model]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "request body is not JSON"}})
                    return
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "json": body}
                    )
                    server.in_flight += 1
                    server.max_concurrent = max(server.max_concurrent, server.in_flight)
                try:
                    self._answer(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                entry = server._next_entry(body)
                server._sleep(server.delay + float(entry.get("sleep", 0)))
                if "raw" in entry:
                    raw = entry["raw"]
                    data = raw if isinstance(raw, bytes) else str(raw).encode()
                    self._send(int(entry.get("status", 200)), data)
                elif "status" in entry and int(entry["status"]) >= 400:
                    default = {"error": {"message": f"scripted error {entry['status']}"}}
                    self._send(int(entry["status"]), entry.get("body", default))
                else:
                    self._send(200, server._completion(entry, body))

        return Handler
