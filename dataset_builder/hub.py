"""Write the Hub repo folder of a build (Parquet per config and split, a dataset card true to the build) and push it.

The folder is exactly what the Hub repo holds, so `load_dataset(folder, "qa")` here behaves as
`load_dataset("org/ko-cxr-qa", "qa")` does after the push.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
from huggingface_hub import HfApi

from dataset_builder.build_dir import SUMMARY_FILE
from dataset_builder.card import build_facts, card_contradictions, read_card_metadata, render_card
from dataset_builder.options import CONFIG_NAMES
from ko_radiology.atomic_io import replace_dir
from ko_radiology.llm.data_use import is_credentialed

ORIGINAL_FORMAT_DIR = "original_format"
"""`{report, instruction, answer}` JSONL, the original project's training format, beside the Parquet."""
EXPORT_RECORD = "provenance.json"
"""The build's provenance as its `summary.json` recorded it: `push` gates by it, never by the editable card. Its
presence also marks a folder as an export, which a later export may replace."""
EXPORT_WRITER = "python -m dataset_builder export"
EXPORT_ENTRIES = frozenset({"README.md", EXPORT_RECORD, ORIGINAL_FORMAT_DIR, *CONFIG_NAMES})
"""What an export writes; a folder holding anything else, or no export record, is not replaced."""


@dataclass(frozen=True)
class PushStep:
    """One Hub call of a push: what it does, in words (the dry run prints it), and the call itself."""

    description: str
    run: Callable[[HfApi], object]


def load_build(build_dir: Path) -> dict[str, datasets.DatasetDict]:
    built = {name: build_dir / name for name in CONFIG_NAMES if (build_dir / name).is_dir()}
    if not built:
        raise FileNotFoundError(
            f"{build_dir} holds no built config ({', '.join(CONFIG_NAMES)}). Run `python -m dataset_builder build "
            f"--out {build_dir}` first."
        )
    return {name: datasets.load_from_disk(str(path)) for name, path in built.items()}


def read_export_record(folder: Path) -> dict | None:
    """The record an export wrote in `folder`, or None where there is none (a folder export did not write)."""
    try:
        record = json.loads((folder / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("written_by") == EXPORT_WRITER else None


def check_export_dir(out_dir: Path) -> None:
    """Export replaces `out_dir` whole, so it must be new, empty or an earlier export (its record says so): not the
    build folder (its paid LLM cache), nor a folder of the user's (`--out ~`, a README of theirs)."""
    if out_dir.is_symlink():
        raise ValueError(
            f"--out {out_dir} is a symlink (to {os.readlink(out_dir)}), and export replaces its folder whole; pass "
            f"the folder itself ({out_dir.resolve()}) or a new one."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the export (e.g. out/hub).")
    names = sorted(path.name for path in out_dir.iterdir()) if out_dir.exists() else []
    written = EXPORT_ENTRIES if read_export_record(out_dir) else frozenset()
    foreign = [name for name in names if name not in written]
    if foreign:
        raise ValueError(
            f"--out {out_dir} holds {', '.join(foreign[:5])}, which export did not write; export replaces the whole "
            "folder. Pass a new folder (e.g. out/hub), or an earlier export's."
        )


def export_hub_folder(build_dir: Path, out_dir: Path, repo_id: str, pretty_name: str = "Ko-CXR-QA") -> Path:
    """Parquet per config and split, the original-format JSONL and the card, written whole or not at all."""
    check_export_dir(Path(out_dir))
    configs = load_build(build_dir)
    summary_path = build_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    record = {"written_by": EXPORT_WRITER, "provenance": build_facts(summary)["provenance"]}

    def write(tmp_dir: Path) -> None:
        for name, dataset in configs.items():
            (tmp_dir / name).mkdir()
            for split, rows in dataset.items():
                rows.to_parquet(tmp_dir / name / f"{split}-00000-of-00001.parquet")
        if "qa" in configs:
            (tmp_dir / ORIGINAL_FORMAT_DIR).mkdir()
            for split, rows in configs["qa"].items():
                original = rows.select_columns(["report_ko", "instruction", "answer"])
                original = original.rename_column("report_ko", "report")
                original.to_json(tmp_dir / ORIGINAL_FORMAT_DIR / f"{split}.jsonl", force_ascii=False)
        (tmp_dir / "README.md").write_text(render_card(configs, summary, repo_id, pretty_name), encoding="utf-8")
        (tmp_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    return replace_dir(out_dir, write)


def push_plan(folder: Path, repo_id: str, private: bool = False) -> list[PushStep]:
    """The Hub calls of a push, in order: the repo is created private, gated (credentialed data) and filled before
    anyone can see it, and made visible last. Gating follows the provenance the build recorded (the export record),
    never the editable card; a card that says less than that provenance requires is refused here."""
    readme, record = folder / "README.md", read_export_record(folder)
    missing = [name for name, found in (("README.md", readme.is_file()), (EXPORT_RECORD, record)) if not found]
    if missing:
        raise FileNotFoundError(
            f"{folder} has no {' and no '.join(missing)} (written by export); run `python -m dataset_builder export "
            f"BUILD --out {folder}` first."
        )
    metadata, provenance = read_card_metadata(readme), str(record.get("provenance"))
    if problems := card_contradictions(metadata, provenance):
        raise ValueError(
            f"{readme} contradicts the build's provenance ({provenance}, in {EXPORT_RECORD}): {'; '.join(problems)}. "
            "Refusing to push it; run `python -m dataset_builder export` again (edit the card's prose, not these)."
        )
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    gated = is_credentialed(provenance) or bool(metadata.get("extra_gated_prompt"))
    settings = {"private": True, **({"gated": "manual"} if gated else {})}
    steps = [
        PushStep(
            f"create_repo({repo_id!r}, repo_type='dataset', private=True, exist_ok=True)",
            lambda api: api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True),
        ),
        PushStep(  # again, for a repo that existed: it may have been public
            f"update_repo_settings({repo_id!r}, repo_type='dataset', {_kwargs(settings)})",
            lambda api: api.update_repo_settings(repo_id, repo_type="dataset", **settings),
        ),
        PushStep(
            f"upload_folder({str(folder)!r}) → {len(files)} files: {', '.join(files)}",
            lambda api: api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset"),
        ),
    ]
    if not private:
        steps.append(
            PushStep(
                f"update_repo_settings({repo_id!r}, repo_type='dataset', private=False)",
                lambda api: api.update_repo_settings(repo_id, repo_type="dataset", private=False),
            )
        )
    return steps


def _kwargs(values: dict) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in values.items())


def push_hub_folder(folder: Path, repo_id: str, private: bool = False, api: HfApi | None = None) -> None:
    """Run `push_plan` against the Hub (`api`, default `HfApi()`: token from `HF_TOKEN` or `hf auth login`, never
    from the command line), printing each step as it is done."""
    api = api or HfApi()
    for step in push_plan(folder, repo_id, private):
        step.run(api)
        print(f"done: {step.description}")
