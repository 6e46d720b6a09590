"""Several datasets mixed into one training split, declared in a recipe as the alignment-handbook declares them.

```yaml
dataset_mixture:
  datasets:
    - id: out/hub                  # first: the project's qa dataset; validation comes from it
      config: qa
      split: train
      weight: 1.0
    - id: data/aihub-medical-qa.jsonl   # a plain instruction/answer file (training/instruction_files.py)
      columns: {question: instruction, output: answer}
      weight: 0.3
  seed: 0
```

Each entry is a folder from `python -m dataset_builder export`, a Hub id or a `.jsonl`/`.csv` file. As in the
handbook, `weight` is the fraction of the entry's rows drawn (its split shuffled with `seed`, the first
`int(rows * weight)` kept), and the drawn rows are concatenated and shuffled. Unlike the handbook, no `test_split_size`
carves a validation set out of the mixed rows: that would put questions about one report on both sides, and mixed-in
corpora in the validation loss. The validation split is the first entry's `dataset_test_split` (`validation`), the
same rows a run with `dataset_name` validates on. What was drawn from each entry is printed and goes to the model card.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets

from ko_radiology.dataset_folders import dataset_label, load_splits
from ko_radiology.model_loading import looks_like_local_path
from training.instruction_files import FILE_TYPES, TARGETS, read_instruction_file, to_qa_shape

FILE_SPLIT = "train"
"""A file's rows are one split, named as `datasets` names the split of a JSON or CSV file."""


@dataclass
class DatasetConfig:
    """One dataset of a mixture: the handbook's `DatasetConfig`, whose `columns` may also rename.

    Args:
        id (`str`):
            A folder from `python -m dataset_builder export`, a Hub dataset id, or a `.jsonl`/`.csv` file of
            instruction/answer rows.
        config (`str`, *optional*, defaults to `"qa"`):
            The dataset config to load; a file has none.
        split (`str`, *optional*, defaults to `"train"`):
            The split drawn from; a file is one split, `train`.
        columns (`dict[str, str]` or `list[str]`, *optional*):
            `{source column: qa column}` for columns named otherwise (`{question: instruction, output: answer}`;
            qa columns: `report_ko`, `instruction`, `input`, `answer`), or, as in the handbook, a list of columns
            already named so. A column named as a qa column needs no entry.
        weight (`float`, *optional*, defaults to `1.0`):
            The fraction of the split's rows drawn, in (0, 1].
    """

    id: str
    config: str = "qa"
    split: str = "train"
    columns: dict[str, str] | None = None
    weight: float = 1.0

    @property
    def is_file(self) -> bool:
        return Path(self.id).expanduser().is_file()


def entry_label(index: int, dataset_id: str) -> str:
    """How an error or a log line names an entry: by its place in the recipe and its id."""
    return f"dataset_mixture entry {index + 1} ({dataset_id})"


@dataclass
class DatasetMixtureConfig:
    """The handbook's `DatasetMixtureConfig` without `test_split_size` (validation is the first entry's)."""

    datasets: list[DatasetConfig]
    seed: int = 0


@dataclass(frozen=True)
class DrawnDataset:
    """What a mixture took from one entry, as the model card lists it."""

    dataset: str
    hub_id: str | None
    config: str | None
    split: str
    weight: float
    rows: int
    drawn: int
    with_reports: bool


def parse_mixture(raw: dict | str) -> DatasetMixtureConfig:
    """A recipe's `dataset_mixture` (a mapping, or JSON from the command line) as a checked config.

    Raises:
        ValueError: One line naming the key or the entry at fault and the fix.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"--dataset_mixture is not JSON ({error.msg}). Declare the mixture in the recipe."
            ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), list) or not raw["datasets"]:
        raise ValueError("dataset_mixture needs `datasets:`, a list of entries with an id each (training/mixture.py).")
    if "test_split_size" in raw:
        raise ValueError(
            "dataset_mixture has test_split_size: validation comes from the first entry's dataset_test_split "
            "instead (split by report, no mixed-in rows). Remove it."
        )
    check_keys(raw, {f.name for f in fields(DatasetMixtureConfig)}, "dataset_mixture")
    entries = [parse_entry(entry, index) for index, entry in enumerate(raw["datasets"])]
    mixture = DatasetMixtureConfig(**{**raw, "datasets": entries})
    if not isinstance(mixture.seed, int):
        raise ValueError(f"dataset_mixture seed must be an integer, got {mixture.seed!r}.")
    return mixture


def check_keys(mapping: dict, known: set[str], label: str) -> None:
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValueError(f"{label} has a key {unknown[0]!r}; its keys are {', '.join(sorted(known))}.")


def parse_entry(raw: dict, index: int) -> DatasetConfig:
    """One `datasets:` entry, checked: its keys, weight, columns, and that a local id exists and is a usable file."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ValueError(f"dataset_mixture entry {index + 1} has no id. Give each entry `id: FOLDER, HUB_ID or FILE`.")
    label = entry_label(index, raw["id"])
    check_keys(raw, {f.name for f in fields(DatasetConfig)}, label)
    entry = DatasetConfig(**{**raw, "columns": parse_columns(raw.get("columns"), label)})
    weight = entry.weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
        raise ValueError(f"{label} has weight {weight!r}: a weight is the fraction of its rows drawn, in (0, 1].")
    check_source(entry, label)
    return entry


