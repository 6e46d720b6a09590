"""The servers the tests talk to instead of the world, each a small FastAPI app on loopback (`LoopbackServer`):

    with ChatReplyServer() as server:                            # a chat endpoint with scripted replies
        server.script(Reply.completion("답"), Reply.stream("답"))  # the next two requests get these, in order
    with FaultProxy(tiny_server.base_url) as proxy:               # the same, in front of a real server: what is
        proxy.script(Fault.http_status(429, retry_after="1"), Fault.drop())   # not scripted passes through
        proxy.forwarded                                           # bodies that reached the server
    with HubStandin() as hub: ...                                 # just enough of the Hugging Face Hub API
    with BatchApiStandin(tiny_server) as api: ...                 # OpenAI's Files and Batches API

A reply is a parameter (`Reply`, also named `Fault` where it is one): a status, a body, an endless stream, a wait, a
connection closed unanswered. Every request is recorded here, at the server, rather than trusting the client to
report on itself. `ConnectionCounter` is a bare TCP listener that only counts who connects: set as an environment
proxy, or addressed as a remote host, it shows that nothing went where it must not.
"""

import asyncio
import base64
import json
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ko_radiology.loopback import LoopbackServer
from tests.batch_simulator import simulate_openai_batch


def sse_chunk(content: str | None, role: str | None = None) -> bytes:
    delta = {key: value for key, value in (("role", role), ("content", content)) if value is not None}
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    return f"data: {json.dumps({**chunk, 'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()


@dataclass(frozen=True)
class Reply:
    """One scripted answer; `match` limits it to a request whose body contains that text. `kind` names it in the
    log: `reply` (sent as it is), `status` (an error status), `malformed`, `timeout` (held `delay_s`, then closed
    unanswered), `drop` (closed unanswered), `forever` (SSE chunks every 50 ms until the client leaves)."""

    kind: str = "reply"
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    match: str | None = None

    @classmethod
    def stream(cls, *pieces: str) -> "Reply":
        body = sse_chunk(None, role="assistant") + b"".join(sse_chunk(piece) for piece in pieces)
        return cls(content_type="text/event-stream", body=body + b"data: [DONE]\n\n")

    @classmethod
    def completion(cls, text: str) -> "Reply":
        """A plain (non-streamed) chat completion, as a server that ignores `stream: true` sends it."""
        message = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [message]}
        return cls(body=json.dumps(body).encode())

    @classmethod
    def html(cls) -> "Reply":
        """What a captive portal or a misrouted reverse proxy answers."""
        return cls(content_type="text/html", body=b"<!doctype html><html><body><h1>Welcome</h1><p>data: none</p>")

    @classmethod
    def forever(cls) -> "Reply":
        return cls("forever", content_type="text/event-stream")

    @classmethod
    def http_status(cls, status: int, retry_after: str | None = None, match: str | None = None) -> "Reply":
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = json.dumps({"error": {"message": f"injected {status}"}}).encode()
        return cls("status", status=status, body=body, headers=headers, match=match)

    @classmethod
    def timeout(cls, delay_s: float, match: str | None = None) -> "Reply":
        """Hold the request past the client's timeout, then close without answering."""
        return cls("timeout", delay_s=delay_s, match=match)

    @classmethod
    def malformed(cls, match: str | None = None) -> "Reply":
        """200 OK with a body that is cut off mid-JSON."""
        return cls("malformed", body=b'{"id": "x", "choices": [{"message": {"content": "cut', match=match)

    @classmethod
    def drop(cls, match: str | None = None) -> "Reply":
        """Close the connection without sending a response."""
        return cls("drop", match=match)

    @property
    def outcome(self) -> str:
        return f"status:{self.status}" if self.kind == "status" else self.kind


Fault = Reply


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


def target(request: Request) -> str:
    """The path with its query string, as the client sent it."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def with_transport(app):
    """ASGI has no message for "close the connection unanswered"; uvicorn's `send` is bound to the request cycle
    that holds the connection's transport, which this puts in the scope for `drop` and `timeout`."""

    async def app_with_transport(scope, receive, send):
        scope["transport"] = send.__self__.transport
        await app(scope, receive, send)

    return app_with_transport


