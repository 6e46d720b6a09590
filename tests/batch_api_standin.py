"""OpenAI's Files and Batches API on loopback, answering each batch line with a real server.

    with BatchApiStandin(tiny_server) as api:
        ...  # point the client's base_url at api.base_url; `batch submit` uploads and creates, `batch collect` fetches

A created batch is answered at once (`simulate_openai_batch` sends every line to the real server) and reported
`completed` on the next retrieve, so `batch collect` finds its output file.
"""

import json
import re
import tempfile
import time
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.batch_simulator import simulate_openai_batch
from tests.loopback_server import LoopbackServer


class BatchApiStandin(LoopbackServer):
    def __init__(self, tiny_server):
        self.tiny_server = tiny_server
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[str] = []
        self._folder = Path(tempfile.mkdtemp(prefix="batch-api-"))
        super().__init__()

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

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.calls.append(f"POST {self.path}")  # with its query string: Azure's api-version must arrive
                path = self.path.split("?")[0]
                if path == "/v1/files":
                    part = self._file_part(body)
                    upload = api.upload(part.get_payload(decode=True), part.get_filename())
                    self._send(200, json.dumps(upload).encode())
                elif path == "/v1/batches":
                    self._send(200, json.dumps(api.create_batch(json.loads(body))).encode())
                else:
                    self._send(404, b'{"error": {"message": "not served"}}')

            def _file_part(self, body: bytes):
                """The uploaded file of a multipart/form-data body (the other part is `purpose`)."""
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = BytesParser(policy=policy.default).parsebytes(head + body)
                return next(part for part in message.iter_parts() if part.get_filename())

            def do_GET(self) -> None:
                api.calls.append(f"GET {self.path}")
                path = self.path.split("?")[0]
                if (match := re.fullmatch(r"/v1/batches/([\w-]+)", path)) and match.group(1) in api.batches:
                    self._send(200, json.dumps(api.retrieve_batch(match.group(1))).encode())
                elif match:  # as OpenAI answers an unknown batch id
                    self._send(
                        404, json.dumps({"error": {"message": f"No batch found with id '{match.group(1)}'."}}).encode()
                    )
                elif match := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                    self._send(200, api.files[match.group(1)], "application/octet-stream")
                else:
                    self._send(404, b'{"error": {"message": "not served"}}')

        return Handler
