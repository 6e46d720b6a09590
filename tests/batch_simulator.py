"""OpenAI's Batch API, played by a local server: each input line is answered and written in the output format."""

import json
from pathlib import Path

import httpx


def simulate_openai_batch(input_path: Path, output_path: Path, tiny_server) -> None:
    """Answer each Batch input line with the real server and write OpenAI's output format, plus one failed line."""
    lines = []
    for number, line in enumerate(input_path.read_text().splitlines()):
        row = json.loads(line)
        answer = httpx.post(f"{tiny_server.base_url}/chat/completions", json=row["body"], timeout=60)
        response = {"status_code": answer.status_code, "request_id": f"req_{number}", "body": answer.json()}
        lines.append({"id": f"batch_req_{number}", "custom_id": row["custom_id"], "response": response, "error": None})
    failed = {"code": "server_error", "message": "boom"}
    lines.append({"id": "batch_req_x", "custom_id": "f" * 64, "response": None, "error": failed})
    output_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