class ChatReplyServer(LoopbackServer):
    """Answers `POST` with scripted replies, then with `default`; with `upstream_base_url` (see `FaultProxy`), what
    is not scripted is forwarded there."""

    def __init__(self, default: Reply | None = None, upstream_base_url: str | None = None):
        self.default = default or Reply.stream("답", "변")
        upstream = urlsplit(upstream_base_url or "/v1")
        self.upstream_root = f"{upstream.scheme}://{upstream.netloc}" if upstream_base_url else None
        self.base_path = upstream.path
        self.requests: list[ProxiedRequest] = []
        self.disconnected = threading.Event()
        """Set when the client of a `forever` stream went away."""
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        super().__init__(with_transport(self._app()))

    @property
    def base_url(self) -> str:
        return f"{self.root}{self.base_path}"

    @property
    def bodies(self) -> list[dict]:
        with self._lock:
            return [r.body for r in self.requests]

    @property
    def forwarded(self) -> list[dict]:
        """Bodies that reached the upstream server (each one cost real work there)."""
        with self._lock:
            return [r.body for r in self.requests if r.outcome == "forwarded"]

    def outcomes(self) -> list[str]:
        with self._lock:
            return [r.outcome for r in self.requests]

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def _claim(self, raw: bytes, request: Request) -> Reply | None:
        """Take the first scripted reply that applies to this request (None: forward it), and log the request."""
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        with self._lock:
            reply = next((r for r in self._replies if r.match is None or r.match in text), None)
            if reply is not None:
                self._replies.remove(reply)
            elif not self.upstream_root:
                reply = self.default
            outcome = reply.outcome if reply else "forwarded"
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.requests.append(
                ProxiedRequest(body, outcome, time.monotonic(), time.time(), target(request), headers)
            )
        return reply

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None)

        @app.post("/{path:path}")
        async def answer(request: Request) -> Response:
            raw = await request.body()
            reply = self._claim(raw, request)
            if reply is None:  # in a thread, so the event loop goes on logging requests as they arrive
                headers = {"Content-Type": "application/json"}
                url = f"{self.upstream_root}{target(request)}"
                upstream = await run_in_threadpool(
                    httpx.post, url, content=raw, headers=headers, timeout=120, trust_env=False
                )
                return Response(upstream.content, upstream.status_code, {"Content-Type": "application/json"})
            if reply.kind in ("drop", "timeout"):
                await asyncio.sleep(reply.delay_s)
                request.scope["transport"].close()
                await request.receive()  # http.disconnect: nothing is sent on a closed connection
            if reply.kind == "forever":
                return EndlessStream(self.disconnected)
            return Response(reply.body, reply.status, {"Content-Type": reply.content_type, **reply.headers})

        return app


class FaultProxy(ChatReplyServer):
    """A real HTTP proxy in front of an OpenAI-compatible server, injecting the scripted faults:

    with FaultProxy(tiny_server.base_url) as proxy:
        proxy.script(Fault.http_status(429, retry_after="1"), Fault.drop())   # the next two requests fail so
        ...                                                                   # then every request passes through
    """

    def __init__(self, upstream_base_url: str):
        super().__init__(upstream_base_url=upstream_base_url)


class EndlessStream(Response):
    """SSE chunks every 50 ms until the client leaves, which sets `left`."""

    def __init__(self, left: threading.Event):  # no Response.__init__: it would declare an empty body's length
        self.left, self.background = left, None

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        )
        gone = asyncio.ensure_future(receive())  # the body was read: the next message is http.disconnect
        while not gone.done():
            await send({"type": "http.response.body", "body": sse_chunk("가"), "more_body": True})
            await asyncio.wait([gone], timeout=0.05)
        self.left.set()


COMMIT_OID = "c0ffee" + "0" * 34


@dataclass(frozen=True)
class HubRequest:
    """`json` is the parsed body (None when there was none); `files` are the paths a commit added."""

    method: str
    path: str
    json: dict | None
    files: tuple[str, ...] = ()


