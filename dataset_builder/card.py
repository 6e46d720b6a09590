"""The dataset card of a build: Hub metadata and a body rendered from `dataset_card.md`, every sentence chosen by
what the build's `summary.json` records (provenance, backends, endpoint class, split source).

A card without a recorded provenance (a build from an older version) is written as credentialed: the safe default.
"""

from pathlib import Path

import datasets
import yaml
from jinja2 import Template

from dataset_builder.provenance import MIMIC_CXR, SYNTHETIC, USER
from ko_radiology.llm.data_use import is_credentialed

CARD_TEMPLATE = Path(__file__).with_name("dataset_card.md")
PHYSIONET_GATING = {
    "extra_gated_heading": "Access Ko-CXR-QA (derived from credentialed health data)",
    "extra_gated_prompt": (
        "This dataset is derived from credentialed health data (MIMIC-CXR, which PhysioNet distributes under its "
        "Credentialed Health Data License and Data Use Agreement, or reports its builder treats the same way). "
        "Request access only if you are a credentialed PhysioNet user who has signed the MIMIC-CXR data use "
        "agreement. You agree not to re-identify anyone, not to share the data, and not to send it to any service "
        "that retains it, trains on it or lets people review it (PhysioNet's guidance on responsible use of MIMIC "
        "data with online services such as GPT)."
    ),
    "extra_gated_fields": {
        "PhysioNet username": "text",
        "I am a credentialed PhysioNet user and signed the MIMIC-CXR data use agreement": "checkbox",
        "I will not share this data or send it to services that retain it": "checkbox",
    },
    "extra_gated_button_content": "Request access",
}
LICENSES = {
    SYNTHETIC: {"license": "cc-by-4.0"},
    MIMIC_CXR: {
        "license": "other",
        "license_name": "physionet-credentialed-health-data-1.5.0",
        "license_link": "https://physionet.org/content/mimic-cxr/view-license/2.1.0/",
    },
}
SOURCE_TAGS = {SYNTHETIC: ["synthetic"], MIMIC_CXR: ["mimic-cxr"]}
"""Reports of unknown origin get neither tag: the builder cannot say they are MIMIC-CXR."""
SOURCE_DATASETS = {SYNTHETIC: ["original"], MIMIC_CXR: ["extended|mimic-cxr"], USER: ["extended"]}
ENDPOINT_SENTENCES = {
    "loopback": "a model served on the build machine itself (loopback), so no report left it",
    "allowed-host": "a self-hosted endpoint on a host the builder listed with --allowed-hosts",
    "remote-no-retention": (
        "a remote endpoint the builder confirmed retains no data, trains on none and allows no human review "
        "(--no-retention-confirmed)"
    ),
    "remote": "a remote endpoint (the input is synthetic, so no retention rule applied)",
}
GENERATED = ("llm", "hf")
"""Backends whose output is machine-generated; `gold` is hand-written."""


def type_name(feature) -> str:
    """A feature as the type a reader (and the Hub viewer) knows: `string`, `list<string>`, `struct<...>`."""
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        return f"list<{type_name(feature.feature)}>"
    if isinstance(feature, dict):
        return "struct<" + ", ".join(f"{name}: {type_name(inner)}" for name, inner in feature.items()) + ">"
    raise TypeError(f"no type name for {feature!r}")


def build_facts(summary: dict) -> dict:
    """What the card says about the build, from its summary; an unrecorded provenance counts as credentialed."""
    build = summary.get("build", {})
    provenance = build.get("provenance")
    stages = {stage: build[stage] for stage in ("translation", "qa") if build.get(stage)}
    return {
        "provenance": provenance if provenance in SOURCE_DATASETS else USER,
        "credentialed": is_credentialed(provenance),
        "stages": stages,
        "machine_generated": any(stage["backend"] in GENERATED for stage in stages.values()),
        "hand_written": [name for name, stage in stages.items() if stage["backend"] == "gold"],
        "endpoints": {
            stage: ENDPOINT_SENTENCES[info["endpoint"]] for stage, info in stages.items() if info.get("endpoint")
        },
        "split_source": build.get("split_source"),
    }


