"""Every knob of a build, declared once with its default and help; the CLI and a YAML file both fill it."""

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.cli import EXIT_PARTIAL
from ko_radiology.llm import EndpointOptions, LLMClientConfig
from ko_radiology.llm.options import client_field
from ko_radiology.prompts import TASK_TYPES

CONFIG_NAMES = ("notes", "translation", "qa")
TRANSLATORS = ("llm", "hf", "gold")
GENERATORS = ("llm", "gold")
CACHE_FILE = "llm_cache.sqlite"
"""The LLM cache lives in the build folder: `build` reads it and `batch collect` fills it, from one `--out`."""
DEFAULT_OUT = "out/build"


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class BuildOptions:
    """What to read, which configs to build, and which backends translate and generate."""

    data_dir: str | None = field(
        default=None, metadata=_help("Folder with files/pNN/... (MIMIC-CXR), a folder of .txt, or a CSV. Required.")
    )
    out: str = field(default=DEFAULT_OUT, metadata=_help("Where the built configs and the run's state go."))
    configs: str = field(default="notes,translation,qa", metadata=_help("Comma-separated configs to build."))
    gold: bool = field(default=False, metadata=_help("Use the sample's gold translations and QA (no model)."))
    input_format: str = field(default="auto", metadata=_help("auto, mimic, csv or txt."))
    id_column: str = field(default="id", metadata=_help("CSV column with the report id."))
    text_column: str = field(default="note", metadata=_help("CSV column with the report text."))
    patient_column: str | None = field(default=None, metadata=_help("CSV column with the patient id, if any."))
    encoding: str | None = field(default=None, metadata=_help("Force an encoding instead of utf-8/cp949/latin-1."))
    max_report_chars: int = field(default=20_000, metadata=_help("Longer reports are skipped as not a report."))
    limit: int | None = field(default=None, metadata=_help("Use only the first N reports (for trial runs)."))
    translator: str = field(default="llm", metadata=_help("llm (OpenAI-compatible endpoint), hf (local MT), gold."))
    hf_translation_model: str | None = field(
        default=None, metadata=_help("Path or id of a transformers translation model (NLLB, opus-mt) for -hf.")
    )
    hf_src_lang: str | None = field(default=None, metadata=_help("Source language code, e.g. eng_Latn for NLLB."))
    hf_tgt_lang: str | None = field(default=None, metadata=_help("Target language code, e.g. kor_Hang for NLLB."))
    generator: str = field(default="llm", metadata=_help("llm or gold."))
    glossary: str | None = field(default=None, metadata=_help("Glossary TSV (default: the shipped one)."))
    task_weights: str = field(
        default="1,1,1,1", metadata=_help(f"Sampling weights of the task types, in order: {', '.join(TASK_TYPES)}.")
    )
    tasks_per_report: int = field(default=4, metadata=_help("Instructions generated per report."))
    seed: int = field(default=42, metadata=_help("Seed for few-shot and task sampling (fixed → cache hits)."))
    near_duplicate_threshold: float = field(
        default=0.7, metadata=_help("Character 3-gram Jaccard above which a question counts as a duplicate.")
    )
    max_tokens: int = field(default=512, metadata=_help("Most tokens per model reply."))
    generation_temperature: float = field(
        default=0.7, metadata=_help("Sampling temperature of QA generation (translation always uses 0).")
    )
    batch_dir: str | None = field(
        default=None,
        metadata=_help(
            "Write the uncached translation requests as OpenAI Batch API files here and stop; "
            "`python -m dataset_builder batch submit/collect` fills the cache, then run build again."
        ),
    )
    dry_run: bool = field(
        default=False, metadata=_help("Print the requests, tokens and estimated cost of the llm stages; send nothing.")
    )
    allow_partial: bool = field(
        default=False,
        metadata=_help(
            f"Exit 0 when some model calls failed after their retries. Without it such a build is saved but exits "
            f"{EXIT_PARTIAL}; the same command again retries only the failed calls (answered ones are cached)."
        ),
    )

    def __post_init__(self):
        if not self.data_dir:
            raise ValueError("--data-dir is required (or data_dir in --config): the folder or CSV of your reports.")
        unknown = set(self.config_names) - set(CONFIG_NAMES)
        if unknown:
            raise ValueError(f"--configs has unknown {sorted(unknown)}; choose from {', '.join(CONFIG_NAMES)}.")
        if self.gold:
            self.translator, self.generator = "gold", "gold"
        if self.translator not in TRANSLATORS:
            raise ValueError(f"--translator {self.translator!r} is not one of {', '.join(TRANSLATORS)}.")
        if self.generator not in GENERATORS:
            raise ValueError(f"--generator {self.generator!r} is not one of {', '.join(GENERATORS)}.")
        if self.translator == "hf" and not self.hf_translation_model:
            raise ValueError("--translator hf needs --hf-translation-model (a path or id, e.g. an NLLB model).")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"--encoding {self.encoding!r} is not an encoding Python knows (cp1252?).") from None
        for name in ("limit", "tasks_per_report", "max_tokens", "max_report_chars"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        weights = self.weights
        if len(weights) != len(TASK_TYPES) or any(w < 0 for w in weights) or not any(weights):
            raise ValueError(
                f"--task-weights {self.task_weights!r} needs {len(TASK_TYPES)} non-negative numbers, not all zero "
                f"({', '.join(TASK_TYPES)})."
            )

    @property
    def config_names(self) -> list[str]:
        return [name.strip() for name in self.configs.split(",") if name.strip()]

    @property
    def weights(self) -> list[float]:
        try:
            return [float(weight) for weight in self.task_weights.split(",")]
        except ValueError as error:
            raise ValueError(f"--task-weights {self.task_weights!r}: {error}") from None

    @property
    def out_dir(self) -> Path:
        return Path(self.out)


@dataclass(frozen=True)
class BuildEndpoint(EndpointOptions):
    """The endpoint flags of `build` and `batch`: the model (needed only by the llm backends; gold and notes-only
    builds call none) and its URL, then every client option, with the cache inside the build folder unless given."""

    model: str | None = field(default=None, metadata=_help("Model name the endpoint serves (the llm backends)."))
    base_url: str = client_field("base_url")

    def client_config(self, out_dir: str | Path = DEFAULT_OUT, **fixed) -> LLMClientConfig:
        """The client's config, its cache `OUT/llm_cache.sqlite` unless `--cache-path` names another."""
        if not self.model:
            raise ValueError(
                "The llm backend needs --model (the name your endpoint serves) and --base-url; or --gold."
            )
        cache_path = self.cache_path or str(Path(out_dir) / CACHE_FILE)
        return super().client_config(model=self.model, base_url=self.base_url, cache_path=cache_path, **fixed)
