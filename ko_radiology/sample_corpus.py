"""The shipped sample corpus (`sample/`, see its README) and its gold annotations: hand-written Korean translations
and QA.

The builder's `--gold` builds read these instead of calling a model, so the whole pipeline runs offline on the sample;
the Space takes its examples and the judge calibration its reports from them.
"""

import json
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "sample"


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def gold_path(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / "gold" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"--gold needs {path}, which only the shipped sample has ({SAMPLE_DIR}). "
            "For your own data drop --gold and pass an endpoint (--base-url) instead."
        )
    return path


def load_gold_translations(data_dir: Path) -> dict[str, dict[str, str]]:
    """study_id → {section name → Korean text}."""
    return {row["study_id"]: row["sections"] for row in read_jsonl(gold_path(data_dir, "translations.jsonl"))}


def load_gold_qa(data_dir: Path) -> dict[str, list[dict]]:
    """study_id → its gold QA records, in file order."""
    by_study: dict[str, list[dict]] = {}
    for row in read_jsonl(gold_path(data_dir, "qa.jsonl")):
        by_study.setdefault(row["study_id"], []).append(row)
    return by_study
