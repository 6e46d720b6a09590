"""The OpenAI Batch API: write the uncached requests as input files, submit them, collect the answers into the cache.

The same files are the input of `vllm run-batch`, the self-hosted way to run such a job on GPUs.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openai.types.chat import ChatCompletion

from ko_radiology.llm.cache import cache_key
from ko_radiology.llm.config import LLMRequest
from ko_radiology.llm.errors import LLMClientError, TransientError
from ko_radiology.llm.transport import completion_of, sync_sdk

BATCH_ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchFiles:
    paths: list[Path]
    written: int
    skipped_cached: int
    skipped_duplicates: int


@dataclass(frozen=True)
class BatchIngestReport:
    stored: int
    already_cached: int
    failures: list[str]


class BatchMixin:
    """The Batch API half of `LLMClient`: it shares the client's config, request bodies and cache (`self.config`,
    `self.request_body`, `self.store`), so a batch answer and a live answer to the same request are one cache row."""

    def write_batch_jsonl(
        self, requests: Sequence[LLMRequest], out_dir: str | Path, max_requests_per_file: int = 50_000
    ) -> BatchFiles:
        """Write Batch API input files (custom_id = cache key), skipping cached and duplicate requests.

        OpenAI takes at most 50,000 requests per file, hence the split. Each file is written to a temporary name
        and renamed, so a crash never leaves a half file that looks complete.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        bodies = {}
        for request in requests:
            body = self.request_body(request)
            bodies.setdefault(cache_key(body), body)
        in_cache = self.store.cached_keys(bodies)
        lines = [
            json.dumps({"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}, ensure_ascii=False)
            for key, body in bodies.items()
            if key not in in_cache
        ]
        paths = []
        for number, start in enumerate(range(0, len(lines), max_requests_per_file)):
            path = out_dir / f"batch-{number:04d}.jsonl"
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in lines[start : start + max_requests_per_file]), "utf-8")
            tmp.replace(path)
            paths.append(path)
        self.store.remember_batch_requests({key: bodies[key] for key in bodies if key not in in_cache})
        return BatchFiles(
            paths, len(lines), skipped_cached=len(in_cache), skipped_duplicates=len(requests) - len(bodies)
        )

    def ingest_batch_output(self, path: str | Path) -> BatchIngestReport:
        """Load a Batch API output file into the cache, so a normal run afterwards finds every answered request.

        Rows already cached are skipped (and not billed again in the ledger); errors are reported, not stored.
        """
        stored = already = 0
        failures = []
        for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            key, response = row.get("custom_id", ""), row.get("response") or {}
            if row.get("error") or response.get("status_code") != 200:
                failures.append(f"line {number} ({key[:12]}): {row.get('error') or response.get('status_code')}")
                continue
            if self.store.get(key) is not None:
                already += 1
                continue
            try:
                completion = completion_of(ChatCompletion.construct(**response["body"]), wants_json=False)
            except (TransientError, TypeError) as exc:
                failures.append(f"line {number} ({key[:12]}): {exc}")
                continue
            cost = self.config.cost_usd(
                completion.input_tokens, completion.output_tokens, self.config.batch_price_factor
            )
            body = self.store.batch_request(key) or {"model": self.config.model, "custom_id": key}
            stored += self.store.save(key, body, completion, "batch", cost)
        return BatchIngestReport(stored, already, failures)

    def submit_batch(self, path: str | Path, completion_window: str = "24h") -> str:
        """Upload one input file and start a batch; returns the batch id to pass to `fetch_batch`."""
        client, headers = sync_sdk(self.config)
        with client, Path(path).open("rb") as handle:
            uploaded = client.files.create(file=handle, purpose="batch", extra_headers=headers)
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint=BATCH_ENDPOINT,
                completion_window=completion_window,
                extra_headers=headers,
            )
        return batch.id

    def fetch_batch(self, batch_id: str, out_dir: str | Path) -> Path | None:
        """Download a finished batch's output (and error file) into `out_dir`; None while it is still running."""
        client, headers = sync_sdk(self.config)
        with client:
            batch = client.batches.retrieve(batch_id, extra_headers=headers)
            if batch.status in ("failed", "expired", "cancelled"):
                raise LLMClientError(f"batch {batch_id} ended with status {batch.status}: {batch.errors}")
            if batch.status != "completed":
                return None
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            if batch.error_file_id:
                errors = client.files.content(batch.error_file_id, extra_headers=headers)
                errors.write_to_file(out_dir / f"{batch_id}-errors.jsonl")
            if not batch.output_file_id:
                errors = out_dir / f"{batch_id}-errors.jsonl"
                raise LLMClientError(f"batch {batch_id} completed without output; see {errors}.")
            output = out_dir / f"{batch_id}-output.jsonl"
            client.files.content(batch.output_file_id, extra_headers=headers).write_to_file(output)
        return output
