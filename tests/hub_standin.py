"""A Hugging Face Hub stand-in on loopback: it records every request at the socket and answers just enough of the Hub
API for `huggingface_hub.HfApi` to create a repo, change its settings and upload a folder of small files.

    with HubStandin() as hub:
        HfApi(endpoint=hub.root, token="hf_test").create_repo("org/x", repo_type="dataset", private=True)
        hub.requests   # [HubRequest(method="POST", path="/api/repos/create", json={...}), ...]

Every file is declared a regular (non-LFS) upload in the preupload answer, so the commit carries it inline and no
storage backend is needed. Anything else is answered 404 and recorded, so a test sees calls it did not expect.
"""

import base64
import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import yaml

from tests.loopback_server import LoopbackServer

COMMIT_OID = "c0ffee" + "0" * 34


@dataclass(frozen=True)
class HubRequest:
    """`json` is the parsed body (None when there was none); `files` are the paths a commit added."""

    method: str
    path: str
    json: dict | None
    files: tuple[str, ...] = ()


class HubStandin(LoopbackServer):
    def __init__(self):
        self.requests: list[HubRequest] = []
        super().__init__()

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        path = path.split("?")[0]
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            self.requests.append(HubRequest(method, path, payload))
            repo_id = f"{payload['organization']}/{payload['name']}"
            return 200, {"url": f"{self.root}/datasets/{repo_id}", "name": repo_id, "id": "0" * 24}
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
        if method == "POST" and re.fullmatch(r"/api/datasets/[^/]+/[^/]+/preupload/[^/]+", path):
            payload = json.loads(body)
            self.requests.append(HubRequest(method, path, payload))
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
            return 200, {"files": files}
        if method == "POST" and re.fullmatch(r"/api/datasets/[^/]+/[^/]+/commit/[^/]+", path):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            added = tuple(line["value"]["path"] for line in lines if line["key"] == "file")
            for line in lines:
                if line["key"] == "file":
                    base64.b64decode(line["value"]["content"])  # the content really is there
            self.requests.append(HubRequest(method, path, lines[0]["value"], added))
            url = f"{self.root}/datasets/{path.split('/')[3]}/{path.split('/')[4]}/commit/{COMMIT_OID}"
            return 200, {"commitUrl": url, "commitOid": COMMIT_OID, "pullRequestUrl": None}
        self.requests.append(HubRequest(method, path, None))
        return 404, {"error": f"the stand-in does not serve {method} {path}"}

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            def _handle(self) -> None:
                body = self._body()
                status, payload = standin.answer(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 404:
                    self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler
