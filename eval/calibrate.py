"""Measure a judge on the known-answer set before trusting it: does it score the gold answer above each defect?

    python -m eval.calibrate --judge-model gpt-4o --judge-base-url http://127.0.0.1:8000/v1 --out calibration.md

Each test-split question of the sample is judged as a pair (gold answer, variant with one known defect) in both
orders, per criterion. The table gives, per criterion and defect kind, the share of questions where the gold answer
scored higher (mean of both orders) with a 95% bootstrap CI; a tie counts as not higher, a failed judgement is left
out and counted. The swap-flip rate (a pair's preference changing with the order) and how often the longer
answer wins close each row. The set is synthetic, so a remote judge needs no data-use flags here.
"""

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from eval.options import JudgeEndpoint
from ko_radiology.arguments import ConfigArgumentParser
from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.cli import run_cli
from ko_radiology.judge import CRITERIA, Judge, JudgeConfig, JudgeItem, JudgeOutcome, longer_answer_wins
from ko_radiology.llm import LLMClient
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_translations
from ko_radiology.sections import join_sections
from ko_radiology.statistics import bootstrap_ci

KNOWN_ANSWERS = SAMPLE_DIR / "known_answers" / "known_answers.jsonl"
DEFECTS = (
    "wrong_laterality",
    "finding_omitted",
    "finding_invented",
    "negation_flipped",
    "wrong_device_position",
    "padded_2x",
    "english_drift",
    "other_question",
)


@dataclass
class CalibrateOptions:
    criteria: str = field(default=",".join(CRITERIA), metadata={"help": "Comma-separated criteria to calibrate."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N questions (trial runs)."})
    out: str | None = field(default=None, metadata={"help": "Also write the Markdown table to this file."})


@dataclass(frozen=True)
class Pair:
    defect: str
    item: JudgeItem


def load_pairs(limit: int | None = None) -> list[Pair]:
    """(gold, variant) pairs of the known-answer set, with the report as the builder joins it."""
    translations = load_gold_translations(SAMPLE_DIR)
    rows = [json.loads(line) for line in KNOWN_ANSWERS.read_text("utf-8").splitlines() if line.strip()]
    pairs = []
    for row in rows[:limit]:
        report = join_sections(translations[row["study_id"]], "ko")
        for defect, variant in row["variants"].items():
            pairs.append(Pair(defect, JudgeItem(report, row["question"], (row["gold"], variant), row["gold"])))
    return pairs


def gold_preference(pairs: list[Pair], outcome: JudgeOutcome, defect: str) -> str:
    """`rate [low, high] (n=judged, failed)` of the gold answer scoring above the variant; failures left out."""
    above, failed = [], 0
    for pair, (gold, variant) in zip(pairs, outcome.judgements, strict=True):
        if pair.defect != defect:
            continue
        if gold.score is None or variant.score is None:
            failed += 1
        else:
            above.append(float(gold.score > variant.score))
    failures = f", {failed} failed" if failed else ""
    if not above:
        return f"n/a (n=0{failures})" if failed else "—"
    rate, low, high = bootstrap_ci(above, seed=outcome.config.seed)
    return f"{rate:.2f} [{low:.2f}, {high:.2f}] (n={len(above)}{failures})"


def calibration_row(pairs: list[Pair], outcome: JudgeOutcome) -> str:
    cells = [gold_preference(pairs, outcome, defect) for defect in DEFECTS]
    flips = outcome.swap_flip_rate()
    longer, decided = longer_answer_wins([pair.item for pair in pairs], outcome)
    cells.append("n/a" if flips is None else f"{flips:.2f}")
    cells.append("n/a" if longer is None else f"{longer:.2f} (n={decided})")
    return f"| {outcome.config.criterion} | " + " | ".join(cells) + " |"


def calibrate(options: CalibrateOptions, judge_config: JudgeConfig, endpoint: JudgeEndpoint) -> str:
    criteria = [name.strip() for name in options.criteria.split(",") if name.strip()]
    pairs = load_pairs(options.limit)
    header = ["criterion", *DEFECTS, "swap-flip rate", "longer wins"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    config = endpoint.client_config(data_provenance="synthetic")
    with LLMClient(config) as client:
        for criterion in criteria:
            run_config = replace(judge_config, criterion=criterion, all_positions=True, answers_per_call="all")
            outcome = Judge(client, run_config).run([pair.item for pair in pairs])
            lines.append(calibration_row(pairs, outcome))
        print(client.ledger(run_only=True).table(), file=sys.stderr)
    return "\n".join(lines)


def calibrate_command(argv: list[str]) -> int:
    parser = ConfigArgumentParser((CalibrateOptions, JudgeConfig, JudgeEndpoint), prog="python -m eval.calibrate")
    options, judge_config, endpoint = parser.parse_args_and_config(argv)
    table = calibrate(options, judge_config, endpoint)
    title = f"Share of questions where {endpoint.judge_model} scores the gold answer above the defective one"
    text = f"{title} (95% CI):\n\n{table}\n"
    if options.out:
        write_text_atomically(Path(options.out), text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(calibrate_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
