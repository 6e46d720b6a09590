"""A chat endpoint on loopback that answers `POST /v1/chat/completions` with scripted replies, for the replies a real
server can send but `transformers serve` never does: a 200 that is not a stream, an empty stream, an endless one.

    with ChatReplyServer() as server:
        server.script(Reply.not_a_stream(), Reply.stream("답"))   # the next two requests get these, in order
        ...                                                     # then every request gets Reply.stream("답")
        server.bodies                                           # the JSON bodies that arrived
        server.disconnected.wait(5)                             # a Reply.forever() stream's client went away
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.loopback_server import LoopbackServer


def sse_chunk(content: str | None, role: str | None = None) -> bytes:
    delta = {key: value for key, value in (("role", role), ("content", content)) if value is not None}
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    return f"data: {json.dumps({**chunk, 'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()


@dataclass(frozen=True)
class Reply:
    """One answer: a complete body with its Content-Type, or (`endless`) SSE chunks every 50 ms until the client
    leaves."""

    content_type: str
    body: bytes = b""
    endless: bool = False

    @classmethod
    def stream(cls, *pieces: str) -> "Reply":
        body = sse_chunk(None, role="assistant") + b"".join(sse_chunk(piece) for piece in pieces)
        return cls("text/event-stream", body + b"data: [DONE]\n\n")

    @classmethod
    def completion(cls, text: str) -> "Reply":
        """A plain (non-streamed) chat completion, as a server that ignores `stream: true` sends it."""
        message = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [message]}
        return cls("application/json", json.dumps(body).encode())

    @classmethod
    def html(cls) -> "Reply":
        """What a captive portal or a misrouted reverse proxy answers."""
        return cls("text/html", b"<!doctype html><html><body><h1>Welcome</h1><p>data: none</p></body></html>")

    @classmethod
    def forever(cls) -> "Reply":
        return cls("text/event-stream", endless=True)


class ChatReplyServer(LoopbackServer):
    def __init__(self, default: Reply | None = None):
        self.default = default or Reply.stream("답", "변")
        self.bodies: list[dict] = []
        self.disconnected = threading.Event()
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next(self, body: dict) -> Reply:
        with self._lock:
            self.bodies.append(body)
            return self._replies.pop(0) if self._replies else self.default

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                reply = server._next(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Type", reply.content_type)
                if reply.endless:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._endless()
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def _endless(self) -> None:
                self.close_connection = True
                try:
                    while True:
                        chunk = sse_chunk("가")
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

        return Handler