def parse_columns(columns, label: str) -> dict[str, str] | None:
    """`columns` as `{source: qa column}`; the handbook's list form names columns that keep their name."""
    if columns is None:
        return None
    if isinstance(columns, list):
        columns = {name: name for name in columns}
    if not isinstance(columns, dict) or not all(isinstance(name, str) for name in [*columns, *columns.values()]):
        raise ValueError(f"{label} has columns {columns!r}: write {{source column: qa column}}.")
    wrong = [target for target in columns.values() if target not in TARGETS]
    if wrong:
        raise ValueError(f"{label} maps a column to {wrong[0]!r}, which is no qa column ({', '.join(TARGETS)}).")
    return columns


def check_source(entry: DatasetConfig, label: str) -> None:
    """A file of a known type with the one split a file has; a local folder that exists; else a Hub id."""
    path = Path(entry.id).expanduser()
    if entry.is_file or path.suffix.lower() in FILE_TYPES:
        if not entry.is_file:
            raise ValueError(f"{label}: no such file. Fix the path.")
        if path.suffix.lower() not in FILE_TYPES:
            raise ValueError(f"{label}: unknown file type {path.suffix!r}. Give a {' or '.join(FILE_TYPES)} file.")
        if entry.split != FILE_SPLIT:
            raise ValueError(f"{label}: a file has one split, {FILE_SPLIT!r}, not {entry.split!r}. Remove `split`.")
    elif looks_like_local_path(entry.id) and not path.is_dir():
        raise ValueError(
            f"{label} looks like a local folder but does not exist. Give a folder from `python -m dataset_builder "
            "export`, a Hub id (org/name) or a .jsonl/.csv file."
        )


def load_entry(entry: DatasetConfig, split: str, label: str) -> tuple[Dataset, str, str | None]:
    """One entry's `split` in the qa shape, with how the card names it and its Hub id (None when it is local)."""
    if entry.is_file:
        rows = read_instruction_file(Path(entry.id).expanduser())
        name, hub_id = f"the file {Path(entry.id).name}", None
    else:
        try:
            rows = load_splits(entry.id, entry.config, [split])[split]
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from error
        generators = set(rows["generator_model"]) if "generator_model" in rows.column_names else set()
        name, hub_id = dataset_label(entry.id, generators)
    return to_qa_shape(rows, entry.columns, f"{label} [{split}]"), name, hub_id


def draw(rows: Dataset, weight: float, seed: int, label: str) -> Dataset:
    """The handbook's draw: the rows shuffled with `seed`, the first `int(len(rows) * weight)` kept."""
    count = int(len(rows) * weight)
    if count == 0:
        raise ValueError(f"{label}: weight {weight} draws no row of its {len(rows)}. Raise the weight.")
    return rows.shuffle(seed=seed).select(range(count))


def load_mixture(
    mixture: DatasetMixtureConfig, train_split: str, test_split: str | None
) -> tuple[DatasetDict, list[DrawnDataset]]:
    """The mixed training rows under `train_split`, with the first entry's `test_split` under its name when given,
    and what was drawn from each entry. The counts are printed as they are drawn."""
    mixed, facts = [], []
    for index, entry in enumerate(mixture.datasets):
        label = entry_label(index, entry.id)
        rows, name, hub_id = load_entry(entry, entry.split, label)
        drawn = draw(rows, entry.weight, mixture.seed, label)
        with_reports = any(rows["report_ko"])
        config = None if entry.is_file else entry.config
        facts.append(
            DrawnDataset(name, hub_id, config, entry.split, entry.weight, len(rows), len(drawn), with_reports)
        )
        mixed.append(drawn)
        plain = "" if with_reports else "; no reports: each row a single-turn instruction chat"
        print(f"{label}: drew {len(drawn)} of {len(rows)} rows of split {entry.split} (weight {entry.weight}){plain}.")
    splits = DatasetDict({train_split: concatenate_datasets(mixed).shuffle(seed=mixture.seed)})
    total = len(splits[train_split])
    print(f"dataset_mixture: {total} training rows from {len(mixed)} datasets (seed {mixture.seed}).")
    if test_split is not None:
        splits[test_split] = validation_split(mixture.datasets[0], test_split)
    return splits, facts


def validation_split(first: DatasetConfig, test_split: str) -> Dataset:
    """The first entry's `test_split`, whole: the project's qa dataset, validated as a run with `dataset_name` is."""
    label = entry_label(0, first.id)
    if first.is_file:
        raise ValueError(
            f"{label} is a file, and validation comes from the first entry's {test_split!r} split. Put the project's "
            "qa dataset first, or set eval_strategy: no."
        )
    rows, _, _ = load_entry(first, test_split, label)
    print(f"{label}: validating on its {len(rows)} rows of split {test_split}.")
    return rows
