"""Write the Hub repo folder of a build (Parquet per config and split, a gated dataset card) and push it.

The folder is exactly what the Hub repo holds, so `load_dataset(folder, "qa")` here behaves as
`load_dataset("org/ko-cxr-qa", "qa")` does after the push.
"""

import json
from pathlib import Path

import datasets
import yaml
from jinja2 import Template

from dataset_builder.options import CONFIG_NAMES
from ko_radiology.atomic_io import replace_dir

CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "dataset_card.md"
ORIGINAL_FORMAT_DIR = "original_format"
"""`{report, instruction, answer}` JSONL, the original project's training format, beside the Parquet."""
GATING = {
    "extra_gated_heading": "Access Ko-CXR-QA (derived from credentialed MIMIC-CXR data)",
    "extra_gated_prompt": (
        "This dataset is derived from MIMIC-CXR, which PhysioNet distributes under its Credentialed Health Data "
        "License and Data Use Agreement. Request access only if you are a credentialed PhysioNet user who has signed "
        "the MIMIC-CXR data use agreement. You agree not to re-identify anyone, not to share the data, "
        "and not to send it to any service that retains it, trains on it or lets people review it "
        "(PhysioNet's guidance on responsible use of MIMIC data with online services such as GPT)."
    ),
    "extra_gated_fields": {
        "PhysioNet username": "text",
        "I am a credentialed PhysioNet user and signed the MIMIC-CXR data use agreement": "checkbox",
        "I will not share this data or send it to services that retain it": "checkbox",
    },
    "extra_gated_button_content": "Request access",
}


def load_build(build_dir: Path) -> dict[str, datasets.DatasetDict]:
    built = {name: build_dir / name for name in CONFIG_NAMES if (build_dir / name).is_dir()}
    if not built:
        raise FileNotFoundError(
            f"{build_dir} holds no built config ({', '.join(CONFIG_NAMES)}). Run `python -m dataset_builder build "
            f"--out {build_dir}` first."
        )
    return {name: datasets.load_from_disk(str(path)) for name, path in built.items()}


def card_metadata(configs: dict[str, datasets.DatasetDict], pretty_name: str) -> dict:
    return {
        "pretty_name": pretty_name,
        "language": ["ko", "en"],
        "license": "other",
        "license_name": "physionet-credentialed-health-data-1.5.0",
        "license_link": "https://physionet.org/content/mimic-cxr/view-license/2.1.0/",
        "task_categories": ["question-answering", "translation", "text-generation"],
        "tags": ["medical", "radiology", "chest-x-ray", "korean", "mimic-cxr"],
        "size_categories": [_size_category(sum(d.num_rows for d in configs.get("qa", {}).values()))],
        **GATING,
        "configs": [
            {
                "config_name": name,
                "default": name == "qa",
                "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split in dataset],
            }
            for name, dataset in configs.items()
        ],
    }


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "1M<n<10M"


def render_card(configs: dict[str, datasets.DatasetDict], summary: dict, repo_id: str, pretty_name: str) -> str:
    body = Template(CARD_TEMPLATE.read_text(encoding="utf-8")).render(
        repo_id=repo_id,
        counts={name: {split: d.num_rows for split, d in dataset.items()} for name, dataset in configs.items()},
        features={name: next(iter(dataset.values())).features for name, dataset in configs.items()},
        summary=summary,
    )
    front_matter = yaml.safe_dump(card_metadata(configs, pretty_name), allow_unicode=True, sort_keys=False)
    return f"---\n{front_matter}---\n\n{body}"


def export_hub_folder(build_dir: Path, out_dir: Path, repo_id: str, pretty_name: str = "Ko-CXR-QA") -> Path:
    """Parquet per config and split, the original-format JSONL and a gated card, written whole or not at all."""
    configs = load_build(build_dir)
    summary_path = build_dir / "summary.json"
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


def push_hub_folder(folder: Path, repo_id: str, private: bool = False, dry_run: bool = False) -> list[str]:
    """Create the dataset repo, upload the folder and gate it (manual approval). Returns the steps taken/planned.

    The token comes from `HF_TOKEN` (or `huggingface-cli login`), never from the command line.
    """
    if not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder} has no README.md; run `python -m dataset_builder export` first.")
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    steps = [
        f"create_repo({repo_id!r}, repo_type='dataset', private={private}, exist_ok=True)",
        f"upload_folder({str(folder)!r}) → {len(files)} files: {', '.join(files)}",
        f"update_repo_settings({repo_id!r}, repo_type='dataset', gated='manual')",
    ]
    if dry_run:
        return steps
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset")
    api.update_repo_settings(repo_id, repo_type="dataset", gated="manual")
    return steps
