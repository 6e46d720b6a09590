"""The build folder `OUT`: every config of a build is written into a staging folder inside `OUT` and swapped in
together with `summary.json`, so `OUT` holds one whole build, old or new, never a mix.

Nothing persists between builds but the LLM cache (`OUT/llm_cache.sqlite`): no `datasets` cache is kept, so a
rebuild never meets a stale one. A config or split without rows is left out (the summary's counts say why).

One build writes an `OUT` at a time (`build_lock`), and a build removes only staging folders that carry its marker.
"""

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets

from dataset_builder.options import CONFIG_NAMES
from dataset_builder.pipeline import Pipeline
from dataset_builder.schemas import FEATURES
from ko_radiology.splits import SPLIT_NAMES

SUMMARY_FILE = "summary.json"
STAGING_PREFIX = ".staging-"
STAGING_MARKER = ".written-by-dataset-builder"
"""In every staging folder a build makes: a `.staging-*` folder without it is someone else's and is never removed."""
LOCK_FILE = ".build.lock"
BUILD_ENTRIES = (*CONFIG_NAMES, SUMMARY_FILE)
"""What a build owns in `OUT`; the cache and Batch files beside them are left alone."""


def check_out_dir(out_dir: Path) -> None:
    """Refuse an `OUT` holding a `notes`, `translation`, `qa` or `summary.json` that no build wrote, which the swap
    would replace. Called before any work, since the run's LLM cache is kept in `OUT`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder; pass a folder for the build (e.g. out/build).")
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


@contextmanager
def build_lock(out_dir: Path) -> Iterator[None]:
    """Hold an OS lock on `OUT` for a whole build, so that a second build into it is refused at once rather than
    deleting this one's staging folder. The kernel releases it however the process ends (kill -9 too); the lock file
    keeps the holder's pid and start time only to name it in the refusal."""
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = (out_dir / LOCK_FILE).open("a+", encoding="utf-8")  # "a+": a refused build keeps the holder's line
    except OSError as error:
        raise ValueError(
            f"--out {out_dir} cannot be written ({error.strerror}); pass a folder you can write (e.g. out/build)."
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ValueError(
                f"--out {out_dir} is being built by {holder}; wait for it to finish, or pass another --out."
            ) from None
        handle.truncate(0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} (python -m dataset_builder build, started {started})")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)  # a holder that writes nothing (`flock` by hand) is then not named as this build


def config_dataset(pipeline: Pipeline, name: str) -> datasets.DatasetDict:
    """The rows of one config per split, without empty splits."""
    splits = {split: pipeline.records(name, split) for split in SPLIT_NAMES}
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows, features=FEATURES[name]) for split, rows in splits.items() if rows}
    )


def write_build(pipeline: Pipeline, out_dir: Path) -> dict[str, dict[str, int]]:
    """Build every config of `pipeline`, then replace the previous build in `out_dir` with it. Returns the row counts.
    The caller holds `build_lock(out_dir)`.

    Any failure before the swap (an endpoint down, a bad file, Ctrl-C) leaves `out_dir` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in out_dir.glob(f"{STAGING_PREFIX}*"):
        if (leftover / STAGING_MARKER).is_file():  # a killed build's: the lock says no build is running
            shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        (staging / STAGING_MARKER).touch()
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
