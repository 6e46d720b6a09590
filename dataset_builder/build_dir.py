"""The build folder `OUT`: every config of a build is written into a staging folder inside `OUT` and swapped in
together with `summary.json`, so `OUT` holds one whole build, old or new, never a mix.

Nothing persists between builds but the LLM cache (`OUT/llm_cache.sqlite`): no `datasets` cache is kept, so a
rebuild never meets a stale one. A config or split without rows is left out (the summary's counts say why).
"""

import json
import shutil
import tempfile
from pathlib import Path

import datasets

from dataset_builder.options import CONFIG_NAMES
from dataset_builder.pipeline import Pipeline
from dataset_builder.schemas import FEATURES
from dataset_builder.splits import SPLIT_NAMES

SUMMARY_FILE = "summary.json"
STAGING_PREFIX = ".staging-"
BUILD_ENTRIES = (*CONFIG_NAMES, SUMMARY_FILE)
"""What a build owns in `OUT`; the cache and Batch files beside them are left alone."""


def check_out_dir(out_dir: Path) -> None:
    """Refuse an `OUT` holding a `notes`, `translation`, `qa` or `summary.json` that no build wrote, which the swap
    would replace. Called before any work, since the run's LLM cache is kept in `OUT`."""
    foreign = [name for name in BUILD_ENTRIES if (out_dir / name).exists() and not _written_by_a_build(out_dir / name)]
    if foreign:
        raise ValueError(
            f"--out {out_dir} holds {', '.join(foreign)}, which no build wrote and a build would replace. Pass a new "
            "folder, or an earlier build's, as --out."
        )


def _written_by_a_build(path: Path) -> bool:
    """A config folder that `save_to_disk` wrote, or a summary with the keys `Pipeline.summary` writes."""
    if path.name != SUMMARY_FILE:
        return (path / "dataset_dict.json").is_file()
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and "counts" in summary


def config_dataset(pipeline: Pipeline, name: str) -> datasets.DatasetDict:
    """The rows of one config per split, without empty splits."""
    splits = {split: pipeline.records(name, split) for split in SPLIT_NAMES}
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows, features=FEATURES[name]) for split, rows in splits.items() if rows}
    )


def write_build(pipeline: Pipeline, out_dir: Path) -> dict[str, dict[str, int]]:
    """Build every config of `pipeline`, then replace the previous build in `out_dir` with it. Returns the row counts.

    Any failure before the swap (an endpoint down, a bad file, Ctrl-C) leaves `out_dir` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in out_dir.glob(f"{STAGING_PREFIX}*"):  # from a killed build; one build writes an OUT at a time
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        rows = {}
        for name in pipeline.options.config_names:
            dataset = config_dataset(pipeline, name)
            rows[name] = dataset.num_rows
            if dataset:
                (staging / name).mkdir(mode=0o700)  # report text: readable by its owner only, like the cache
                dataset.save_to_disk(str(staging / name))
        summary = json.dumps(pipeline.summary(), indent=2, ensure_ascii=False)
        (staging / SUMMARY_FILE).write_text(summary, encoding="utf-8")
        swap_in(staging, out_dir, BUILD_ENTRIES)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def swap_in(staging: Path, out_dir: Path, names: tuple[str, ...]) -> None:
    """Move the previous build's entries aside and the staged ones in; if a move fails, put the previous back."""
    previous = staging / ".previous"
    previous.mkdir()
    moved_in = []
    try:
        for name in names:
            if (out_dir / name).exists():
                (out_dir / name).rename(previous / name)
        for name in names:
            if (staging / name).exists():
                (staging / name).rename(out_dir / name)
                moved_in.append(name)
    except OSError:
        for name in moved_in:
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
            else:
                (out_dir / name).unlink()
        for name in names:
            if (previous / name).exists():
                (previous / name).rename(out_dir / name)
        raise
