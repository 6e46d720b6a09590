"""Score every model's answers on one criterion with an LLM judge: the original `evaluate.py --type`, on the metric.

    python -m eval.judge --input answers.csv --type acc --out scored_acc.csv \\
        --judge-model gpt-4o --judge-base-url http://127.0.0.1:8000/v1

`answers.csv` has `report`, `question` (and `reference` for `--type sim`) and one `NAME_answer` column per model;
`scored_acc.csv` adds `NAME_score` (empty on failure), `NAME_rationale`, `NAME_error`, `judge_raw` (the judge's
replies as JSON), `judge_order` (the models each call showed, answer 1 first) and `judge_seed`. Every call is
cached: a re-run after a crash or a rate limit sends only what is missing. At scale, `--batch-dir DIR` writes the
uncached calls as Batch API files (OpenAI, or `vllm run-batch`) and stops; `--ingest OUTPUT.jsonl ...` loads their
outputs into the same cache and scores.
"""

import json
from dataclasses import dataclass, field

import pandas as pd

from eval.options import JudgeEndpoint
from eval.tables import (
    CRITERION,
    ERROR_SUFFIX,
    QUESTION,
    RATIONALE_SUFFIX,
    REFERENCE,
    REPORT,
    SCORE_SUFFIX,
    answer_columns,
    read_table,
    require_columns,
    text_or_none,
    write_table,
)
from ko_radiology.arguments import ConfigArgumentParser
from ko_radiology.cli import run_cli
from ko_radiology.judge import Judge, JudgeConfig, JudgeItem, JudgeOutcome, get_criterion, longer_answer_wins
from ko_radiology.llm import LLMClient

RAW_COLUMN, ORDER_COLUMN, SEED_COLUMN = "judge_raw", "judge_order", "judge_seed"
"""The replies per call, the models each call showed (answer 1 first) and the seed that shuffled them."""


@dataclass
class JudgeRunOptions:
    """What to score and where the scores go."""

    input: str = field(metadata={"help": "answers.csv from eval.compare (report, question, NAME_answer, ...)."})
    out: str | None = field(default=None, metadata={"help": "Scored CSV to write (default: INPUT with _TYPE)."})
    batch_dir: str | None = field(default=None, metadata={"help": "Write uncached calls as Batch API files; stop."})
    ingest: list[str] = field(default_factory=list, metadata={"help": "Batch output files to load into the cache."})
    dry_run: bool = field(default=False, metadata={"help": "Print calls, cache hits and estimated cost; send none."})


def load_items(path: str, criterion: str) -> tuple[pd.DataFrame, dict[str, str], list[JudgeItem]]:
    """The table, its answer columns and one item per row (all models' answers together)."""
    table = read_table(path)
    needs_reference = get_criterion(criterion).needs_reference
    required = [REPORT, QUESTION] + ([REFERENCE] if needs_reference else [])
    require_columns(table, path, required, "eval.compare writes them; rename your columns to match.")
    columns = answer_columns(table, path)
    for column in required:
        if blank := [i for i, value in enumerate(table[column]) if not value.strip()]:
            raise ValueError(f"{path} column {column!r} is empty in rows {blank[:10]}; fill or drop those rows.")
    items = [
        JudgeItem(
            row[REPORT],
            row[QUESTION],
            tuple(text_or_none(row[column]) for column in columns.values()),
            row[REFERENCE] if needs_reference else None,
        )
        for row in table.to_dict("records")
    ]
    return table, columns, items


def scored_table(table: pd.DataFrame, models: list[str], outcome: JudgeOutcome) -> pd.DataFrame:
    scored = table.copy()
    scored[CRITERION] = outcome.config.criterion
    for index, name in enumerate(models):
        judged = [item[index] for item in outcome.judgements]
        scored[name + SCORE_SUFFIX] = [j.score for j in judged]
        scored[name + RATIONALE_SUFFIX] = [j.rationale for j in judged]
        scored[name + ERROR_SUFFIX] = [j.error or "" for j in judged]
    scored[RAW_COLUMN] = [json.dumps(replies, ensure_ascii=False) for replies in outcome.replies]
    scored[ORDER_COLUMN] = [json.dumps([[models[i] for i in order] for order in orders]) for orders in outcome.orders]
    scored[SEED_COLUMN] = outcome.config.seed
    return scored


def print_summary(models: list[str], items: list[JudgeItem], outcome: JudgeOutcome) -> None:
    for index, name in enumerate(models):
        s = outcome.summary(index)
        mean = "n/a" if s.mean is None else f"{s.mean:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]"
        print(f"{name}: {outcome.config.criterion} {mean}; {s.num_failures}/{s.num_samples} failed")
    if (flips := outcome.swap_flip_rate()) is not None:
        print(f"swap-flip rate: {flips:.3f}")
    rate, pairs = longer_answer_wins(items, outcome)
    if rate is not None:
        print(f"longer answer scored higher in {rate:.0%} of {pairs} pairs that differ in score and length")


def run(options: JudgeRunOptions, judge_config: JudgeConfig, endpoint: JudgeEndpoint) -> int:
    table, columns, items = load_items(options.input, judge_config.criterion)
    with LLMClient(endpoint.client_config()) as client:
        judge = Judge(client, judge_config)
        for path in options.ingest:
            report = client.ingest_batch_output(path)
            print(
                f"{path}: {report.stored} stored, {report.already_cached} cached before, {len(report.failures)} failed"
            )
        if options.dry_run:
            print(judge.dry_run(items).table())
            return 0
        if options.batch_dir:
            files = judge.write_batch(items, options.batch_dir)
            print(f"{files.written} uncached judge calls ({files.skipped_cached} cached) → {options.batch_dir}")
            print("Submit them (OpenAI Batch or `vllm run-batch`), then run again with --ingest OUTPUT.jsonl.")
            return 0
        outcome = judge.run(items)
        print(client.ledger(run_only=True).table())
    models = list(columns)
    out = options.out or options.input.removesuffix(".csv") + f"_{get_criterion(judge_config.criterion).code}.csv"
    write_table(scored_table(table, models, outcome), out)
    print_summary(models, items, outcome)
    print(f"→ {out}")
    return 0


def judge_command(argv: list[str]) -> int:
    parser = ConfigArgumentParser((JudgeRunOptions, JudgeConfig, JudgeEndpoint), prog="python -m eval.judge")
    return run(*parser.parse_args_and_config(argv))


def main(argv: list[str] | None = None) -> int:
    return run_cli(judge_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
