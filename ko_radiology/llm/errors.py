"""Errors the client raises on purpose, and the transient failure of one attempt that its retry loop handles."""

from ko_radiology.llm.cache import Completion


class LLMClientError(Exception):
    """Base class of the errors this module raises on purpose."""


class NonRetryableError(LLMClientError):
    """The endpoint refused the call in a way a retry cannot fix (400, 401, 403, 404, 422)."""

    def __init__(self, message: str, status_code: int | None = None, fatal: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.fatal = fatal
        """Every later call would fail the same way (wrong key, no access, wrong URL or model): send none."""


class BatchApiError(LLMClientError, ValueError):
    """A Batch API call failed; the message names the endpoint, the batch or file, and the fix. A ValueError, so CLIs
    print one line."""


class RetriesExhaustedError(LLMClientError):
    """Every attempt failed with a transient cause; the message names the endpoint and the last cause."""


class StreamError(LLMClientError):
    """A streamed answer failed: no connection, an HTTP error, a stream that broke off or carried no text at all."""


class TransientError(Exception):
    """One failed attempt worth retrying; `billed` carries usage when the endpoint did the work (invalid JSON)."""

    def __init__(self, cause: str, retry_after: float | None = None, billed: "Completion | None" = None):
        super().__init__(cause)
        self.retry_after = retry_after
        self.billed = billed
