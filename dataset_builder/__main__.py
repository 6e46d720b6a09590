"""Command line of the dataset builder.

    python -m dataset_builder parse dataset_builder/sample --out notes.jsonl
    python -m dataset_builder build --data-dir dataset_builder/sample --gold --out out/build
    python -m dataset_builder build --data-dir ~/mimic-cxr-reports --out out/build \\
        --model my-model --base-url http://127.0.0.1:8000/v1 --dry-run
    python -m dataset_builder build ... --batch-dir out/batches      # OpenAI Batch API: write, then
    python -m dataset_builder batch submit out/batches/batch-0000.jsonl --model gpt-4o-mini ...
    python -m dataset_builder batch collect BATCH_ID --model gpt-4o-mini ...   # answers into the cache
    python -m dataset_builder export out/build --out out/hub --repo-id org/ko-cxr-qa
    python -m dataset_builder push out/hub --repo-id org/ko-cxr-qa --dry-run

`build` takes every field of `BuildOptions` and `LLMClientConfig` as a flag, or from `--config build.yaml`
(flags override the file).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import datasets
import yaml
from transformers import HfArgumentParser

from dataset_builder.hub import export_hub_folder, push_hub_folder
from dataset_builder.ko_cxr_qa import KoCxrQa
from dataset_builder.options import BuildOptions
from dataset_builder.pipeline import Pipeline, note_record
from dataset_builder.sources import InputError, ReportSource
from dataset_builder.translate import present_sections
from ko_radiology.atomic_io import replace_dir, write_text_atomically
from ko_radiology.data_use import DataUseError
from ko_radiology.llm_client import LLMClient, LLMClientConfig, LLMRequest


def parse_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m dataset_builder parse", description="Run the section parser.")
    parser.add_argument("path", type=Path, help="MIMIC tree, folder of .txt, or {id, note} CSV")
    parser.add_argument("--out", type=Path, required=True, help="notes JSONL to write")
    args = parser.parse_args(argv)
    source = ReportSource(args.path)
    lines = [json.dumps(note_record(report), ensure_ascii=False) for report in source.read()]
    write_text_atomically(args.out, "".join(f"{line}\n" for line in lines))
    print(f"{len(lines)} reports → {args.out}; skipped {len(source.skipped)}")
    for item in source.skipped:
        print(f"  skipped {item.source}: {item.reason}")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser((BuildOptions, LLMClientConfig), prog="python -m dataset_builder build")
    parser.add_argument("--config", type=Path, help="YAML file with any of these options; flags override it.")
    for action in parser._actions:
        if action.dest == "model":
            action.required = False  # only the llm backends need a model
    return parser


def parse_build_args(argv: list[str]) -> tuple[BuildOptions, dict]:
    parser = build_parser()
    config_reader = argparse.ArgumentParser(add_help=False)
    config_reader.add_argument("--config", type=Path)
    config_path = config_reader.parse_known_args(argv)[0].config
    if config_path:
        from_file = yaml.safe_load(config_path.read_text()) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(from_file) - known)
        if unknown:
            raise ValueError(
                f"{config_path} has unknown keys {unknown}; see `python -m dataset_builder build --help`."
            )
        parser.set_defaults(**from_file)
        for action in parser._actions:
            action.required = action.required and action.dest not in from_file
    namespace = vars(parser.parse_args(argv))
    options = BuildOptions(**{f.name: namespace[f.name] for f in dataclasses.fields(BuildOptions)})
    endpoint = {f.name: namespace[f.name] for f in dataclasses.fields(LLMClientConfig)}
    if endpoint["cache_path"] == LLMClientConfig.__dataclass_fields__["cache_path"].default:
        endpoint["cache_path"] = str(options.out_dir / "llm_cache.sqlite")  # the cache belongs to the build
    return options, endpoint


def make_client(options: BuildOptions, endpoint: dict) -> LLMClient | None:
    needs_llm = ("translation" in options.config_names or "qa" in options.config_names) and "llm" in (
        options.translator,
        options.generator if "qa" in options.config_names else "",
    )
    if not needs_llm:
        return None
    if not endpoint["model"]:
        raise ValueError("The llm backend needs --model (the name your endpoint serves) and --base-url; or --gold.")
    return LLMClient(LLMClientConfig(**endpoint))


def translation_requests(pipeline: Pipeline) -> list[LLMRequest]:
    """Every translation request of the build, known before anything is sent (unlike QA's, which need the Korean)."""
    notes = [note for notes in pipeline.notes_by_split().values() for note in notes]
    conversations = [
        pipeline.translator.messages(name, text) for note in notes for name, text in present_sections(note).items()
    ]
    return pipeline.translator.complete_many.requests(conversations)


def print_dry_run(pipeline: Pipeline) -> None:
    """Translation requests exactly (cached or not); QA requests projected, since they depend on the translations."""
    notes = [note for notes in pipeline.notes_by_split().values() for note in notes]
    print(f"{len(notes)} reports; skipped {len(pipeline.source.skipped)}")
    if pipeline.options.translator == "llm":
        print(pipeline.client.dry_run(translation_requests(pipeline)).table())
    if "qa" in pipeline.options.config_names and pipeline.options.generator == "llm":
        calls = 2 * len(notes) * pipeline.options.tasks_per_report
        print(f"qa generation: up to {calls} more requests (one instruction and one answer per task and report).")


def build_command(argv: list[str]) -> None:
    options, endpoint = parse_build_args(argv)
    client = make_client(options, endpoint)
    pipeline = Pipeline(options, client)
    pipeline.check_backends()
    if options.dry_run:
        print_dry_run(pipeline)
        return
    if options.batch_dir and options.translator == "llm":
        files = pipeline.client.write_batch_jsonl(translation_requests(pipeline), options.batch_dir)
        if files.written:
            print(
                f"{files.written} uncached translation requests ({files.skipped_cached} cached) → "
                f"{', '.join(map(str, files.paths))}.\nNext: python -m dataset_builder batch submit FILE... "
                f"--cache-path {endpoint['cache_path']} [endpoint flags]; then batch collect BATCH_ID...; "
                "then this build again."
            )
            return
    for name in options.config_names:
        builder = KoCxrQa(config_name=name, data_dir=options.data_dir, cache_dir=str(options.out_dir / ".cache"))
        builder.pipeline = pipeline
        builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD)
        built = built_splits(builder)
        replace_dir(options.out_dir / name, lambda tmp, built=built: built.save_to_disk(str(tmp)))
        print(f"{name}: {', '.join(f'{split} {rows.num_rows}' for split, rows in built.items())}")
    write_summary(options, pipeline)


