"""Loading a dataset config from a Hub id or from a local Hub-shaped folder, without a stale cache.

`datasets` (5.2) names the cache of a local folder after the folder's name, config and split patterns, not its
content: two exports both called `ko-cxr-qa` (the sample's and a MIMIC build's, or one folder re-exported with more
rows or new columns) load as whichever was read first, or fail to cast the new files to the old features. A local
folder is therefore loaded into a cache of its own content (the size and modification time of every file in it):
unchanged, it is read from that cache; changed in any way, it is read afresh. This is what every part that reads such
a folder calls. The `qa` config's splits are loaded and checked here too, for training and for the quality check
alike.
"""

import hashlib
from pathlib import Path

import datasets


def content_cache_dir(folder: Path) -> Path:
    """A `datasets` cache folder for exactly this content of `folder`: a re-export lands in a new one."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    stats = [(str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns) for path in files]
    digest = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    return Path(datasets.config.HF_DATASETS_CACHE) / "ko-radiology-local-folders" / digest


def load_dataset_config(name_or_path: str, config_name: str, **kwargs) -> datasets.DatasetDict | datasets.Dataset:
    """`datasets.load_dataset(name_or_path, config_name, **kwargs)`, a local folder from the cache of its content."""
    if Path(name_or_path).is_dir():
        kwargs = {"cache_dir": str(content_cache_dir(Path(name_or_path))), **kwargs}
    return datasets.load_dataset(name_or_path, config_name, **kwargs)


QA_COLUMNS = ("report_ko", "instruction", "answer")
"""What the prompt (`ko_radiology.prompts.build_messages`) and a gold answer are built from."""
SAMPLE_DATASET = "the synthetic sample"
"""How a card and `quality.json` name the shipped sample (`ko_radiology/sample`: invented reports, hand-written QA)."""


def load_qa_splits(name_or_path: str, config_name: str, splits: list[str]) -> datasets.DatasetDict:
    """Load `splits` of the dataset config and check each has rows and the columns the prompt needs: what training
    learns from and the quality check answers."""
    dataset = load_splits(name_or_path, config_name, splits)
    return datasets.DatasetDict(
        {split: check_qa_split(dataset[split], f"{name_or_path} [{split}]") for split in splits}
    )


def load_splits(name_or_path: str, config_name: str, splits: list[str]) -> datasets.DatasetDict:
    """Load `splits` of the dataset config as they are (a dataset mixture renames columns before checking them)."""
    try:
        dataset = load_dataset_config(name_or_path, config_name)
    except (FileNotFoundError, ValueError) as error:
        if "corresponds to no data" in str(error):
            raise ValueError(
                f"A split of {name_or_path!r} ({config_name}) is empty: {error} Rebuild the dataset with "
                "`python -m dataset_builder export`, or pick other splits in the recipe."
            ) from error
        raise ValueError(
            f"Could not load config {config_name!r} of dataset {name_or_path!r}: {error}. Pass --dataset_name with a "
            "folder written by `python -m dataset_builder export` or a Hub id, and --dataset_config qa."
        ) from error
    for split in splits:
        if split not in dataset:
            raise ValueError(
                f"Dataset {name_or_path!r} ({config_name}) has no split {split!r} (splits: {', '.join(dataset)}). "
                "Pick one in the recipe (dataset_train_split, dataset_test_split, or a dataset_mixture entry's split)."
            )
    return datasets.DatasetDict({split: dataset[split] for split in splits})


def check_qa_split(split: datasets.Dataset, label: str) -> datasets.Dataset:
    missing = [column for column in QA_COLUMNS if column not in split.column_names]
    if missing:
        raise ValueError(
            f"{label} has no column(s) {', '.join(missing)} (columns: {', '.join(split.column_names)}). "
            "Export the `qa` config with `python -m dataset_builder export`, or pass --dataset_config qa."
        )
    if len(split) == 0:
        raise ValueError(f"{label} is empty. Rebuild the dataset or pick another split in the recipe.")
    return split


def dataset_label(dataset_name: str, generators: set[str]) -> tuple[str, str | None]:
    """How a model card names the training data, and its Hub id when it has one (the Hub links `datasets:` entries).

    A local folder whose rows all come from the gold files is the shipped synthetic sample, not MIMIC-CXR.
    """
    if Path(dataset_name).exists():
        return (SAMPLE_DATASET if generators == {"gold"} else f"a local export ({Path(dataset_name).name})"), None
    return dataset_name, dataset_name
