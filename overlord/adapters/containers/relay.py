"""The model relay: the only way a minion reaches a model (SPEC §5 Minions).

Per minion run the worker serves an OpenAI-compatible HTTP relay on a unix socket in a
private directory, mounted into the sandbox. It forwards exactly two requests to the
step's endpoint — ``POST /v1/chat/completions`` (also ``/chat/completions``) and
``GET /v1/models`` — adds the API key itself, pins the model, and refuses anything else
(another path, another method, an absolute URL naming another host: 403/405). Request and
response bodies are size-capped and the number of chat calls is capped (``max_turns``).
Each call is logged (method, path, status, sizes, seconds; never the key). Redirects are
not followed, and only the body and its content type come back to the minion.

So the sandbox holds no key and no route to anything: only this socket.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import os
import shutil
import socketserver
import ssl
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from overlord import defaults

log = logging.getLogger(__name__)

SOCKET_NAME = "model.sock"
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")


@dataclass
class Call:
    method: str
    path: str
    status: int
    sent: int = 0
    received: int = 0
    seconds: float = 0.0
    note: str = ""
    forwarded: bool = False

    def line(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return (f"{self.method} {self.path[:80]} -> {self.status} {self.sent} B out, "
                f"{self.received} B back, {self.seconds:.2f} s{extra}")  # fmt: skip


@dataclass
class ModelRelay:
    """Serve the relay while in a ``with`` block; ``socket_path`` is what the minion gets."""

    endpoint: str  # the step's endpoint base URL, e.g. http://127.0.0.1:5000/v1
    model: str
    api_key: str = ""
    name: str = "model"  # the endpoint's name, for messages and the log
    max_calls: int = 20
    timeout: float = 120.0
    max_request: int = defaults.RELAY_MAX_REQUEST
    max_response: int = defaults.RELAY_MAX_RESPONSE
    owner: tuple[int, int] | None = None  # uid/gid that must be able to connect
    calls: list[Call] = field(default_factory=list)
    _dir: Path | None = None
    _server: socketserver.ThreadingUnixStreamServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def directory(self) -> Path:
        assert self._dir is not None, "the relay is not running"
        return self._dir

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET_NAME

    @property
    def chat_calls(self) -> int:
        return sum(1 for c in self.calls if c.forwarded and c.method == "POST")

    def __enter__(self) -> ModelRelay:
        url = urllib.parse.urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"model endpoint {self.endpoint!r} is not an http(s) URL")
        self._dir = Path(tempfile.mkdtemp(prefix="overlord-relay-"))
        server = socketserver.ThreadingUnixStreamServer(str(self.socket_path), _handler(self))
        server.daemon_threads = True
        self._server = server
        os.chmod(self.socket_path, 0o600)
        if self.owner and os.geteuid() == 0:
            for path in (self._dir, self.socket_path):
                os.chown(path, *self.owner)
        serve = functools.partial(server.serve_forever, poll_interval=defaults.RELAY_SHUTDOWN_POLL)
        threading.Thread(target=serve, name="model-relay", daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:  # stopped in the background: nobody waits for it
            server, self._server = self._server, None
            threading.Thread(target=_stop, args=(server,), daemon=True).start()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def log_lines(self) -> list[str]:
        with self._lock:
            return [c.line() for c in self.calls]

    # -- one request ---------------------------------------------------------------------
    def admit(self, method: str, path: str) -> tuple[int, str] | None:
        """None when the request may go on, else (status, why) to refuse it."""
        allowed = CHAT_PATHS if method == "POST" else MODEL_PATHS
        if path not in allowed:
            where = "POST /v1/chat/completions and GET /v1/models"
            return 403, f"the model relay forwards only {where}, not {method} {path[:200]}"
        with self._lock:
            if method == "POST" and self.chat_calls >= self.max_calls:
                return 429, f"max_turns ({self.max_calls}) model calls used up"
            lists = sum(1 for c in self.calls if c.forwarded and c.method == "GET")
            if method == "GET" and lists >= defaults.RELAY_MAX_MODEL_LISTS:
                return 429, f"the model list was already asked {lists} times"
        return None

    def forward(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        """Send one request to the endpoint (key added, no redirects); (status, body)."""
        url = urllib.parse.urlsplit(self.endpoint)
        suffix = "/chat/completions" if path in CHAT_PATHS else "/models"
        target = url.path.rstrip("/") + suffix
        headers = {"Accept": "application/json", "User-Agent": "overlord-relay"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=self.timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(self.max_response + 1)
            if len(data) > self.max_response:
                return 502, _error(f"answer of {self.name} exceeds {self.max_response} bytes")
            return resp.status, data
        except TimeoutError:
            return 504, _error(f"model request to {self.name} timed out after {self.timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return 502, _error(f"cannot reach model endpoint {self.name}: {exc}")
        finally:
            conn.close()

    def pin_model(self, raw: bytes) -> bytes | str:
        """The request with this step's model; a str says why it is refused."""
        try:
            body = json.loads(raw)
        except ValueError:
            return "the request body is not JSON"
        if not isinstance(body, dict):
            return "the request body is not a JSON object"
        body["model"] = self.model
        return json.dumps(body).encode()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        log.info("relay %s: %s", self.name, call.line())


def _stop(server: socketserver.BaseServer) -> None:
    server.shutdown()
    server.server_close()


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "overlord_relay"}}).encode()


def _handler(relay: ModelRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection
        server_version = "overlord-relay"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass  # every call is recorded by the relay itself

        def address_string(self) -> str:
            return "minion"

        def _reply(self, status: int, data: bytes) -> None:
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def _handle(self, method: str) -> None:
            started = time.monotonic()
            call = Call(method, self.path, 0)
            body: bytes | None = None
            refused = relay.admit(method, self.path)
            if refused is not None:
                self._drain()
            elif method == "POST":
                refused, body = self._read_body()
            if refused is not None:
                call.status, call.note = refused
                data = _error(refused[1])
            else:
                call.sent, call.forwarded = len(body or b""), True
                call.status, data = relay.forward(method, self.path, body)
                call.received = len(data)
            call.seconds = time.monotonic() - started
            relay.record(call)  # before answering: the log is complete when the minion reads
            self._reply(call.status, data)

        def _read_body(self) -> tuple[tuple[int, str] | None, bytes | None]:
            if self.headers.get("Transfer-Encoding"):
                return (411, "send the request with a Content-Length"), None
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                return (411, "send the request with a Content-Length"), None
            if length < 0 or length > relay.max_request:
                self._drain(defaults.RELAY_DRAIN_MAX)  # so the minion's send ends, and reads this
                return (413, f"request of {length} bytes exceeds {relay.max_request}"), None
            pinned = relay.pin_model(self.rfile.read(length))
            if isinstance(pinned, str):
                return (400, pinned), None
            if len(pinned) > relay.max_request:
                return (413, f"request exceeds {relay.max_request} bytes"), None
            return None, pinned

        def _drain(self, most: int | None = None) -> None:
            """Read (and drop) a refused request's body, at most ``most`` bytes (default:
            ``max_request``), so the minion's send completes and it reads our answer."""
            with contextlib.suppress(ValueError, OSError):
                length = int(self.headers.get("Content-Length") or 0)
                if 0 < length <= (relay.max_request if most is None else most):
                    self.rfile.read(length)

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

        def _refuse(self) -> None:
            self._drain()
            relay.record(Call(self.command, self.path, 405, note="method not allowed"))
            self._reply(405, _error(f"the model relay does not forward {self.command}"))

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_CONNECT = _refuse

    return Handler