def built_splits(builder: KoCxrQa) -> datasets.DatasetDict:
    """The built splits; one whose every candidate was rejected stays, empty, so the summary's counts explain it."""
    return datasets.DatasetDict(
        {
            split: builder.as_dataset(split)
            if info.num_examples
            else datasets.Dataset.from_dict({name: [] for name in builder.info.features}, builder.info.features)
            for split, info in builder.info.splits.items()
        }
    )


def write_summary(options: BuildOptions, pipeline: Pipeline) -> None:
    summary = {
        "counts": dict(sorted(pipeline.counts.items())),
        "qa_rejected": dict(sorted(pipeline.rejected().items())),
        "skipped": [dataclasses.asdict(item) for item in pipeline.source.skipped],
    }
    if pipeline.client is not None:
        this_run, cumulative = pipeline.client.ledger(run_only=True), pipeline.client.ledger()
        summary["ledger_this_run"] = [dataclasses.asdict(row) for row in this_run.rows]
        summary["ledger_all_runs"] = [dataclasses.asdict(row) for row in cumulative.rows]
        print(f"this run:\n{this_run.table()}\nall runs on this cache:\n{cumulative.table()}")
    write_text_atomically(options.out_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"summary → {options.out_dir / 'summary.json'}: {summary['counts']} rejected {summary['qa_rejected']}")


def batch_command(argv: list[str]) -> None:
    parser = HfArgumentParser(LLMClientConfig, prog="python -m dataset_builder batch")
    parser.add_argument("action", choices=["submit", "collect"])
    parser.add_argument("targets", nargs="+", help="batch input files to submit, or batch ids to collect")
    parser.add_argument("--out", type=Path, default=Path("out/batches"), help="where collected outputs go")
    namespace = vars(parser.parse_args(argv))
    client = LLMClient(LLMClientConfig(**{f.name: namespace[f.name] for f in dataclasses.fields(LLMClientConfig)}))
    for target in namespace["targets"]:
        if namespace["action"] == "submit":
            print(f"{target}: submitted as batch {client.submit_batch(target)}")
            continue
        output = client.fetch_batch(target, namespace["out"])
        if output is None:
            print(f"{target}: still running; collect it again later")
        else:
            report = client.ingest_batch_output(output)
            print(
                f"{target}: {report.stored} answers cached, {report.already_cached} already were, "
                f"{len(report.failures)} failed"
            )


def export_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m dataset_builder export", description="Write the Hub folder.")
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the Hub repo folder to write")
    parser.add_argument("--repo-id", default="org/ko-cxr-qa", help="shown in the card's load_dataset examples")
    args = parser.parse_args(argv)
    folder = export_hub_folder(args.build_dir, args.out, args.repo_id)
    print(f"Hub folder → {folder}; check it with load_dataset('{folder}', 'qa')")


def push_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m dataset_builder push", description="Push a gated dataset.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent")
    args = parser.parse_args(argv)
    for step in push_hub_folder(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run):
        print(("would " if args.dry_run else "done: ") + step)


USER_ERRORS = (InputError, DataUseError, ValueError, FileNotFoundError)
"""Errors that name the input and the fix: printed as one line, not a traceback."""
COMMANDS = {
    "parse": parse_command,
    "build": build_command,
    "batch": batch_command,
    "export": export_command,
    "push": push_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        COMMANDS[argv[0]](argv[1:])
    except datasets.exceptions.DatasetGenerationError as error:
        print(f"error: {error.__cause__ or error}", file=sys.stderr)
        return 1
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
