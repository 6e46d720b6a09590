"""Raw reports → notes → translations → QA, for one build: the stages the builder's configs share.

Translations are memoised per study, so building `translation` and `qa` in one run translates once; across runs the
LLM client's cache plays that role.
"""

from collections import Counter
from pathlib import Path

from dataset_builder.generate_qa import GoldQAGenerator, LLMQAGenerator
from dataset_builder.glossary import DEFAULT_GLOSSARY, Glossary
from dataset_builder.options import BuildOptions
from dataset_builder.schemas import SECTION_NAMES
from dataset_builder.sections import parse_report
from dataset_builder.sources import RawReport, ReportSource
from dataset_builder.splits import load_split_assignments, split_of
from dataset_builder.translate import GoldTranslator, HFTranslator, LLMTranslator, translation_record
from ko_radiology.llm_client import LLMClient, LLMRequest

TRANSLATE_CHUNK = 256
"""Notes translated per batch: big enough to keep the endpoint busy, small enough to show progress and free memory."""


def note_record(report: RawReport) -> dict:
    parsed = parse_report(report.text)
    return {
        "study_id": report.study_id,
        "patient_id": report.patient_id,
        "source_path": report.source_path,
        "text": report.text,
        **{name: parsed.sections.get(name) for name in SECTION_NAMES},
        "other_sections": parsed.other_sections,
        "parse_flags": report.flags + parsed.flags,
    }


class Pipeline:
    """Owns the backends of one build and counts what happened (skips, flags, rejections) for the summary."""

    def __init__(self, options: BuildOptions, client: LLMClient | None = None):
        """`client` is the shared LLM client; only stages with the `llm` backend need one."""
        self.options = options
        self.source = ReportSource(
            Path(options.data_dir),
            input_format=options.input_format,
            id_column=options.id_column,
            text_column=options.text_column,
            patient_column=options.patient_column,
            encoding=options.encoding,
            max_report_chars=options.max_report_chars,
        )
        self.glossary = Glossary.from_tsv(Path(options.glossary) if options.glossary else DEFAULT_GLOSSARY)
        self.client = client
        self.counts: Counter = Counter()
        self._notes: dict[str, list[dict]] | None = None
        self._translations: dict[str, dict] = {}
        self._translator = None
        self._generator = None

    def notes_by_split(self) -> dict[str, list[dict]]:
        """Parsed notes grouped by split; read once per build."""
        if self._notes is None:
            data_dir = self.source.path if self.source.path.is_dir() else self.source.path.parent  # beside a CSV
            assignments = load_split_assignments(data_dir)
            self._notes = {}
            for index, report in enumerate(self.source.read()):
                if self.options.limit is not None and index >= self.options.limit:
                    break
                note = note_record(report)
                self.counts.update(f"parse_flag:{flag.split(':')[0]}" for flag in note["parse_flags"])
                split = split_of(report.study_id, report.patient_id, assignments)
                self._notes.setdefault(split, []).append(note)
            self.counts.update(f"skipped:{item.reason.split(' ')[0]}" for item in self.source.skipped)
        return self._notes

    def translations(self, notes: list[dict]) -> list[dict]:
        """Translation records for notes with at least one section (others are counted, not sent)."""
        todo = [note for note in notes if note["study_id"] not in self._translations and self._translatable(note)]
        for start in range(0, len(todo), TRANSLATE_CHUNK):
            chunk = todo[start : start + TRANSLATE_CHUNK]
            translator = self.translator
            for note, korean in zip(chunk, translator.translate(chunk), strict=True):
                record = translation_record(note, korean, translator.backend, translator.model, self.glossary)
                self.counts.update(f"translation_flag:{flag.split(':')[1]}" for flag in record["quality_flags"])
                self._translations[note["study_id"]] = record
        return [self._translations[note["study_id"]] for note in notes if note["study_id"] in self._translations]

    def qa(self, notes: list[dict], split: str) -> list[dict]:
        records = self.generator.generate(self.translations(notes), split)
        self.counts["qa_records"] += len(records)
        return records

    def check_backends(self) -> None:
        """Set up the backends the configs need now, so a missing file or endpoint fails before any work."""
        if {"translation", "qa"} & set(self.options.config_names):
            _ = self.translator
        if "qa" in self.options.config_names:
            _ = self.generator

    def _translatable(self, note: dict) -> bool:
        if any(note[name] for name in SECTION_NAMES):
            return True
        self.counts["not_translated:no_sections_found"] += 1
        return False

    @property
    def translator(self):
        if self._translator is None:
            options = self.options
            if options.translator == "gold":
                self._translator = GoldTranslator(self.source.path)
            elif options.translator == "hf":
                self._translator = HFTranslator(
                    options.hf_translation_model, options.hf_src_lang, options.hf_tgt_lang, options.max_tokens
                )
            else:
                self._translator = LLMTranslator(self._completer(temperature=0.0), self.glossary)
        return self._translator

    @property
    def generator(self):
        if self._generator is None:
            options = self.options
            if options.generator == "gold":
                self._generator = GoldQAGenerator(self.source.path)
            else:
                self._generator = LLMQAGenerator(
                    self._completer(temperature=options.generation_temperature, seed=options.seed),
                    options.weights,
                    options.tasks_per_report,
                    options.seed,
                    options.near_duplicate_threshold,
                )
        return self._generator

    def rejected(self) -> Counter:
        return self._generator.rejected if self._generator else Counter()

    def _completer(self, temperature: float, seed: int | None = None) -> "ChatCompleter":
        if self.client is None:
            raise ValueError("The llm backend needs an endpoint: pass --model and --base-url (or use --gold).")
        return ChatCompleter(self.client, self.options.max_tokens, temperature, seed, self.counts)


class ChatCompleter:
    """A stage's view of the shared client: a list of chat messages in, a list of replies out (None where a request
    failed after its retries; failures are counted, and the next run retries only them)."""

    def __init__(self, client: LLMClient, max_tokens: int, temperature: float, seed: int | None, counts: Counter):
        self.client = client
        self.model = client.config.model
        self.request_options = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        self.counts = counts

    def requests(self, conversations: list[list[dict]]) -> list[LLMRequest]:
        return [LLMRequest(messages=messages, **self.request_options) for messages in conversations]

    def __call__(self, conversations: list[list[dict]]) -> list[str | None]:
        outcome = self.client.run_many(self.requests(conversations))
        self.counts["llm_failed_requests"] += len(outcome.failures)
        return [result.text if result is not None else None for result in outcome.results]
