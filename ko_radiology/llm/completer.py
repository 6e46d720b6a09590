"""A pipeline stage's view of the client: a list of chat conversations in, a list of replies out."""

from collections import Counter

from ko_radiology.llm.client import LLMClient, RunManyOutcome
from ko_radiology.llm.config import LLMRequest
from ko_radiology.llm.data_use import redact_url


class StageFailedError(ValueError):
    """Every call of one stage failed: the endpoint is down or refuses. Answered calls are cached, so the same
    command resumes."""


class ChatCompleter:
    """Conversations in, replies out (None where a request failed after its retries; failures are counted in
    `counts["llm_failed_requests"]`, and the next run retries only them)."""

    def __init__(
        self,
        client: LLMClient,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        counts: Counter,
        stage: str = "llm calls",
        failure_hint: str = "",
    ):
        """`stage` names the calls in the progress bar and in the error when all of them fail; `failure_hint` ends
        that error (what the caller's user should do)."""
        self.stage = stage
        self.client = client
        self.model = client.config.model
        self.request_options = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        self.counts = counts
        self.failure_hint = failure_hint

    def requests(self, conversations: list[list[dict]]) -> list[LLMRequest]:
        return [LLMRequest(messages=messages, **self.request_options) for messages in conversations]

    def __call__(self, conversations: list[list[dict]]) -> list[str | None]:
        """The reply text of each conversation, in order.

        Raises:
            StageFailedError: If every request failed.
        """
        outcome = self.client.run_many(self.requests(conversations), desc=self.stage)
        self.counts["llm_failed_requests"] += len(outcome.failures)
        if outcome.failures and len(outcome.failures) == len(conversations):
            raise StageFailedError(self._all_failed(outcome))
        return [result.text if result is not None else None for result in outcome.results]

    def _all_failed(self, outcome: RunManyOutcome) -> str:
        cause = " ".join(outcome.failures[0].error.split())[:300].rstrip(".")
        return (
            f"{self.stage}: all {len(outcome.failures)} requests to {redact_url(self.client.config.base_url)} "
            f"failed; first cause: {cause}. {self.failure_hint}"
        ).rstrip()
