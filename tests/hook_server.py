"""A real HTTP server on 127.0.0.1 that records webhook POSTs (for the notification tests).

Each request consumes the next entry of ``script`` (then ``default``): a status code to
answer with, or ``"hang"`` — accept the request and answer nothing until ``release()``
(or the server stops). ``requests`` holds every request's path, headers and JSON body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class HookServer:
    def __init__(self, script: Sequence[int | str] = (), default: int | str = 200) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.hanging = 0  # requests accepted and not answered yet
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def release(self) -> None:
        self._released.set()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r["json"] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.bodies()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.requests)} request(s), expected {count}: {self.bodies()}")

    def __enter__(self) -> HookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with owner._lock:
                    owner.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": json.loads(raw or b"null"),
                            "at": time.monotonic(),
                        }
                    )
                    action = owner.script.pop(0) if owner.script else owner.default
                if action == "hang":
                    with owner._lock:
                        owner.hanging += 1
                    owner._released.wait(120)
                    with owner._lock:
                        owner.hanging -= 1
                    return
                status = int(action)
                body = b"ok" if status < 400 else b"no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
