"""The model relay on its unix socket, against a real scripted OpenAI server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from overlord.adapters.containers.relay import ModelRelay
from tests.openai_server import ScriptedOpenAI

SECRET = "sk-relay-SECRET-5150"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the relay's unix socket (any method, any request target)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("relay", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


CHAT = {"model": "whatever-the-minion-says", "messages": [{"role": "user", "content": "hi"}]}


def call(
    relay: ModelRelay, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    conn = UnixHTTPConnection(str(relay.socket_path), timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload


def test_chat_is_forwarded_with_the_key_and_the_step_s_model(tmp_path: Path) -> None:
    with ScriptedOpenAI([{"content": "hello"}]) as server:
        with ModelRelay(server.url, "pinned-model", SECRET, name="local-14b") as relay:
            directory = relay.directory
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            assert stat.S_ISSOCK(relay.socket_path.stat().st_mode)
            assert stat.S_IMODE(relay.socket_path.stat().st_mode) == 0o600
            status, answer = call(relay, "POST", "/v1/chat/completions", CHAT)
            assert status == 200 and answer["choices"][0]["message"]["content"] == "hello"
            status, models = call(relay, "GET", "/v1/models")
            assert status == 200 and models["data"][0]["id"] == "scripted-model"
            lines = relay.log_lines()
        (request,) = server.requests
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["json"]["model"] == "pinned-model"
    assert request["path"] == "/v1/chat/completions"
    assert len(lines) == 2 and "POST /v1/chat/completions -> 200" in lines[0]
    assert all(SECRET not in line for line in lines)
    assert not directory.exists()  # the private directory goes with the relay


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/embeddings"),
        ("GET", "/health"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions/../../admin"),
        ("POST", "http://169.254.169.254/v1/chat/completions"),
        ("POST", "http://127.0.0.1:6379/v1/chat/completions"),
        ("GET", "https://api.example.com/v1/models"),
        ("PUT", "/v1/chat/completions"),
        ("DELETE", "/v1/models"),
        ("CONNECT", "127.0.0.1:5432"),
    ],
)
def test_another_path_host_or_method_is_refused(method: str, path: str) -> None:
    with ScriptedOpenAI() as server:
        with ModelRelay(server.url, "m", SECRET) as relay:
            body = CHAT if method in ("POST", "PUT") else None
            status, answer = call(relay, method, path, body)
            lines = relay.log_lines()
        assert server.chat_count == 0 and server.health_checks == 0
    assert status in (403, 405), answer
    assert "relay" in answer["error"]["message"]
    assert len(lines) == 1 and f"-> {status}" in lines[0]


def test_raw_request_to_another_host_header_goes_to_the_step_s_endpoint_only() -> None:
    """The Host header means nothing: the relay knows one endpoint."""
    with ScriptedOpenAI([{"content": "ok"}]) as server:
        with ModelRelay(server.url, "m", SECRET) as relay:
            body = json.dumps(CHAT).encode()
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(relay.socket_path))
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example:443\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                reply = sock.makefile("rb").read()
        assert server.chat_count == 1
    assert reply.startswith(b"HTTP/1.0 200")


def test_count_and_size_caps() -> None:
    with ScriptedOpenAI([{"content": "x" * 5000}]) as server:
        with ModelRelay(server.url, "m", SECRET, max_calls=2, max_request=2000,
                        max_response=4000) as relay:  # fmt: skip
            assert call(relay, "POST", "/v1/chat/completions", CHAT)[0] == 502  # answer too big
            too_big = {**CHAT, "messages": [{"role": "user", "content": "y" * 3000}]}
            assert call(relay, "POST", "/v1/chat/completions", too_big)[0] == 413
            assert call(relay, "POST", "/v1/chat/completions", raw=b"not json")[0] == 400
            assert call(relay, "POST", "/v1/chat/completions", CHAT)[0] == 200
            status, answer = call(relay, "POST", "/v1/chat/completions", CHAT)
            assert status == 429 and "max_turns (2)" in answer["error"]["message"]
        assert server.chat_count == 2


def test_unreachable_endpoint_is_a_502_naming_it() -> None:
    with ScriptedOpenAI() as server:
        url = server.url
    with ModelRelay(url, "m", SECRET, name="local-14b") as relay:
        status, answer = call(relay, "POST", "/v1/chat/completions", CHAT)
    assert status == 502
    assert "cannot reach model endpoint local-14b" in answer["error"]["message"]
    assert SECRET not in json.dumps(answer)


def test_an_oversized_request_is_answered_413_not_a_broken_pipe() -> None:
    """The relay reads an over-cap body (up to RELAY_DRAIN_MAX) before its 413, so the
    client's send never meets a closed socket (it used to, now and then, under load)."""
    with ScriptedOpenAI() as server:
        with ModelRelay(server.url, "m", SECRET, max_request=2000) as relay:
            too_big = {**CHAT, "messages": [{"role": "user", "content": "y" * 200_000}]}
            statuses = {call(relay, "POST", "/v1/chat/completions", too_big)[0] for _ in range(30)}
        assert statuses == {413}
        assert server.chat_count == 0
