"""Which split each study belongs to: a shipped `splits.json`, MIMIC-CXR's official split file, or a stable hash.

Splits go by patient wherever the patient is known, so a patient's serial studies never straddle train and test.
"""

import csv
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SPLIT_NAMES = ("train", "validation", "test")
MIMIC_SPLIT_FILES = ("mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-split.csv")
HASH_SPLIT_SHARES = {"train": 0.9, "validation": 0.05, "test": 0.05}
SPLIT_SOURCES = ("splits.json", "mimic-official", "hash")
"""Where a build's splits came from, recorded in its summary so the card can say which one it used."""


@dataclass(frozen=True)
class SplitAssignments:
    """study_id → split, and where that came from (one of `SPLIT_SOURCES`); studies not listed go by a hash."""

    source: str
    by_study: dict[str, str]


def load_split_assignments(data_dir: Path) -> SplitAssignments:
    """The split listed in `splits.json` or the MIMIC split file in `data_dir`; an empty `hash` one if neither."""
    splits_json = Path(data_dir) / "splits.json"
    if splits_json.is_file():
        listed = json.loads(splits_json.read_text())
        by_study = {study: split for split in SPLIT_NAMES for study in listed.get(split, [])}
        return SplitAssignments("splits.json", by_study)
    for name in MIMIC_SPLIT_FILES:
        path = Path(data_dir) / name
        if path.is_file():
            return SplitAssignments("mimic-official", _read_mimic_split(path))
    return SplitAssignments("hash", {})


def _read_mimic_split(path: Path) -> dict[str, str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return {
            f"s{row['study_id']}": "validation" if row["split"] == "validate" else row["split"]
            for row in csv.DictReader(handle)
        }


def hash_split(key: str) -> str:
    """A split that never changes for a key (patient id, else study id), whatever else is in the corpus."""
    position = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    cumulative = 0.0
    for split, share in HASH_SPLIT_SHARES.items():
        cumulative += share
        if position <= cumulative:
            return split
    return SPLIT_NAMES[-1]


def split_of(study_id: str, patient_id: str, assignments: SplitAssignments) -> str:
    return assignments.by_study.get(study_id) or hash_split(patient_id or study_id)
