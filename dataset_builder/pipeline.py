"""Raw reports → notes → translations → QA, for one build: the stages the builder's configs share.

Translations are memoised per study, so building `translation` and `qa` in one run translates once; across runs the
LLM client's cache plays that role.
"""

import dataclasses
from collections import Counter
from pathlib import Path

from dataset_builder.generate_qa import GoldQAGenerator, LLMQAGenerator
from dataset_builder.options import BuildEndpoint, BuildOptions
from dataset_builder.provenance import build_provenance, endpoint_class
from dataset_builder.sources import InputError, RawReport, ReportSource
from dataset_builder.translate import GoldTranslator, HFTranslator, lost_section_reason, translation_record
from ko_radiology.glossary import DEFAULT_GLOSSARY, Glossary
from ko_radiology.llm import LLMClient, LLMRequest
from ko_radiology.llm.completer import ChatCompleter
from ko_radiology.sections import SECTION_NAMES, parse_report
from ko_radiology.splits import load_split_assignments, split_of
from ko_radiology.translation import LLMTranslator

CONFIG_KEYS = {"notes": "study_id", "translation": "study_id", "qa": "id"}
"""The field that identifies a row of each config."""
RESUME_HINT = (
    "Nothing in the build folder was replaced; fix the endpoint and run the same command again (answered calls are "
    "cached)."
)
"""How a build stage whose calls all failed ends its error (`StageFailedError`): the build stops before replacing
anything."""
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
    """Owns the backends of one build, its LLM client, and counts what happened (skips, flags, rejections)."""

    def __init__(self, options: BuildOptions, endpoint: BuildEndpoint | None = None):
        """`endpoint` configures the client that stages with the `llm` backend create when first needed."""
        self.options = options
        self.endpoint = endpoint or BuildEndpoint()
        self.source = ReportSource(
            Path(options.data_dir),
            input_format=options.input_format,
            id_column=options.id_column,
            text_column=options.text_column,
            patient_column=options.patient_column,
            encoding=options.encoding,
            max_report_chars=options.max_report_chars,
        )
        self.provenance = build_provenance(self.source, self.endpoint.data_provenance)
        self.glossary = Glossary.from_tsv(Path(options.glossary) if options.glossary else DEFAULT_GLOSSARY)
        self.counts: Counter = Counter()
        self.split_source: str | None = None
        self._client: LLMClient | None = None
        self._notes: dict[str, list[dict]] | None = None
        self._translations: dict[str, dict] = {}
        self._untranslatable: set[str] = set()
        self._translator = None
        self._generator = None

    @property
    def llm_stages(self) -> list[str]:
        """The stages of this build that call the endpoint."""
        configs, options = self.options.config_names, self.options
        stages = ["translation"] if {"translation", "qa"} & set(configs) and options.translator == "llm" else []
        return stages + (["qa"] if "qa" in configs and options.generator == "llm" else [])

    @property
    def client(self) -> LLMClient | None:
        """The build's LLM client (None when no stage needs one), created on first use with the data's provenance,
        so the data-use guard and the cache check run before any work."""
        if self._client is None and self.llm_stages:
            self._client = LLMClient(
                self.endpoint.client_config(self.options.out_dir, data_provenance=self.provenance)
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def notes_by_split(self) -> dict[str, list[dict]]:
        """Parsed notes grouped by split; read once per build."""
        if self._notes is None:
            assignments = load_split_assignments(self.source.data_dir)
            self.split_source = assignments.source
            self._notes = {}
            for index, report in enumerate(self.source.read()):
                if self.options.limit is not None and index >= self.options.limit:
                    break
                note = note_record(report)
                self.counts.update(f"parse_flag:{flag.split(':')[0]}" for flag in note["parse_flags"])
                split = split_of(report.study_id, report.patient_id, assignments)
                self._notes.setdefault(split, []).append(note)
            self.counts.update(f"skipped:{item.kind}" for item in self.source.skipped)
            if not self._notes:
                reasons = "; ".join(f"{item.source}: {item.reason}" for item in self.source.skipped[:3])
                raise InputError(f"No usable report in {self.source.path} ({reasons or 'no .txt files'}).")
        return self._notes

    def records(self, config_name: str, split: str) -> list[dict]:
        """The rows of one config and split."""
        notes = self.notes_by_split().get(split, [])
        if config_name == "notes":
            return notes
        if config_name == "translation":
            return self.translations(notes)
        return self.qa(notes, split)

    def translation_requests(self) -> list[LLMRequest]:
        """Every translation request of the build, known before anything is sent (unlike QA's, which need the
        Korean): for a dry run and for Batch API files."""
        return self.translator.requests([note for notes in self.notes_by_split().values() for note in notes])

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
        """QA rows; a report whose translation lost a section gets none (its Korean report is cut), counted."""
        translations = self.translations(notes)
        self.counts.update(f"qa_skipped:{reason}" for t in translations if (reason := lost_section_reason(t)))
        records = self.generator.generate(translations, split)
        self.counts["qa_records"] += len(records)
        return records

    def check_backends(self) -> None:
        """Set up the client and the backends the configs need now, so a missing file, a refused endpoint or an
        unusable cache fails before any work."""
        _ = self.client
        if {"translation", "qa"} & set(self.options.config_names):
            _ = self.translator
        if "qa" in self.options.config_names:
            _ = self.generator

    def _translatable(self, note: dict) -> bool:
        if any(note[name] for name in SECTION_NAMES):
            return True
        if note["study_id"] not in self._untranslatable:  # counted once, however many configs ask
            self._untranslatable.add(note["study_id"])
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
                self._translator = LLMTranslator(self._completer("translation", temperature=0.0), self.glossary)
        return self._translator

    @property
    def generator(self):
        if self._generator is None:
            options = self.options
            if options.generator == "gold":
                self._generator = GoldQAGenerator(self.source.path)
            else:
                self._generator = LLMQAGenerator(
                    self._completer("qa", temperature=options.generation_temperature, seed=options.seed),
                    options.weights,
                    options.tasks_per_report,
                    options.seed,
                    options.near_duplicate_threshold,
                )
        return self._generator

    def rejected(self) -> Counter:
        return self._generator.rejected if self._generator else Counter()

    def build_info(self) -> dict:
        """What this build was made from and how, for the summary and the dataset card."""
        info = {
            "provenance": self.provenance,
            "input_format": self.source.resolved_format(),
            "split_source": self.split_source,
            "configs": self.options.config_names,
        }
        stages = {"translation": self._translator, "qa": self._generator}
        for stage, backend in stages.items():
            if backend is not None:
                endpoint = endpoint_class(self.client.config) if stage in self.llm_stages else None
                info[stage] = {"backend": backend.backend, "model": backend.model, "endpoint": endpoint}
        return info

    def summary(self) -> dict:
        """Counts, rejections, skipped inputs, provenance and (with a client) the cost ledger, for `summary.json`."""
        summary = {
            "build": self.build_info(),
            "counts": dict(sorted(self.counts.items())),
            "qa_rejected": dict(sorted(self.rejected().items())),
            "skipped": [dataclasses.asdict(item) for item in self.source.skipped],
        }
        if self._client is not None:
            summary["ledger_this_run"] = [dataclasses.asdict(row) for row in self._client.ledger(run_only=True).rows]
            summary["ledger_all_runs"] = [dataclasses.asdict(row) for row in self._client.ledger().rows]
        return summary

    def _completer(self, stage: str, temperature: float, seed: int | None = None) -> ChatCompleter:
        options = self.options
        return ChatCompleter(self.client, options.max_tokens, temperature, seed, self.counts, stage, RESUME_HINT)
