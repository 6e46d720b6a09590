"""Write the Hub repo folder of a build (Parquet per config and split, a dataset card true to the build) and push it.

The folder is exactly what the Hub repo holds, so `load_dataset(folder, "qa")` here behaves as
`load_dataset("org/ko-cxr-qa", "qa")` does after the push.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
from huggingface_hub import HfApi

from dataset_builder.build_dir import SUMMARY_FILE
from dataset_builder.card import SOURCE_DATASETS, read_card_metadata, render_card
from dataset_builder.options import CONFIG_NAMES
from dataset_builder.provenance import SYNTHETIC
from ko_radiology.atomic_io import replace_dir

ORIGINAL_FORMAT_DIR = "original_format"
"""`{report, instruction, answer}` JSONL, the original project's training format, beside the Parquet."""
EXPORT_ENTRIES = frozenset({"README.md", ORIGINAL_FORMAT_DIR, *CONFIG_NAMES})
"""What an export writes; a folder holding anything else is not replaced."""


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


def check_export_dir(out_dir: Path) -> None:
    """Export replaces `out_dir` whole, so it must be new or an earlier export: not the build folder (its paid LLM
    cache), nor a folder of the user's (`--out ~`)."""
    if out_dir.is_file():
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the export (e.g. out/hub).")
    foreign = (
        sorted(path.name for path in out_dir.iterdir() if path.name not in EXPORT_ENTRIES) if out_dir.exists() else []
    )
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

    return replace_dir(out_dir, write)


def push_plan(folder: Path, repo_id: str, private: bool = False) -> list[PushStep]:
    """The Hub calls of a push, in order: the repo is created private, gated (credentialed data) and filled before
    anyone can see it, and made visible last. A credentialed folder whose card has no gating is refused here."""
    readme = folder / "README.md"
    if not readme.is_file():
        raise FileNotFoundError(f"{folder} has no README.md; run `python -m dataset_builder export` first.")
    metadata = read_card_metadata(readme)
    credentialed = metadata.get("source_datasets") != SOURCE_DATASETS[SYNTHETIC]
    if credentialed and not metadata.get("extra_gated_prompt"):
        raise ValueError(
            f"{readme} describes credentialed data but has no gating form (extra_gated_prompt); refusing to push it. "
            "Write the folder with `python -m dataset_builder export` and push that."
        )
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    settings = {"private": True, **({"gated": "manual"} if credentialed else {})}
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
