"""The OpenAI Batch API: write the uncached requests as input files, submit them, collect the answers into the cache.

The same files are the input of `vllm run-batch`, the self-hosted way to run such a job on GPUs.
"""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from openai.types.chat import ChatCompletion

from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.llm.cache import cache_key
from ko_radiology.llm.config import LLMRequest
from ko_radiology.llm.data_use import redact_url
from ko_radiology.llm.errors import BatchApiError, TransientError
from ko_radiology.llm.transport import HINTS, completion_of, sync_sdk

BATCH_ENDPOINT = "/v1/chat/completions"


@contextmanager
def batch_api_errors(endpoint: str, action: str, hints: dict[int, str]) -> Iterator[None]:
    """The SDK's errors as one `BatchApiError` line: `action` failed at `endpoint`, why, and the fix (`hints` by
    status, then the chat path's `HINTS`)."""
    try:
        yield
    except BatchApiError:
        raise
    except openai.APIConnectionError as exc:  # also a timeout
        cause = exc.__cause__ or exc
        raise BatchApiError(
            f"{action}: {endpoint} could not be reached ({type(cause).__name__}: {cause}); check --base-url and "
            "that the server is up, then run the same command again."
        ) from None
    except openai.APIStatusError as exc:
        answer = " ".join(exc.response.text.split())[:300]
        hint = hints.get(exc.status_code) or HINTS.get(exc.status_code, "the endpoint refused the request")
        raise BatchApiError(f"{action}: {endpoint} answered HTTP {exc.status_code}: {answer} ({hint}).") from None
    except (openai.APIError, ValueError) as exc:  # a 200 that is not the Batch API's JSON
        cause = " ".join(str(exc).split())[:300]
        raise BatchApiError(
            f"{action}: {endpoint} did not answer as OpenAI's Batch API does ({type(exc).__name__}: {cause}); "
            "check --base-url."
        ) from None


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
        and renamed, so a crash never leaves a half file that looks complete. The files hold report text, so they are
        private like the cache: 0600 (as `write_text_atomically`'s temporary files are) in a 0700 folder.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            write_text_atomically(path, "".join(line + "\n" for line in lines[start : start + max_requests_per_file]))
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
        """Upload one input file and start a batch; returns the batch id to pass to `fetch_batch`.

        Raises:
            BatchApiError: If the endpoint cannot be reached, or refuses the upload or the batch.
        """
        client, headers = sync_sdk(self.config)
        endpoint = redact_url(self.config.base_url)
        hints = {
            400: f"check that {path} is a Batch input file written by `build --batch-dir`",
            404: "this endpoint serves no Files and Batch API; check --base-url (OpenAI's ends in /v1)",
        }
        with client, Path(path).open("rb") as handle, batch_api_errors(endpoint, f"submitting {path}", hints):
            uploaded = client.files.create(file=handle, purpose="batch", extra_headers=headers)
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint=BATCH_ENDPOINT,
                completion_window=completion_window,
                extra_headers=headers,
            )
        return batch.id

    def fetch_batch(self, batch_id: str, out_dir: str | Path) -> Path | None:
        """Download a finished batch's output (and error file) into `out_dir`, private like the input files; None
        while it is still running.

        Raises:
            BatchApiError: If the endpoint cannot be reached, knows no such batch, or the batch ended without output.
        """
        client, headers = sync_sdk(self.config)
        endpoint = redact_url(self.config.base_url)
        hints = {404: "no such batch or output there; pass the id `batch submit` printed, with its --base-url"}
        out_dir = Path(out_dir)
        with client, batch_api_errors(endpoint, f"collecting batch {batch_id}", hints):
            batch = client.batches.retrieve(batch_id, extra_headers=headers)
            if batch.status in ("failed", "expired", "cancelled"):
                errors = " ".join(str(batch.errors).split())[:300]
                raise BatchApiError(
                    f"batch {batch_id} at {endpoint} ended with status {batch.status} ({errors}); submit its file "
                    "again, after fixing what the errors name."
                )
            if batch.status != "completed":
                return None
            out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            errors = out_dir / f"{batch_id}-errors.jsonl"
            if batch.error_file_id:
                write_text_atomically(errors, client.files.content(batch.error_file_id, extra_headers=headers).text)
            if not batch.output_file_id:
                raise BatchApiError(f"batch {batch_id} at {endpoint} completed without output; see {errors}.")
            output = out_dir / f"{batch_id}-output.jsonl"
            write_text_atomically(output, client.files.content(batch.output_file_id, extra_headers=headers).text)
        return output
