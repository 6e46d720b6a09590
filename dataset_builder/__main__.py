"""Command line of the dataset builder.

    python -m dataset_builder parse ko_radiology/sample --out out/notes.jsonl
    python -m dataset_builder build --data-dir ko_radiology/sample --gold --out out/build
    python -m dataset_builder build --data-dir ~/mimic-cxr-reports --out out/build \\
        --model my-model --base-url http://127.0.0.1:8000/v1 --dry-run
    python -m dataset_builder build ... --batch-dir out/batches      # OpenAI Batch API: write, then
    python -m dataset_builder batch submit out/batches/batch-0000.jsonl --out out/build --model gpt-4o-mini ...
    python -m dataset_builder batch collect BATCH_ID --out out/build --model gpt-4o-mini ...   # into OUT's cache
    python -m dataset_builder export out/build --out out/hub --repo-id org/ko-cxr-qa
    python -m dataset_builder push out/hub --repo-id org/ko-cxr-qa --dry-run

`build` takes every field of `BuildOptions` and `BuildEndpoint` (the LLM client's options) as a flag, or from
`--config build.yaml` (flags override the file). `build` and `batch` share the cache `OUT/llm_cache.sqlite`.

Exit status (every command's, see `ko_radiology.cli`): 0 done; 2 no such command, a bad flag or input (one line says
what to fix); 3 `build` saved a build in which some model calls failed: run the same command again to retry only
those (`--allow-partial` accepts such a build and exits 0).
"""

import argparse
import json
import sys
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from dataset_builder.build_dir import SUMMARY_FILE, build_lock, check_out_dir, write_build
from dataset_builder.hub import export_hub_folder, push_hub_folder, push_plan
from dataset_builder.options import DEFAULT_OUT, BuildEndpoint, BuildOptions
from dataset_builder.pipeline import Pipeline, note_record
from dataset_builder.sources import ReportSource
from ko_radiology.arguments import ConfigArgumentParser
from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.cli import EXIT_PARTIAL, EXIT_USAGE, run_cli
from ko_radiology.llm import LLMClient


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


def parse_build_args(argv: list[str]) -> tuple[BuildOptions, BuildEndpoint]:
    parser = ConfigArgumentParser((BuildOptions, BuildEndpoint), prog="python -m dataset_builder build")
    return parser.parse_args_and_config(argv)


def print_dry_run(pipeline: Pipeline) -> None:
    """Translation requests exactly (cached or not); QA requests projected, since they depend on the translations."""
    notes = [note for notes in pipeline.notes_by_split().values() for note in notes]
    print(f"{len(notes)} reports; skipped {len(pipeline.source.skipped)}; provenance {pipeline.provenance}")
    if "translation" in pipeline.llm_stages:
        print(pipeline.client.dry_run(pipeline.translation_requests()).table())
    if "qa" in pipeline.llm_stages:
        calls = 2 * len(notes) * pipeline.options.tasks_per_report
        print(f"qa generation: up to {calls} more requests (one instruction and one answer per task and report).")


def write_batch_files(pipeline: Pipeline) -> bool:
    """Write the uncached translation requests as Batch API files; False when every one is cached already."""
    options = pipeline.options
    files = pipeline.client.write_batch_jsonl(pipeline.translation_requests(), options.batch_dir)
    if not files.written:
        return False
    print(
        f"{files.written} uncached translation requests ({files.skipped_cached} cached) → "
        f"{', '.join(map(str, files.paths))}.\nNext: python -m dataset_builder batch submit FILE... "
        f"--out {options.out} [endpoint flags]; then batch collect BATCH_ID... --out {options.out}; "
        "then this build again."
    )
    return True


def build_command(argv: list[str]) -> int:
    options, endpoint = parse_build_args(argv)
    check_out_dir(options.out_dir)
    pipeline = Pipeline(options, endpoint)
    with build_lock(options.out_dir):
        try:
            pipeline.check_backends()
            if options.dry_run:
                print_dry_run(pipeline)
            elif not (options.batch_dir and "translation" in pipeline.llm_stages and write_batch_files(pipeline)):
                rows = write_build(pipeline, options.out_dir)
                print_build(pipeline, rows)
                return partial_build_status(pipeline)
        finally:
            pipeline.close()
    return 0


