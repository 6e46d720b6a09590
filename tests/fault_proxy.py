"""A real HTTP proxy on loopback that injects scripted faults in front of an OpenAI-compatible server.

    with FaultProxy(tiny_server.base_url) as proxy:
        proxy.script(Fault.status(429, retry_after="1"), Fault.drop())   # the next two requests fail so
        ...                                                               # then every request passes through
        proxy.forwarded                                                   # bodies that reached the server

Tests point the client at `proxy.base_url` and count requests here, at the socket, rather than trusting the client
to report on itself. `ConnectionCounter` is a bare listener that only counts who connects: set as an environment
proxy, or addressed as a remote host, it shows that nothing went where it must not.
"""

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour; `match` limits it to a request whose body contains that text."""

    kind: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    match: str | None = None

    @classmethod
    def http_status(cls, status: int, retry_after: str | None = None, match: str | None = None) -> "Fault":
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls("status", status=status, headers=headers, match=match)

    @classmethod
    def timeout(cls, delay_s: float, match: str | None = None) -> "Fault":
        """Hold the request past the client's timeout, then close without answering."""
        return cls("timeout", delay_s=delay_s, match=match)

    @classmethod
    def malformed(cls, match: str | None = None) -> "Fault":
        """200 OK with a body that is cut off mid-JSON."""
        return cls("malformed", match=match)

    @classmethod
    def drop(cls, match: str | None = None) -> "Fault":
        """Close the connection without sending a response."""
        return cls("drop", match=match)


@dataclass(frozen=True)
class ProxiedRequest:
    """`at` is monotonic, for gaps; `wall` is epoch seconds, for comparing with an HTTP-date Retry-After; `path`
    includes the query string."""

    body: dict
    outcome: str
    at: float
    wall: float
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class FaultProxy:
    """Forwards `POST /v1/...` to `upstream_base_url` unless a scripted fault claims the request first."""

    def __init__(self, upstream_base_url: str):
        upstream = urlsplit(upstream_base_url)
        self.upstream_root = f"{upstream.scheme}://{upstream.netloc}"
        self.base_path = upstream.path
        self.requests: list[ProxiedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.base_path}"

    @property
    def forwarded(self) -> list[dict]:
        """Bodies that reached the upstream server (each one cost real work there)."""
        with self._lock:
            return [r.body for r in self.requests if r.outcome == "forwarded"]

    def outcomes(self) -> list[str]:
        with self._lock:
            return [r.outcome for r in self.requests]

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _claim(self, raw: bytes, body: dict, path: str, headers: dict[str, str]) -> Fault | None:
        """Take the first scripted fault that applies to this request, and log the request with its outcome."""
        text = raw.decode("utf-8", "replace")
        with self._lock:
            fault = next((f for f in self._faults if f.match is None or f.match in text), None)
            if fault is not None:
                self._faults.remove(fault)
            if fault is None:
                outcome = "forwarded"
            else:
                outcome = f"status:{fault.status}" if fault.kind == "status" else fault.kind
            self.requests.append(ProxiedRequest(body, outcome, time.monotonic(), time.time(), path, headers))
        return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed ACK

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                fault = proxy._claim(raw, body, self.path, {k.lower(): v for k, v in self.headers.items()})
                if fault is None:
                    self._forward(raw)
                elif fault.kind == "status":
                    payload = json.dumps({"error": {"message": f"injected {fault.status}"}}).encode()
                    self._answer(fault.status, payload, fault.headers)
                elif fault.kind == "malformed":
                    self._answer(200, b'{"id": "x", "choices": [{"message": {"content": "cut', {})
                else:
                    time.sleep(fault.delay_s)
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:  # the client gave up first (timeout)
                        pass

            def _forward(self, raw: bytes) -> None:
                headers = {"Content-Type": "application/json"}
                upstream = httpx.post(
                    f"{proxy.upstream_root}{self.path}", content=raw, headers=headers, timeout=120, trust_env=False
                )
                self._answer(upstream.status_code, upstream.content, {})

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""The environment proxies HTTP clients honour by default; a test points them all at a `ConnectionCounter`."""


class ConnectionCounter:
    """A TCP listener that accepts, counts and closes every connection: anything that reaches it is a leak."""

    def __init__(self, host: str = "127.0.0.1"):
        self.connections = 0
        self._socket = socket.create_server((host, 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def __enter__(self) -> "ConnectionCounter":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()
