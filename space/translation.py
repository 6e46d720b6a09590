"""English report → Korean with the translator the dataset builder uses (`ko_radiology.translation`), so the Space
reads reports the way the training data was written (same prompt, same glossary, section by section).

The client's response cache lives in memory (`:memory:`): a visitor's report is never written to disk.
"""

import os
from collections import Counter
from functools import cached_property

from ko_radiology.glossary import Glossary
from ko_radiology.llm import EndpointOptions, LLMClient
from ko_radiology.llm.completer import ChatCompleter
from ko_radiology.translation import LLMTranslator
from space.backends import BackendError
from space.report import Report

TRANSLATION_MAX_TOKENS = 1024
"""Per section; the longest sample section is a few hundred tokens in Korean."""


class ReportTranslator:
    """One OpenAI-compatible endpoint chosen by the operator. A pasted report may be credentialed data, so the
    builder's PhysioNet guard applies: loopback, or hosts the operator runs (`allowed_hosts`); others are refused and
    the visitor is told the report went untranslated."""

    def __init__(self, endpoint: str, model: str, timeout_s: float, allowed_hosts: list[str] | None = None):
        options = EndpointOptions(
            api_key_env="HF_TOKEN" if os.environ.get("HF_TOKEN") else None,
            allowed_hosts=allowed_hosts or [],
            max_retries=1,
            timeout_s=timeout_s,
            show_progress=False,
        )
        self.config = options.client_config(model=model, base_url=endpoint, cache_path=":memory:")

    @cached_property
    def glossary(self) -> Glossary:
        return Glossary.from_tsv()

    def translate(self, report: Report) -> Report:
        """The Korean report, section by section; an unlabelled report is translated as one findings block.

        Raises:
            BackendError: If any section came back empty (endpoint down, refusing or timing out).
        """
        note = {"study_id": "space", **(report.sections or {"findings": report.text.strip()})}
        try:
            with LLMClient(self.config) as client:
                completer = ChatCompleter(client, TRANSLATION_MAX_TOKENS, temperature=0.0, seed=None, counts=Counter())
                korean = LLMTranslator(completer, self.glossary).translate([note])[0]
        except Exception as error:  # the client's own errors, a refused key: the visitor still gets an answer
            raise BackendError(f"{type(error).__name__}: {error}") from error
        if not all(korean.values()):
            raise BackendError("the translation endpoint returned no text for some sections")
        return Report("", "ko", korean)