SKIPS_SHOWN = 10
"""Skipped inputs printed after a build; `summary.json` lists every one."""


def partial_build_status(pipeline: Pipeline) -> int:
    """A saved build in which calls failed is not a success unless --allow-partial says so: one line either way."""
    failed = pipeline.counts["llm_failed_requests"]
    if not failed:
        return 0
    options = pipeline.options
    outcome = "accepted by --allow-partial" if options.allow_partial else f"exit status {EXIT_PARTIAL}"
    print(
        f"{'warning' if options.allow_partial else 'error'}: {failed} model calls failed after their retries, so the "
        f"build saved in {options.out} lacks what they would have made (see {SUMMARY_FILE}); {outcome}. Run the same "
        "command again to retry only those calls (answered ones are cached)"
        + ("." if options.allow_partial else ", or add --allow-partial to accept a partial build."),
        file=sys.stderr,
    )
    return 0 if options.allow_partial else EXIT_PARTIAL


def print_build(pipeline: Pipeline, rows: dict[str, dict[str, int]]) -> None:
    for name, splits in rows.items():
        counts = ", ".join(f"{split} {n}" for split, n in splits.items()) or f"no rows (see {SUMMARY_FILE})"
        print(f"{name}: {counts}")
    if pipeline.client is not None:
        print(f"this run:\n{pipeline.client.ledger(run_only=True).table()}")
        print(f"all runs on this cache:\n{pipeline.client.ledger().table()}")
    summary, path = pipeline.summary(), pipeline.options.out_dir / SUMMARY_FILE
    print(f"summary → {path}: {summary['counts']} rejected {summary['qa_rejected']}")
    for item in pipeline.source.skipped[:SKIPS_SHOWN]:
        print(f"  skipped {item.source}: {item.reason}")
    if len(pipeline.source.skipped) > SKIPS_SHOWN:
        print(f"  ... and {len(pipeline.source.skipped) - SKIPS_SHOWN} more skipped inputs (see {path})")


def batch_command(argv: list[str]) -> None:
    parser = HfArgumentParser(BuildEndpoint, prog="python -m dataset_builder batch")
    parser.add_argument("action", choices=["submit", "collect"])
    parser.add_argument("targets", nargs="+", help="batch input files to submit, or batch ids to collect")
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT), help="the build folder: its cache receives the answers"
    )
    endpoint, args = parser.parse_args_into_dataclasses(args=argv)
    with LLMClient(endpoint.client_config(args.out)) as client:  # unset provenance: user (credentialed)
        for target in args.targets:
            print(f"{target}: {submit_or_collect(client, args.action, target, args.out / 'batches')}")


def submit_or_collect(client: LLMClient, action: str, target: str, outputs: Path) -> str:
    if action == "submit":
        return f"submitted as batch {client.submit_batch(target)}"
    output = client.fetch_batch(target, outputs)
    if output is None:
        return "still running; collect it again later"
    report = client.ingest_batch_output(output)
    return (
        f"{report.stored} answers cached in {client.config.cache_path}, {report.already_cached} already were, "
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
    parser = argparse.ArgumentParser(
        prog="python -m dataset_builder push",
        description="Push a Hub folder: created private, gated if credentialed, uploaded, then made visible.",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--private", action="store_true", help="leave the repo private after the upload")
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent")
    args = parser.parse_args(argv)
    if args.dry_run:
        for step in push_plan(args.folder, args.repo_id, args.private):
            print(f"would {step.description}")
    else:
        push_hub_folder(args.folder, args.repo_id, args.private)


COMMANDS = {
    "parse": parse_command,
    "build": build_command,
    "batch": batch_command,
    "export": export_command,
    "push": push_command,
}


def run_command(argv: list[str]) -> int | None:
    datasets.disable_progress_bars()  # several bars per 40-row table would bury the summary lines
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_USAGE
    return COMMANDS[argv[0]](argv[1:])


def main(argv: list[str] | None = None) -> int:
    return run_cli(run_command, argv)


if __name__ == "__main__":
    sys.exit(main())