class HubStandin(LoopbackServer):
    """A Hugging Face Hub stand-in: it records every request and answers just enough of the Hub API for
    `huggingface_hub.HfApi` to create a dataset or model repo, change its settings and upload a folder of small files.

        with HubStandin() as hub:
            HfApi(endpoint=hub.root, token="hf_test").create_repo("org/x", repo_type="dataset", private=True)
            hub.requests   # [HubRequest(method="POST", path="/api/repos/create", json={...}), ...]

    Every file is declared a regular (non-LFS) upload in the preupload answer, so the commit carries it inline and no
    storage backend is needed. Anything else is answered 404 and recorded, so a test sees calls it did not expect.
    """

    def __init__(self):
        self.requests: list[HubRequest] = []
        app = FastAPI(openapi_url=None)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
        async def handle(request: Request) -> JSONResponse:
            status, payload = self.answer(request.method, request.url.path, await request.body())
            return JSONResponse(payload, status, {"X-Error-Code": "EntryNotFound"} if status == 404 else None)

        super().__init__(app)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            self.requests.append(HubRequest(method, path, payload))
            repo_id = f"{payload['organization']}/{payload['name']}"
            prefix = "" if payload.get("type", "model") == "model" else f"{payload['type']}s/"
            return 200, {"url": f"{self.root}/{prefix}{repo_id}", "name": repo_id, "id": "0" * 24}
        if method == "POST" and path == "/api/validate-yaml":  # upload_folder has the card's front matter checked
            payload = json.loads(body)
            self.requests.append(HubRequest(method, path, payload))
            try:
                yaml.safe_load(payload["content"].split("---")[1])
            except (yaml.YAMLError, IndexError) as error:
                return 400, {"errors": [{"message": f"invalid YAML: {error}"}]}
            return 200, {"errors": [], "warnings": []}
        if method == "PUT" and re.fullmatch(r"/api/datasets/[^/]+/[^/]+/settings", path):
            self.requests.append(HubRequest(method, path, json.loads(body)))
            return 200, {}
        if method == "POST" and re.fullmatch(r"/api/(datasets|models)/[^/]+/[^/]+/preupload/[^/]+", path):
            payload = json.loads(body)
            self.requests.append(HubRequest(method, path, payload))
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
            return 200, {"files": files}
        if method == "POST" and re.fullmatch(r"/api/(datasets|models)/[^/]+/[^/]+/commit/[^/]+", path):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            added = tuple(line["value"]["path"] for line in lines if line["key"] == "file")
            for line in lines:
                if line["key"] == "file":
                    base64.b64decode(line["value"]["content"])  # the content really is there
            self.requests.append(HubRequest(method, path, lines[0]["value"], added))
            kind, org, name = path.split("/")[2:5]
            url = f"{self.root}/{'' if kind == 'models' else kind + '/'}{org}/{name}/commit/{COMMIT_OID}"
            return 200, {"commitUrl": url, "commitOid": COMMIT_OID, "pullRequestUrl": None}
        self.requests.append(HubRequest(method, path, None))
        return 404, {"error": f"the stand-in does not serve {method} {path}"}


class BatchApiStandin(LoopbackServer):
    """OpenAI's Files and Batches API, answering each batch line with a real server.

        with BatchApiStandin(tiny_server) as api:
            ...  # point the client's base_url at api.base_url; `batch submit` uploads and creates, `batch collect`
                 # fetches

    A created batch is answered at once (`simulate_openai_batch` sends every line to the real server) and reported
    `completed` on the next retrieve, so `batch collect` finds its output file.
    """

    def __init__(self, tiny_server):
        self.tiny_server = tiny_server
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[str] = []  # with the query string: Azure's api-version must arrive
        self._folder = Path(tempfile.mkdtemp(prefix="batch-api-"))
        super().__init__(self._app())

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def upload(self, content: bytes, filename: str) -> dict:
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = content
        return {
            "id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
            "filename": filename, "purpose": "batch", "status": "processed",
        }  # fmt: skip

    def create_batch(self, request: dict) -> dict:
        batch_id = f"batch_{len(self.batches)}"
        source, output = self._folder / f"{batch_id}-in.jsonl", self._folder / f"{batch_id}-out.jsonl"
        source.write_bytes(self.files[request["input_file_id"]])
        simulate_openai_batch(source, output, self.tiny_server)
        output_id = self.upload(output.read_bytes(), output.name)["id"]
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
            "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
        }  # fmt: skip
        self.batches[batch_id]["_output"] = output_id
        return self._public(batch_id)

    def retrieve_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        batch.update(status="completed", output_file_id=batch["_output"])
        return self._public(batch_id)

    def _public(self, batch_id: str) -> dict:
        return {key: value for key, value in self.batches[batch_id].items() if not key.startswith("_")}

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None)

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.calls.append(f"{request.method} {target(request)}")
            return await call_next(request)

        @app.post("/v1/files")
        async def upload(request: Request) -> dict:
            file = (await request.form())["file"]
            return self.upload(await file.read(), file.filename)

        @app.post("/v1/batches")
        def create(batch: dict) -> dict:  # FastAPI runs it in a thread: a real server answers the batch meanwhile
            return self.create_batch(batch)

        @app.get("/v1/batches/{batch_id}")
        def retrieve(batch_id: str) -> JSONResponse:
            if batch_id in self.batches:
                return JSONResponse(self.retrieve_batch(batch_id))
            return JSONResponse({"error": {"message": f"No batch found with id '{batch_id}'."}}, 404)  # as OpenAI

        @app.get("/v1/files/{file_id}/content")
        def content(file_id: str) -> Response:
            return Response(self.files[file_id], media_type="application/octet-stream")

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        def not_served() -> JSONResponse:
            return JSONResponse({"error": {"message": "not served"}}, 404)

        return app


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