def card_metadata(configs: dict[str, datasets.DatasetDict], facts: dict, pretty_name: str) -> dict:
    """The YAML front matter the Hub reads: license, creators, tasks, sizes, configs and (credentialed) gating."""
    stages = facts["stages"]
    korean_by_machine = stages.get("translation", {}).get("backend") in GENERATED
    main_config = next(iter(configs.values()))
    languages = (["ko"] if {"translation", "qa"} & set(configs) else []) + (["en"] if configs.keys() - {"qa"} else [])
    return {
        "pretty_name": pretty_name,
        "language": languages,
        **LICENSES.get(facts["provenance"], LICENSES[MIMIC_CXR]),
        "source_datasets": SOURCE_DATASETS[facts["provenance"]],
        "language_creators": ["found" if facts["provenance"] == MIMIC_CXR else "other"]
        + (["machine-generated"] if korean_by_machine else []),
        "annotations_creators": ["machine-generated" if facts["machine_generated"] else "other"],
        "multilinguality": [_multilinguality(configs, languages)],
        **_tasks(configs),
        "tags": ["medical", "radiology", "chest-x-ray"]
        + (["korean"] if "ko" in languages else [])
        + SOURCE_TAGS.get(facts["provenance"], []),
        "size_categories": [_size_category(sum(d.num_rows for d in (configs.get("qa") or main_config).values()))],
        **(PHYSIONET_GATING if facts["credentialed"] else {}),
        "configs": [
            {
                "config_name": name,
                "default": name == "qa",
                "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split in dataset],
            }
            for name, dataset in configs.items()
        ],
    }


def _multilinguality(configs: dict, languages: list[str]) -> str:
    if "translation" in configs:
        return "translation"
    return "multilingual" if len(languages) > 1 else "monolingual"


def _tasks(configs: dict) -> dict:
    """Task metadata for the configs the release holds (a notes-only release claims no QA or translation)."""
    categories = (["question-answering", "text-generation"] if "qa" in configs else []) + (
        ["translation"] if "translation" in configs else []
    )
    ids = ["closed-domain-qa", "abstractive-qa"] if "qa" in configs else []
    return {**({"task_categories": categories} if categories else {}), **({"task_ids": ids} if ids else {})}


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "1M<n<10M"


def render_card(configs: dict[str, datasets.DatasetDict], summary: dict, repo_id: str, pretty_name: str) -> str:
    facts = build_facts(summary)
    body = Template(CARD_TEMPLATE.read_text(encoding="utf-8")).render(
        repo_id=repo_id,
        counts={name: {split: d.num_rows for split, d in dataset.items()} for name, dataset in configs.items()},
        types={
            name: {field: type_name(feature) for field, feature in next(iter(dataset.values())).features.items()}
            for name, dataset in configs.items()
        },
        summary=summary,
        **facts,
    )
    front_matter = yaml.safe_dump(card_metadata(configs, facts, pretty_name), allow_unicode=True, sort_keys=False)
    return f"---\n{front_matter}---\n\n{body}"


def read_card_metadata(readme: Path) -> dict:
    """The front matter of a card written by `render_card` (what `push` checks before anything is sent)."""
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    try:
        metadata = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 2}: " if mark else ""  # the mark counts from 0, after the opening ---
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(
            f"{readme}'s front matter is not valid YAML ({where}{problem}); fix it, or run "
            "`python -m dataset_builder export` again."
        ) from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{readme}'s front matter is not a mapping; run `python -m dataset_builder export` again.")
    return metadata


def card_contradictions(metadata: dict, provenance: str) -> list[str]:
    """Where a card's front matter says less than a credentialed build's provenance requires (its license, its
    sources, its gating form): `push` refuses such a card, whatever was edited in it."""
    if not is_credentialed(provenance):
        return []
    expected = {
        "license": LICENSES.get(provenance, LICENSES[MIMIC_CXR])["license"],
        "source_datasets": SOURCE_DATASETS.get(provenance, SOURCE_DATASETS[USER]),
    }
    problems = [
        f"{key}: {metadata.get(key)!r} (expected {value!r})"
        for key, value in expected.items()
        if metadata.get(key) != value
    ]
    if not metadata.get("extra_gated_prompt"):
        problems.append("no gating form (extra_gated_prompt)")
    return problems
